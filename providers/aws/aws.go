// Package aws owns provision's Amazon EC2 provider: it launches a pool's
// machines with one RunInstances call per batch, finds them again by the
// tags it put on them, and terminates them, on aws-sdk-go-v2. Credentials,
// region and endpoint come from the SDK's standard chain (environment,
// shared config and profiles, IMDS), so cloudsim's EC2 emulator is used by
// setting AWS_ENDPOINT_URL_EC2 and nothing else.
package aws

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/provisionhq/provision/internal/awshttp"
	"github.com/provisionhq/provision/internal/retry"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/cloudinit"
	"github.com/provisionhq/provision/providers/gate"
)

const cloud = "aws"

// Bounds on how hard one Provider leans on the EC2 API. Creating batches
// instead of machines keeps the call count low, so these exist to stay
// inside EC2's per-account request buckets when many pools move at once.
const (
	// maxInFlight is how many EC2 requests one Provider has open at once.
	maxInFlight = 8
	// maxBatchesInFlight is how many pool batches Create runs concurrently.
	maxBatchesInFlight = 4
	// describePage is DescribeInstances' MaxResults.
	describePage = 1000
	// createTimeout bounds Create's wait for running when ctx has no deadline.
	createTimeout = 15 * time.Minute
	// maxAttempts is how often the gate sends a request EC2 failed (a 5xx,
	// a connection lost before the answer) unless the user chose
	// (AWS_MAX_ATTEMPTS, max_attempts in a profile). Every request here
	// may be sent again (reads, and launches with their ClientToken); 3
	// leaves a call failing once in 300 on a cloud that fails 15% of
	// requests, 5 once in 13,000.
	maxAttempts = 5
)

// gateOptions are EC2's published request limits ("Request throttling for
// the Amazon EC2 API", docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html:
// per account and region, a bucket of maximum capacity refilled per
// second): each action has its own request bucket, and RunInstances and
// TerminateInstances a resource bucket of instances too. A Provider spans
// regions with one set, which only errs on the safe side.
func gateOptions(attempts int, log *slog.Logger) gate.Options {
	return gate.Options{
		Cloud: cloud,
		Requests: map[string]gate.Bucket{
			// Non-mutating actions (filtered or paginated): 100, 20/s.
			"DescribeInstances": {Rate: 20, Burst: 100},
			"DescribeImages":    {Rate: 20, Burst: 100},
			// Uncategorized actions with buckets of their own.
			"RunInstances":       {Rate: 2, Burst: 5},
			"TerminateInstances": {Rate: 5, Burst: 100},
			// Any other action: the mutating actions' 50, 5/s.
			"": {Rate: 5, Burst: 50},
		},
		Resources: map[string]gate.Bucket{
			"RunInstances":       {Rate: 2, Burst: 1000},
			"TerminateInstances": {Rate: 20, Burst: 1000},
		},
		InFlight: maxInFlight,
		Retry:    retry.Policy{Initial: 500 * time.Millisecond, Max: 20 * time.Second, MaxAttempts: attempts},
		Logger:   log,
	}
}

// Provider is the EC2 provider. It is safe for concurrent use.
type Provider struct {
	cfg     aws.Config
	cluster string
	log     *slog.Logger
	gate    *gate.Gate

	mu      sync.Mutex
	clients map[string]*ec2.Client // by region
	// known remembers the instance of each machine this Provider launched
	// or found (Create, List), so a Delete needs no DescribeInstances in
	// every region to find them, and a Delete right after Create finds
	// instances DescribeInstances by tag does not show yet (EC2 is
	// eventually consistent).
	known map[providers.MachineID][]knownInstance
}

type knownInstance struct{ region, instanceID string }

var _ providers.Provider = (*Provider)(nil)

