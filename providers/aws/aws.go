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
	"golang.org/x/time/rate"

	"github.com/provisionhq/provision/internal/awshttp"
	"github.com/provisionhq/provision/internal/retry"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/cloudinit"
)

const cloud = "aws"

// Bounds on how hard one Provider leans on the EC2 API. Creating batches
// instead of machines keeps the call count low, so these exist to stay
// inside EC2's per-account request buckets when many pools move at once
// (the non-mutating bucket refills 20/s, RunInstances 2/s with a burst of 5).
const (
	// maxInFlight is how many EC2 requests one Provider has open at once.
	maxInFlight = 8
	// maxBatchesInFlight is how many pool batches Create runs concurrently.
	maxBatchesInFlight = 4
	// apiRate and apiBurst shape the Provider's token bucket (requests/s).
	apiRate  = 10
	apiBurst = 20
	// describePage is DescribeInstances' MaxResults.
	describePage = 1000
	// createTimeout bounds Create's wait for running when ctx has no deadline.
	createTimeout = 15 * time.Minute
	// sdkMaxAttempts is the SDK retryer's attempts per request unless the
	// user chose (AWS_MAX_ATTEMPTS, max_attempts in a profile). The SDK
	// is the one layer that retries 5xx answers and lost connections (it
	// sends a launch's ClientToken again each time, so a retry cannot
	// launch twice); its default of 3 leaves a call failing once in 300
	// on a cloud that fails 15% of requests, 5 once in 13,000.
	sdkMaxAttempts = 5
)

// Provider is the EC2 provider. It is safe for concurrent use.
type Provider struct {
	cfg     aws.Config
	cluster string
	log     *slog.Logger
	limiter *rate.Limiter
	sem     chan struct{}

	mu      sync.Mutex
	clients map[string]*ec2.Client // by region
	// launched remembers instances this Provider launched, so a Delete
	// right after Create finds them while DescribeInstances by tag does not
	// show them yet (EC2 is eventually consistent).
	launched map[providers.MachineID]launchedInstance
}

type launchedInstance struct{ region, instanceID string }

var _ providers.Provider = (*Provider)(nil)

// New returns an EC2 provider configured from the SDK's standard chain
// (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL[_EC2], shared config, IMDS).
func New(ctx context.Context, env providers.Env) (*Provider, error) {
	return newProvider(ctx, env)
}