// New returns an EC2 provider configured from the SDK's standard chain
// (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL[_EC2], shared config, IMDS).
func New(ctx context.Context, env providers.Env) (*Provider, error) {
	var opts []func(*config.LoadOptions) error
	if env.HTTPClient != nil {
		opts = append(opts, config.WithHTTPClient(env.HTTPClient))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("aws: load config: %w", err)
	}
	cfg.HTTPClient = awshttp.Client(cfg.HTTPClient)
	// The gate is the one layer that retries (throttling, 5xx, lost
	// connections): the SDK's retryer is off, whatever the profile says,
	// and a user's AWS_MAX_ATTEMPTS becomes the gate's attempts.
	attempts := cmp.Or(cfg.RetryMaxAttempts, maxAttempts)
	cfg.Retryer = func() aws.Retryer { return aws.NopRetryer{} }
	cfg.RetryMaxAttempts = 0
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("provider", cloud)
	p := &Provider{
		cfg:     cfg,
		cluster: env.Cluster,
		log:     log,
		gate:    gate.New(gateOptions(attempts, log)),
		clients: map[string]*ec2.Client{},
		known:   map[providers.MachineID][]knownInstance{},
	}
	// The plan's pools say which regions List and Delete must search, even
	// in a process that created nothing (a `down`).
	for _, set := range env.Pools {
		if r, ok := set["region"].(string); ok && r != "" {
			p.client(r)
		}
	}
	return p, nil
}

func (p *Provider) client(region string) *ec2.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.clients[region]
	if !ok {
		c = ec2.NewFromConfig(p.cfg, func(o *ec2.Options) { o.Region = region })
		p.clients[region] = c
	}
	return c
}

// regions are where List and Delete look: the default region and every
// region a pool of this Provider created machines in.
func (p *Provider) regions() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	if p.cfg.Region != "" {
		out = append(out, p.cfg.Region)
	}
	for r := range p.clients {
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out
}

// call runs one EC2 request through the Provider's gate, which shapes it
// by EC2's request buckets and is the one layer that retries it; its
// failure is mapped to a *providers.Error first. Every request here may
// be sent again after EC2 failed it: reads, and launches and terminations
// (a launch carries its ClientToken; terminating twice is terminating).
func (p *Provider) call(ctx context.Context, region, pool string, c gate.Call, f func(ctx context.Context, c *ec2.Client) error) error {
	client := p.client(region)
	c.Idempotent = true
	return p.gate.Do(ctx, c, func(ctx context.Context) error {
		return classify(f(ctx, client), region, pool)
	})
}

// remember records where machines' instances are. A machine may have
// more than one (a dead run's launch that nothing retired yet): Delete
// ends them all.
func (p *Provider) remember(region string, ms ...providers.Machine) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range ms {
		k := knownInstance{region: region, instanceID: m.ProviderID}
		if !slices.Contains(p.known[m.ID], k) {
			p.known[m.ID] = append(p.known[m.ID], k)
		}
	}
}

// batch is the machines of one pool that share settings and a region.
type batch struct {
	region string
	pool   string
	set    Settings
	// spot is every spec's MachineSpec.Spot: plan refuses a pool whose
	// specs disagree, since one RunInstances call has one market.
	spot  bool
	specs []providers.MachineSpec
}

// Create launches the specs' machines (one RunInstances per pool batch) and
// returns them, in spec order, once each is running. Specs whose machines
// exist already are returned as they are.
func (p *Provider) Create(ctx context.Context, specs []providers.MachineSpec) ([]providers.Machine, error) {
	batches, err := p.plan(specs)
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, createTimeout)
		defer cancel()
	}
	var (
		mu    sync.Mutex
		got   = map[providers.MachineID]providers.Machine{}
		errs  []error
		wg    sync.WaitGroup
		slots = make(chan struct{}, maxBatchesInFlight)
	)
	for _, b := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				mu.Lock()
				errs = append(errs, fmt.Errorf("create %d machines in pool %q: %w", len(b.specs), b.pool, ctx.Err()))
				mu.Unlock()
				return
			}
			defer func() { <-slots }()
			ms, err := p.createBatch(ctx, b)
			mu.Lock()
			defer mu.Unlock()
			for _, m := range ms {
				got[m.ID] = m
			}
			if err != nil {
				// err is a *providers.Error naming region and pool already.
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	out := make([]providers.Machine, 0, len(specs))
	for _, s := range specs {
		if m, ok := got[s.ID]; ok {
			out = append(out, m)
		}
	}
	return out, errors.Join(errs...)
}