// newProvider lets tests add SDK load options (an HTTP client, a short
// retry backoff); the code path is the same as New's.
func newProvider(ctx context.Context, env providers.Env, opts ...func(*config.LoadOptions) error) (*Provider, error) {
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("aws: load config: %w", err)
	}
	cfg.HTTPClient = awshttp.Client(cfg.HTTPClient)
	if cfg.RetryMaxAttempts == 0 {
		cfg.RetryMaxAttempts = sdkMaxAttempts
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Provider{
		cfg:      cfg,
		cluster:  env.Cluster,
		log:      log.With("provider", cloud),
		limiter:  rate.NewLimiter(apiRate, apiBurst),
		sem:      make(chan struct{}, maxInFlight),
		clients:  map[string]*ec2.Client{},
		launched: map[providers.MachineID]launchedInstance{},
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

// call runs one EC2 request under the Provider's rate limit and concurrency
// bound, maps its failure to a *providers.Error, and retries throttling
// (after the SDK's own retryer gave up) with backoff until ctx ends. A 5xx
// or a lost connection (ErrUnavailable) is not retried here: the SDK's
// retryer did (sdkMaxAttempts).
func (p *Provider) call(ctx context.Context, region, pool string, f func(ctx context.Context, c *ec2.Client) error) error {
	c := p.client(region)
	return retry.Do(ctx, retry.Policy{Initial: time.Second, Max: 20 * time.Second, MaxAttempts: 6}, func(ctx context.Context) (bool, error) {
		if err := p.limiter.Wait(ctx); err != nil {
			return true, err
		}
		select {
		case p.sem <- struct{}{}:
		case <-ctx.Done():
			return true, ctx.Err()
		}
		err := f(ctx, c)
		<-p.sem
		err = classify(err, region, pool)
		return !errors.Is(err, providers.ErrThrottled), err
	})
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
		err := p.call(ctx, b.region, b.pool, func(ctx context.Context, c *ec2.Client) (err error) {
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
			p.launched[id] = launchedInstance{region: b.region, instanceID: res[i]}
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
	err := p.call(ctx, b.region, b.pool, func(ctx context.Context, c *ec2.Client) (err error) {
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

// waitRunning polls DescribeInstances by ID until every instance runs.
// A fresh ID may be unknown for a moment (eventual consistency): that is
// "not yet", not a failure.
func (p *Provider) waitRunning(ctx context.Context, b *batch, ids map[providers.MachineID]string) ([]providers.Machine, error) {
	want := make([]string, 0, len(ids))
	for _, id := range ids {
		want = append(want, id)
	}
	slices.Sort(want)
	var ready []providers.Machine
	err := retry.Do(ctx, retry.Policy{Initial: 250 * time.Millisecond, Max: 5 * time.Second}, func(ctx context.Context) (bool, error) {
		ready = ready[:0]
		var pending []string
		for part := range slices.Chunk(want, 200) {
			insts, err := p.describeIDs(ctx, b.region, b.pool, part)
			if errors.Is(err, providers.ErrNotFound) {
				return false, err // not visible yet
			}
			if err != nil {
				return true, err
			}
			for _, in := range insts {
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
				default:
					pending = append(pending, aws.ToString(in.InstanceId))
				}
			}
		}
		if len(pending) > 0 || len(ready) < len(want) {
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("wait for %d instances to run: %w", len(want), err)
	}
	return ready, nil
}

func (p *Provider) describeIDs(ctx context.Context, region, pool string, ids []string) ([]types.Instance, error) {
	return p.describeAll(ctx, region, pool, &ec2.DescribeInstancesInput{InstanceIds: ids})
}

// describeAll reads every page of one DescribeInstances query.
func (p *Provider) describeAll(ctx context.Context, region, pool string, in *ec2.DescribeInstancesInput) ([]types.Instance, error) {
	var out []types.Instance
	err := p.call(ctx, region, pool, func(ctx context.Context, c *ec2.Client) error {
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
	return p.describeAll(ctx, region, pool, &ec2.DescribeInstancesInput{Filters: filters, MaxResults: aws.Int32(describePage)})
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
			} else {
				p.log.WarnContext(ctx, "instance with provision tags but no machine ID", "instance", aws.ToString(in.InstanceId), "region", region)
			}
		}
	}
	slices.SortFunc(out, func(a, b providers.Machine) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// Delete terminates the machines with one TerminateInstances call per
// region. Machines already gone (or never made) are a success. It returns
// once EC2 accepted the termination; instances then shut down on their own.
func (p *Provider) Delete(ctx context.Context, ids []providers.MachineID) error {
	if len(ids) == 0 {
		return nil
	}
	want := map[providers.MachineID]bool{}
	for _, id := range ids {
		want[id] = true
	}
	byRegion := map[string][]string{}
	p.mu.Lock()
	for _, id := range ids {
		if l, ok := p.launched[id]; ok {
			byRegion[l.region] = append(byRegion[l.region], l.instanceID)
		}
	}
	p.mu.Unlock()
	for _, region := range p.regions() {
		insts, err := p.describe(ctx, region, "", tagFilters(p.cluster, ""))
		if err != nil {
			return fmt.Errorf("delete %d machines: find them in %s: %w", len(ids), region, err)
		}
		for _, in := range insts {
			if m, ok := toMachine(in); ok && want[m.ID] && !slices.Contains(byRegion[region], m.ProviderID) {
				byRegion[region] = append(byRegion[region], m.ProviderID)
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
		delete(p.launched, id)
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
		insts, err := p.describeAll(ctx, region, pool, &ec2.DescribeInstancesInput{Filters: byToken, MaxResults: aws.Int32(describePage)})
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
	err := p.call(ctx, region, pool, func(ctx context.Context, c *ec2.Client) error {
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
		err := p.call(ctx, region, "", func(ctx context.Context, c *ec2.Client) error {
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