// plan validates every spec and groups them into batches, before any call.
func (p *Provider) plan(specs []providers.MachineSpec) ([]*batch, error) {
	var out []*batch
	seen := map[providers.MachineID]bool{}
	spot := map[string]bool{} // by pool
	for _, s := range specs {
		if err := validMachineID(s.ID); err != nil {
			return nil, err
		}
		if seen[s.ID] {
			return nil, fmt.Errorf("%w: machine %s appears twice", providers.ErrInvalidSpec, s.ID)
		}
		seen[s.ID] = true
		// The engine batches per pool and a pool is spot or not, so a
		// disagreement is a caller's bug: refuse it rather than guess.
		if want, ok := spot[s.Pool]; ok && want != s.Spot {
			return nil, fmt.Errorf("%w: pool %q: machine %s asks for spot=%t, the pool's other machines for spot=%t", providers.ErrInvalidSpec, s.Pool, s.ID, s.Spot, want)
		}
		spot[s.Pool] = s.Spot
		set, err := decodeSettings(s.Settings)
		if err != nil {
			return nil, fmt.Errorf("pool %q: %w", s.Pool, err)
		}
		region := cmp.Or(set.Region, p.cfg.Region)
		if region == "" {
			return nil, fmt.Errorf("%w: pool %q: no AWS region (set AWS_REGION, a profile's region, or the pool's region)", providers.ErrInvalidSpec, s.Pool)
		}
		i := slices.IndexFunc(out, func(b *batch) bool {
			return b.region == region && b.pool == s.Pool && b.specs[0].Cluster == s.Cluster && equalSettings(b.set, set)
		})
		if i < 0 {
			out = append(out, &batch{region: region, pool: s.Pool, set: set, spot: s.Spot})
			i = len(out) - 1
		}
		out[i].specs = append(out[i].specs, s)
	}
	return out, nil
}

func equalSettings(a, b Settings) bool {
	return a.Region == b.Region && a.InstanceType == b.InstanceType && a.AMI == b.AMI &&
		a.SubnetID == b.SubnetID && slices.Equal(a.SecurityGroupIDs, b.SecurityGroupIDs) &&
		a.KeyName == b.KeyName && a.RootVolumeGB == b.RootVolumeGB && a.BatchSize == b.BatchSize
}

func (p *Provider) createBatch(ctx context.Context, b *batch) ([]providers.Machine, error) {
	cluster := b.specs[0].Cluster
	existing, err := p.describe(ctx, b.region, b.pool, tagFilters(cluster, b.pool))
	if err != nil {
		return nil, fmt.Errorf("look for existing machines: %w", err)
	}
	have := map[providers.MachineID]types.Instance{}
	for _, in := range existing {
		if id := instanceMachineID(in); id != "" {
			have[id] = in
		}
	}
	var missing []providers.MachineSpec
	instanceIDs := map[providers.MachineID]string{}
	for _, s := range b.specs {
		if in, ok := have[s.ID]; ok {
			instanceIDs[s.ID] = aws.ToString(in.InstanceId)
		} else {
			missing = append(missing, s)
		}
	}
	chunks, err := chunkForUserData(missing, b.set.BatchSize)
	if err != nil {
		return nil, err
	}
	for _, chunk := range chunks {
		ids, err := p.launch(ctx, b, chunk)
		if err != nil {
			return nil, err
		}
		for i, s := range chunk.specs {
			instanceIDs[s.ID] = ids[i]
		}
	}
	return p.waitRunning(ctx, b, instanceIDs)
}

// chunk is the machines of one RunInstances call with their user-data.
type chunk struct {
	specs    []providers.MachineSpec
	userData []byte
}

// chunkForUserData splits specs into as few RunInstances calls as EC2's
// user-data limit (and the pool's batch_size) allow: normally one.
func chunkForUserData(specs []providers.MachineSpec, batchSize int) ([]chunk, error) {
	var out []chunk
	for len(specs) > 0 {
		n := len(specs)
		if batchSize > 0 && n > batchSize {
			n = batchSize
		}
		for {
			ud, err := cloudinit.MultiPart(specs[:n])
			if err != nil {
				return nil, err
			}
			if len(ud) <= maxUserData && len(manifestTags(machineIDs(specs[:n])))+4+len(specs[0].Labels) <= maxTags {
				out = append(out, chunk{specs: specs[:n], userData: ud})
				break
			}
			if n == 1 {
				return nil, fmt.Errorf("%w: machine %s: user-data or tags exceed EC2's limits", providers.ErrInvalidSpec, specs[0].ID)
			}
			n = n * 3 / 4 // shrink and try again; sizes are near-linear in n
		}
		specs = specs[n:]
	}
	return out, nil
}

func machineIDs(specs []providers.MachineSpec) []providers.MachineID {
	out := make([]providers.MachineID, len(specs))
	for i, s := range specs {
		out[i] = s.ID
	}
	return out
}

// launch makes the one RunInstances call of a chunk and returns the
// instance IDs in spec order (launch index i is spec i).
func (p *Provider) launch(ctx context.Context, b *batch, c chunk) ([]string, error) {
	spec0 := c.specs[0]
	ids := machineIDs(c.specs)
	tags := []types.Tag{
		{Key: aws.String("Name"), Value: aws.String(spec0.Cluster + "-" + b.pool)},
		{Key: aws.String(tagCluster), Value: aws.String(spec0.Cluster)},
		{Key: aws.String(tagPool), Value: aws.String(b.pool)},
	}
	for _, k := range slices.Sorted(maps.Keys(spec0.Labels)) {
		tags = append(tags, types.Tag{Key: aws.String(k), Value: aws.String(spec0.Labels[k])})
	}
	tags = append(tags, manifestTags(ids)...)
	n := int32(len(c.specs))
	in := &ec2.RunInstancesInput{
		ImageId:      aws.String(b.set.AMI),
		InstanceType: types.InstanceType(b.set.InstanceType),
		MinCount:     aws.Int32(n),
		MaxCount:     aws.Int32(n),
		UserData:     aws.String(base64.StdEncoding.EncodeToString(c.userData)),
	}
	if b.set.SubnetID != "" {
		in.SubnetId = aws.String(b.set.SubnetID)
	}
	if len(b.set.SecurityGroupIDs) > 0 {
		in.SecurityGroupIds = b.set.SecurityGroupIDs
	}
	if b.set.KeyName != "" {
		in.KeyName = aws.String(b.set.KeyName)
	}
	if b.spot {
		in.InstanceMarketOptions = spotMarket()
	}
	if b.set.RootVolumeGB > 0 {
		dev, err := p.rootDevice(ctx, b)
		if err != nil {
			return nil, err
		}
		in.BlockDeviceMappings = []types.BlockDeviceMapping{{
			DeviceName: aws.String(dev),
			Ebs:        &types.EbsBlockDevice{VolumeSize: aws.Int32(b.set.RootVolumeGB), DeleteOnTermination: aws.Bool(true)},
		}}
	}
	for gen := 0; gen < maxGeneration; gen++ {
		token := batchToken(b.region, spec0.Cluster, b.pool, ids, gen)
		in.ClientToken = aws.String(token)
		in.TagSpecifications = []types.TagSpecification{
			{ResourceType: types.ResourceTypeInstance, Tags: append(slices.Clip(tags), types.Tag{Key: aws.String(tagBatch), Value: aws.String(token)})},
		}
		var out *ec2.RunInstancesOutput
		err := p.call(ctx, b.region, b.pool, gate.Call{Action: "RunInstances", Cost: int(n)}, func(ctx context.Context, c *ec2.Client) (err error) {
			out, err = c.RunInstances(ctx, in)
			return err
		})
		var pe *providers.Error
		if errors.As(err, &pe) && pe.Code == "IdempotentParameterMismatch" {
			// The token was used for a different launch of these same
			// machine IDs: a run that died before it recorded them (its
			// host keys died with it, so this user-data differs), or the
			// pool's settings changed since. Its instances are no machine
			// of state's: retire them, then take the next generation.
			if err := p.retireLaunch(ctx, b.region, b.pool, token); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, explainInvalid(err, b)
		}
		if len(out.Instances) != len(c.specs) {
			return nil, fmt.Errorf("RunInstances returned %d instances for %d machines", len(out.Instances), len(c.specs))
		}
		// A token outlives its instances: a reservation whose instances
		// are gone was an earlier life of these machine IDs.
		if slices.ContainsFunc(out.Instances, gone) {
			continue
		}
		res := make([]string, len(c.specs))
		for _, inst := range out.Instances {
			li := int(aws.ToInt32(inst.AmiLaunchIndex))
			if li < 0 || li >= len(res) || res[li] != "" {
				return nil, fmt.Errorf("RunInstances returned launch index %d for a batch of %d", li, len(res))
			}
			res[li] = aws.ToString(inst.InstanceId)
		}
		p.mu.Lock()
		for i, id := range ids {
			k := knownInstance{region: b.region, instanceID: res[i]}
			if !slices.Contains(p.known[id], k) {
				p.known[id] = append(p.known[id], k)
			}
		}
		p.mu.Unlock()
		p.log.InfoContext(ctx, "launched instances", "region", b.region, "pool", b.pool, "count", len(res),
			"reservation", aws.ToString(out.ReservationId), "token", token)
		return res, nil
	}
	return nil, fmt.Errorf("every client token generation of this batch is spent (%d)", maxGeneration)
}

// spotMarket asks for spot capacity the way provision uses machines: a
// one-time request (an interrupted machine is gone; the engine and the
// autoscaler make a new one, a persistent request would race them) whose
// instances are terminated, not stopped or hibernated, when reclaimed. No
// max price: EC2 then caps it at the on-demand price.
func spotMarket() *types.InstanceMarketOptionsRequest {
	return &types.InstanceMarketOptionsRequest{
		MarketType: types.MarketTypeSpot,
		SpotOptions: &types.SpotMarketOptions{
			SpotInstanceType:             types.SpotInstanceTypeOneTime,
			InstanceInterruptionBehavior: types.InstanceInterruptionBehaviorTerminate,
		},
	}
}

// rootDevice asks EC2 for the image's root device name, which differs per
// image (/dev/xvda, /dev/sda1), so root_volume_gb resizes the right disk.
func (p *Provider) rootDevice(ctx context.Context, b *batch) (string, error) {
	var out *ec2.DescribeImagesOutput
	err := p.call(ctx, b.region, b.pool, gate.Call{Action: "DescribeImages"}, func(ctx context.Context, c *ec2.Client) (err error) {
		out, err = c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{b.set.AMI}})
		return err
	})
	if err != nil {
		return "", explainInvalid(err, b)
	}
	if len(out.Images) == 0 || out.Images[0].RootDeviceName == nil {
		return "", explainInvalid(&providers.Error{Kind: providers.ErrInvalidSpec, Cloud: cloud, Location: b.region, Pool: b.pool,
			Code: "InvalidAMIID.NotFound"}, b)
	}
	return *out.Images[0].RootDeviceName, nil
}

// waitRunning polls until every instance of ids runs with an address:
// one DescribeInstances of the pool (by its tags, 1,000 instances a page)
// per poll, however many instances. A fresh instance may be missing from
// the answer for a moment (eventual consistency), and a throttled or
// failed poll is only a poll: both are "not yet", and the next poll (after
// EC2's Retry-After, when it gave one) is the retry.
func (p *Provider) waitRunning(ctx context.Context, b *batch, ids map[providers.MachineID]string) ([]providers.Machine, error) {
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	byTags := &ec2.DescribeInstancesInput{Filters: tagFilters(b.specs[0].Cluster, b.pool), MaxResults: aws.Int32(describePage)}
	var ready []providers.Machine
	err := retry.Do(ctx, retry.Policy{Initial: 250 * time.Millisecond, Max: 5 * time.Second}, func(ctx context.Context) (bool, error) {
		insts, err := p.describeAll(ctx, b.region, b.pool, gate.Call{Action: "DescribeInstances", Poll: true}, byTags)
		if gate.Transient(err) {
			return false, err
		}
		if err != nil {
			return true, err
		}
		ready = ready[:0]
		for _, in := range insts {
			if !want[aws.ToString(in.InstanceId)] {
				continue // another machine of the pool, or an earlier life of one
			}
			m, ok := toMachine(in)
			switch {
			case gone(in):
				reason := in.StateReason
				pe := &providers.Error{Kind: providers.ErrCapacity, Cloud: cloud, Location: b.region, Pool: b.pool,
					Message: fmt.Sprintf("instance %s is %s", aws.ToString(in.InstanceId), in.State.Name)}
				if reason != nil {
					pe.Code, pe.Message = aws.ToString(reason.Code), pe.Message+": "+aws.ToString(reason.Message)
				}
				return true, pe
			case !ok:
				return true, fmt.Errorf("instance %s has no provision machine tags", aws.ToString(in.InstanceId))
			case m.State == providers.StateStopping:
				// Stopped by someone else: waiting would not help.
				return true, fmt.Errorf("machine %s (instance %s) is %s: start it or delete the machine", m.ID, m.ProviderID, in.State.Name)
			case m.State == providers.StateRunning && m.Address != "":
				ready = append(ready, m)
				providers.Running(ctx, m)
			}
		}
		return len(ready) == len(want), nil
	})
	if err != nil {
		return nil, fmt.Errorf("wait for %d instances to run: %w", len(want), err)
	}
	p.remember(b.region, ready...)
	return ready, nil
}

// describeAll reads every page of one DescribeInstances query, as one
// request of the gate (a page that fails reads them all again).
func (p *Provider) describeAll(ctx context.Context, region, pool string, c gate.Call, in *ec2.DescribeInstancesInput) ([]types.Instance, error) {
	var out []types.Instance
	err := p.call(ctx, region, pool, c, func(ctx context.Context, c *ec2.Client) error {
		out = out[:0]
		pg := ec2.NewDescribeInstancesPaginator(c, in)
		for pg.HasMorePages() {
			page, err := pg.NextPage(ctx)
			if err != nil {
				return err
			}
			for _, r := range page.Reservations {
				out = append(out, r.Instances...)
			}
		}
		return nil
	})
	return out, err
}

// describe lists the instances matching filters that are not terminated
// or on their way there.
func (p *Provider) describe(ctx context.Context, region, pool string, filters []types.Filter) ([]types.Instance, error) {
	filters = append(slices.Clip(filters), types.Filter{
		Name:   aws.String("instance-state-name"),
		Values: []string{"pending", "running", "stopping", "stopped"},
	})
	return p.describeAll(ctx, region, pool, gate.Call{Action: "DescribeInstances"}, &ec2.DescribeInstancesInput{Filters: filters, MaxResults: aws.Int32(describePage)})
}

func tagFilters(cluster, pool string) []types.Filter {
	var f []types.Filter
	if cluster != "" {
		f = append(f, types.Filter{Name: aws.String("tag:" + tagCluster), Values: []string{cluster}})
	} else {
		f = append(f, types.Filter{Name: aws.String("tag-key"), Values: []string{tagCluster}})
	}
	if pool != "" {
		f = append(f, types.Filter{Name: aws.String("tag:" + tagPool), Values: []string{pool}})
	}
	return f
}

// List finds the cluster's (or one pool's) machines that are not
// terminated, in every region this Provider knows.
func (p *Provider) List(ctx context.Context, sel providers.Selector) ([]providers.Machine, error) {
	if sel.Cluster == "" {
		return nil, fmt.Errorf("%w: list: a cluster is required", providers.ErrInvalidSpec)
	}
	var out []providers.Machine
	for _, region := range p.regions() {
		insts, err := p.describe(ctx, region, sel.Pool, tagFilters(sel.Cluster, sel.Pool))
		if err != nil {
			return nil, fmt.Errorf("list machines of cluster %q in %s: %w", sel.Cluster, region, err)
		}
		for _, in := range insts {
			if m, ok := toMachine(in); ok {
				out = append(out, m)
				p.remember(region, m)
			} else {
				p.log.WarnContext(ctx, "instance with provision tags but no machine ID", "instance", aws.ToString(in.InstanceId), "region", region)
			}
		}
	}
	slices.SortFunc(out, func(a, b providers.Machine) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// Delete terminates the machines with one TerminateInstances call per
// region (per 1,000 instances). Their instances are known when this
// Provider launched or listed them (the engine lists before it deletes);
// only when one is not does it look for them, with one DescribeInstances
// of the cluster per region. Machines already gone (or never made) are a
// success. It returns once EC2 accepted the termination; instances then
// shut down on their own.
func (p *Provider) Delete(ctx context.Context, ids []providers.MachineID) error {
	if len(ids) == 0 {
		return nil
	}
	want := map[providers.MachineID]bool{}
	for _, id := range ids {
		want[id] = true
	}
	byRegion := map[string][]string{}
	add := func(region, instanceID string) {
		if !slices.Contains(byRegion[region], instanceID) {
			byRegion[region] = append(byRegion[region], instanceID)
		}
	}
	unknown := false
	p.mu.Lock()
	for _, id := range ids {
		for _, k := range p.known[id] {
			add(k.region, k.instanceID)
		}
		unknown = unknown || len(p.known[id]) == 0
	}
	p.mu.Unlock()
	for _, region := range p.regions() {
		if !unknown {
			break
		}
		insts, err := p.describe(ctx, region, "", tagFilters(p.cluster, ""))
		if err != nil {
			return fmt.Errorf("delete %d machines: find them in %s: %w", len(ids), region, err)
		}
		for _, in := range insts {
			if m, ok := toMachine(in); ok && want[m.ID] {
				add(region, m.ProviderID)
			}
		}
	}
	for region, instIDs := range byRegion {
		for part := range slices.Chunk(instIDs, 1000) {
			if err := p.terminate(ctx, region, "", part); err != nil {
				return fmt.Errorf("delete %d machines in %s: %w", len(part), region, err)
			}
		}
		p.log.InfoContext(ctx, "terminated instances", "region", region, "count", len(instIDs))
	}
	p.mu.Lock()
	for _, id := range ids {
		delete(p.known, id)
	}
	p.mu.Unlock()
	return nil
}

// retireVisibleWithin bounds the wait for an earlier launch's instances to
// show in DescribeInstances (EC2 is eventually consistent; the token
// mismatch says they exist).
var retireVisibleWithin = 30 * time.Second

// retireLaunch terminates the instances an earlier launch made under token.
func (p *Provider) retireLaunch(ctx context.Context, region, pool, token string) error {
	deadline := time.Now().Add(retireVisibleWithin)
	byToken := []types.Filter{{Name: aws.String("tag:" + tagBatch), Values: []string{token}}}
	for {
		// Terminated ones too: a launch whose instances are all gone
		// needs nothing more.
		insts, err := p.describeAll(ctx, region, pool, gate.Call{Action: "DescribeInstances"}, &ec2.DescribeInstancesInput{Filters: byToken, MaxResults: aws.Int32(describePage)})
		if err != nil {
			return fmt.Errorf("find the earlier launch %s: %w", token, err)
		}
		var live []string
		for _, in := range insts {
			if !gone(in) {
				live = append(live, aws.ToString(in.InstanceId))
			}
		}
		if len(live) > 0 {
			if err := p.terminate(ctx, region, pool, live); err != nil {
				return fmt.Errorf("terminate the earlier launch %s: %w", token, err)
			}
			p.log.InfoContext(ctx, "terminated an earlier launch of these machines", "region", region, "pool", pool, "token", token, "instances", live)
			return nil
		}
		if len(insts) > 0 || time.Now().After(deadline) {
			if len(insts) == 0 {
				p.log.WarnContext(ctx, "an earlier launch of these machines never became visible; launching anew", "region", region, "pool", pool, "token", token)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// terminate ends ids (at most 1,000) in one TerminateInstances call. When
// one of them is unknown (not visible yet, or long gone), the rest are
// terminated one by one so none is skipped.
func (p *Provider) terminate(ctx context.Context, region, pool string, ids []string) error {
	err := p.call(ctx, region, pool, gate.Call{Action: "TerminateInstances", Cost: len(ids)}, func(ctx context.Context, c *ec2.Client) error {
		_, err := c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: ids})
		return err
	})
	if errors.Is(err, providers.ErrNotFound) {
		err = p.terminateEach(ctx, region, ids)
	}
	return err
}

func (p *Provider) terminateEach(ctx context.Context, region string, ids []string) error {
	for _, id := range ids {
		err := p.call(ctx, region, "", gate.Call{Action: "TerminateInstances", Cost: 1}, func(ctx context.Context, c *ec2.Client) error {
			_, err := c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}})
			return err
		})
		if err != nil && !errors.Is(err, providers.ErrNotFound) {
			return err
		}
	}
	return nil
}

func gone(in types.Instance) bool {
	if in.State == nil {
		return false
	}
	return in.State.Name == types.InstanceStateNameTerminated || in.State.Name == types.InstanceStateNameShuttingDown
}

func tagMap(in types.Instance) map[string]string {
	m := make(map[string]string, len(in.Tags))
	for _, t := range in.Tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

func instanceMachineID(in types.Instance) providers.MachineID {
	return machineIDOf(tagMap(in), int(aws.ToInt32(in.AmiLaunchIndex)))
}

// toMachine converts an instance; ok is false when it carries no manifest.
func toMachine(in types.Instance) (providers.Machine, bool) {
	tags := tagMap(in)
	id := machineIDOf(tags, int(aws.ToInt32(in.AmiLaunchIndex)))
	if id == "" {
		return providers.Machine{}, false
	}
	m := providers.Machine{
		ID:             id,
		ProviderID:     aws.ToString(in.InstanceId),
		Cluster:        tags[tagCluster],
		Pool:           tags[tagPool],
		PrivateAddress: aws.ToString(in.PrivateIpAddress),
		Address:        cmp.Or(aws.ToString(in.PublicIpAddress), aws.ToString(in.PrivateIpAddress)),
		Port:           22,
	}
	if in.State != nil {
		switch in.State.Name {
		case types.InstanceStateNamePending:
			m.State = providers.StatePending
		case types.InstanceStateNameRunning:
			m.State = providers.StateRunning
		case types.InstanceStateNameStopping, types.InstanceStateNameStopped:
			m.State = providers.StateStopping
		default:
			m.State = providers.StateTerminated
		}
	}
	return m, true
}
