// Package gcp owns the Google Compute Engine provider: pool settings,
// batch creation with instances.bulkInsert (instances.insert for a batch of
// one), finding machines by label with a paginated aggregated list, and
// deleting them one instance at a time (GCE has no batch delete of
// instances outside managed instance groups), all on the official REST
// client cloud.google.com/go/compute/apiv1. Every request goes through the
// provider's gate (providers/gate), the one layer that retries; the
// client library's own retries are off.
//
// Idempotency: every create call carries a requestId derived from the
// batch's machine IDs, so a retried call returns the same operation, and
// Create lists first and only creates the machines that are missing.
//
// User-data: each machine's cloud-init user-data carries its own SSH host
// key, but bulkInsert shares one set of metadata between the instances of a
// call; see userdata.go for how each machine selects its own.
//
// Spot: machines whose spec asks for Spot get scheduling.provisioningModel
// SPOT with instanceTerminationAction DELETE, so a reclaimed VM is gone (and
// replaced by the engine) rather than left stopped; GCE's
// ZONE_RESOURCE_POOL_EXHAUSTED is ErrCapacity, for the engine to try
// another pool.
//
// Credentials: application default credentials. PROVISION_GCP_ENDPOINT
// points the client at another endpoint without authentication (cloudsim);
// it is the only difference between the two code paths.
package gcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/google/uuid"
	"github.com/googleapis/gax-go/v2"
	"golang.org/x/sync/errgroup"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/proto"

	"github.com/provisionhq/provision/internal/retry"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/cloudinit"
	"github.com/provisionhq/provision/providers/gate"
)

// Environment variables the provider reads.
const (
	// EnvEndpoint overrides the Compute API endpoint and turns
	// authentication off (for cloudsim).
	EnvEndpoint = "PROVISION_GCP_ENDPOINT"
	// EnvProject is the default project for pools that name none and for
	// List and Delete in a process that has created nothing.
	EnvProject = "GOOGLE_CLOUD_PROJECT"
)

const (
	labelCluster = "provision-cluster"
	labelPool    = "provision-pool"

	// deleteConcurrency bounds concurrent instances.delete calls (GCE has
	// no batch delete). The gate's buckets keep them under GCE's rate
	// quota; 8 in flight deletes a 100-machine pool in seconds.
	deleteConcurrency = 8
	// groupConcurrency bounds the pools (bulkInsert calls) created at once.
	groupConcurrency = 4
	// defaultTimeout bounds a Create or Delete whose ctx has no deadline.
	defaultTimeout = 15 * time.Minute
)

// Provider is the gcp provider.
type Provider struct {
	instances *compute.InstancesClient
	ops       *compute.ZoneOperationsClient
	log       *slog.Logger
	cluster   string
	project   string // default project; may be empty
	gate      *gate.Gate
	poll      retry.Policy // between polls for running, done or gone

	mu       sync.Mutex
	projects map[string]bool                  // projects seen in specs, for List/Delete
	located  map[providers.MachineID]location // where machines were created or seen
}

// location is where an instance is, and whose.
type location struct{ project, zone, cluster, pool string }

var _ providers.Provider = (*Provider)(nil)

// New returns a provider using application default credentials, or the
// endpoint in $PROVISION_GCP_ENDPOINT without authentication.
func New(ctx context.Context, env providers.Env) (*Provider, error) {
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var opts []option.ClientOption
	if ep := os.Getenv(EnvEndpoint); ep != "" {
		opts = append(opts, option.WithEndpoint(ep), option.WithoutAuthentication())
	}
	if env.HTTPClient != nil {
		opts = append(opts, option.WithHTTPClient(env.HTTPClient))
	}
	ic, err := compute.NewInstancesRESTClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("gcp: instances client: %w", err)
	}
	oc, err := compute.NewZoneOperationsRESTClient(ctx, opts...)
	if err != nil {
		_ = ic.Close()
		return nil, fmt.Errorf("gcp: zone operations client: %w", err)
	}
	noRetries(ic, oc)
	log = log.With("provider", "gcp")
	p := &Provider{
		instances: ic, ops: oc, log: log,
		cluster: env.Cluster, project: os.Getenv(EnvProject),
		gate:     gate.New(gateOptions(log)),
		poll:     retry.Policy{Initial: 200 * time.Millisecond, Max: 5 * time.Second},
		projects: map[string]bool{}, located: map[providers.MachineID]location{},
	}
	if p.project != "" {
		p.projects[p.project] = true
	}
	for _, set := range env.Pools {
		if proj, ok := set["project"].(string); ok && proj != "" {
			p.projects[proj] = true
		}
	}
	return p, nil
}

// gateOptions are GCE's published rate quotas ("Compute Engine rate
// quotas", cloud.google.com/compute/api-quota): per project, 1,500
// requests a minute in each group of methods (mutations, *.get, *.list,
// operation reads), counted per minute; a bucket refilled at 25/s with a
// burst of 100 stays inside them. The retry backoff is the gate's.
func gateOptions(log *slog.Logger) gate.Options {
	perGroup := gate.Bucket{Rate: 25, Burst: 100}
	return gate.Options{
		Cloud: "gcp",
		Requests: map[string]gate.Bucket{
			"queries": perGroup, "reads": perGroup, "lists": perGroup, "operations": perGroup,
		},
		Group: func(action string) string {
			switch {
			case strings.HasPrefix(action, "zoneOperations."):
				return "operations"
			case strings.HasSuffix(action, ".list"), strings.HasSuffix(action, ".aggregatedList"):
				return "lists"
			case strings.HasSuffix(action, ".get"):
				return "reads"
			}
			return "queries"
		},
		InFlight: 8,
		Retry:    retry.Policy{Initial: 500 * time.Millisecond, Max: 20 * time.Second},
		Logger:   log,
	}
}

// noRetries turns the client library's retries off (it retries reads on
// 503 and 504 by default): the gate is the one layer that retries.
func noRetries(ic *compute.InstancesClient, oc *compute.ZoneOperationsClient) {
	none := gax.WithRetry(func() gax.Retryer { return nil })
	for _, o := range []*[]gax.CallOption{
		&ic.CallOptions.AggregatedList, &ic.CallOptions.Get, &ic.CallOptions.List,
		&ic.CallOptions.BulkInsert, &ic.CallOptions.Insert, &ic.CallOptions.Delete,
		&oc.CallOptions.Get, &oc.CallOptions.List, &oc.CallOptions.Wait,
	} {
		*o = append(*o, none)
	}
}

// call sends one request through the gate, its failure classified by
// classify first.
func (p *Provider) call(ctx context.Context, c gate.Call, classify func(error) error, f func(ctx context.Context) error) error {
	return p.gate.Do(ctx, c, func(ctx context.Context) error {
		if err := f(ctx); err != nil {
			return classify(err)
		}
		return nil
	})
}

// Close releases the API clients.
func (p *Provider) Close() error {
	return errors.Join(p.instances.Close(), p.ops.Close())
}

// batch is the machines of one create: same location and shared properties.
type batch struct {
	set      settings
	cluster  string
	pool     string
	spot     bool // GCE Spot capacity (providers.MachineSpec.Spot)
	specs    []providers.MachineSpec
	userData map[string][]byte
}

func (b *batch) where() where { return where{zone: b.set.Zone, pool: b.pool} }

// Create makes the machines that do not exist yet, one bulkInsert per pool
// (per batch_size machines), and returns every machine in spec order once each
// has an address.
func (p *Provider) Create(ctx context.Context, specs []providers.MachineSpec) ([]providers.Machine, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	ctx, cancel := withDefaultDeadline(ctx)
	defer cancel()
	batches, err := p.plan(specs)
	if err != nil {
		return nil, err
	}
	pools := poolsOf(batches)
	found := make([]map[string]providers.Machine, len(pools))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(groupConcurrency)
	for i, bs := range pools {
		g.Go(func() error {
			ms, err := p.createPool(gctx, bs)
			if err != nil {
				n := 0
				for _, b := range bs {
					n += len(b.specs)
				}
				return fmt.Errorf("create %d machines in pool %q: %w", n, bs[0].pool, err)
			}
			found[i] = ms
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	all := map[string]providers.Machine{}
	for _, ms := range found {
		for k, m := range ms {
			all[k] = m
		}
	}
	out := make([]providers.Machine, 0, len(specs))
	for _, s := range specs {
		out = append(out, all[string(s.ID)])
	}
	return out, nil
}

// poolsOf groups batches by the pool and zone their machines are in, in
// order: one list finds a pool's machines, and one list a poll watches
// them all, however many batches.
func poolsOf(batches []*batch) [][]*batch {
	type key struct{ project, zone, cluster, pool string }
	idx := map[key]int{}
	var out [][]*batch
	for _, b := range batches {
		k := key{b.set.Project, b.set.Zone, b.cluster, b.pool}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], b)
	}
	return out
}

// plan validates every spec and groups them into batches.
func (p *Provider) plan(specs []providers.MachineSpec) ([]*batch, error) {
	var out []*batch
	open := map[string]*batch{} // the batch still filling, by what its machines share
	seen := map[providers.MachineID]bool{}
	for _, s := range specs {
		set, err := decodeSettings(s.Settings, p.project)
		if err != nil {
			return nil, fmt.Errorf("machine %s (pool %q): %w", s.ID, s.Pool, err)
		}
		if !nameRE.MatchString(string(s.ID)) {
			return nil, fmt.Errorf("%w: machine ID %q is not a GCE instance name (lowercase DNS label)", providers.ErrInvalidSpec, s.ID)
		}
		if seen[s.ID] {
			return nil, fmt.Errorf("%w: machine ID %q twice in one Create", providers.ErrInvalidSpec, s.ID)
		}
		seen[s.ID] = true
		for k := range s.Labels {
			if !labelRE.MatchString(k) {
				return nil, fmt.Errorf("%w: pool %q label %q is not a GCE label key", providers.ErrInvalidSpec, s.Pool, k)
			}
		}
		ud, err := cloudinit.UserData(s)
		if err != nil {
			return nil, err
		}
		// Machines share a bulkInsert when everything but the name and
		// user-data is the same.
		setKey, _ := json.Marshal(set) // plain fields: cannot fail
		k := fmt.Sprintf("%s\x00%s\x00%s\x00%s\x00%v\x00%v\x00%t", s.Cluster, s.Pool, setKey, s.SSHUser, s.AuthorizedKeys, sortedLabels(s.Labels), s.Spot)
		b := open[k]
		if b == nil || len(b.specs) == set.batch() {
			b = &batch{set: set, cluster: s.Cluster, pool: s.Pool, spot: s.Spot, userData: map[string][]byte{}}
			open[k] = b
			out = append(out, b)
		}
		b.specs = append(b.specs, s)
		b.userData[string(s.ID)] = ud
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range out {
		p.projects[b.set.Project] = true
	}
	return out, nil
}

// adoptWithin bounds how long createBatch lists again to adopt a machine
// that a create found taken by name (made by an earlier run under another
// requestId, not listed yet): a name still taken after it is someone
// else's instance.
var adoptWithin = 30 * time.Second

// createPool creates the missing machines of one pool's batches in one
// zone: one list finds what exists, one create call (and one
// operations.wait) a batch makes the rest, and then one list a poll, for
// the whole pool, waits until every machine runs with an address.
func (p *Provider) createPool(ctx context.Context, bs []*batch) (map[string]providers.Machine, error) {
	b0 := bs[0]
	w := b0.where()
	filter := labelFilter(b0.cluster, b0.pool)
	var specs []providers.MachineSpec
	for _, b := range bs {
		specs = append(specs, b.specs...)
	}
	have, err := p.listZone(ctx, b0.set.Project, b0.set.Zone, filter, w, false)
	if err != nil {
		return nil, err
	}
	if err := stopped(have, specs); err != nil {
		return nil, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(groupConcurrency)
	for _, b := range bs {
		g.Go(func() error { return p.createBatch(gctx, b, have) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	// Wait until every machine runs with an address (reads may lag the
	// operations): one list a poll; a throttled or failed list is only a
	// poll, retried by the next one.
	var got map[string]providers.Machine
	err = retry.Do(ctx, p.poll, func(ctx context.Context) (bool, error) {
		have, err := p.listZone(ctx, b0.set.Project, b0.set.Zone, filter, w, true)
		if gate.Transient(err) {
			return false, err
		}
		if err != nil {
			return true, err
		}
		if err := stopped(have, specs); err != nil {
			return true, err
		}
		all := true
		for _, s := range specs {
			m, ok := have[string(s.ID)]
			if !ok || m.Address == "" || m.State != providers.StateRunning {
				all = false // not visible or not running yet: a result, not an error
				continue
			}
			providers.Running(ctx, m)
		}
		if all {
			got = have
		}
		return all, nil
	})
	if err != nil {
		return nil, fmt.Errorf("wait for machines to appear: %w", err)
	}
	return got, nil
}

// createBatch creates the batch's machines that have (the pool's list)
// lacks, with one create call, and waits for its operation. A create the
// cloud failed or lost the answer of is sent again by the gate with the
// same requestId, which GCE answers with the first one's operation. A
// machine whose name is taken (made by an earlier run under another
// requestId: instances.insert says so at once, a bulkInsert's operation
// at its end) is adopted: the pool is listed again, within adoptWithin.
func (p *Provider) createBatch(ctx context.Context, b *batch, have map[string]providers.Machine) error {
	w := b.where()
	adopt, cancel := context.WithTimeout(ctx, adoptWithin)
	defer cancel()
	return retry.Do(adopt, p.poll, func(context.Context) (bool, error) {
		var missing []providers.MachineSpec
		for _, s := range b.specs {
			if _, ok := have[string(s.ID)]; !ok {
				missing = append(missing, s)
			}
		}
		if len(missing) == 0 {
			return true, nil
		}
		action := "instances.bulkInsert"
		if len(missing) == 1 {
			action = "instances.insert"
		}
		var op *compute.Operation
		err := p.call(ctx, gate.Call{Action: action, Idempotent: true}, w.classifyCreate, func(ctx context.Context) (err error) {
			op, err = p.insert(ctx, b, missing)
			return err
		})
		if err == nil {
			err = p.wait(ctx, b.set.Project, b.set.Zone, w, op)
		}
		if !errors.Is(err, errAlreadyExists) {
			return true, err
		}
		again, lerr := p.listZone(ctx, b.set.Project, b.set.Zone, labelFilter(b.cluster, b.pool), w, false)
		if lerr != nil {
			return true, lerr
		}
		if serr := stopped(again, b.specs); serr != nil {
			return true, serr
		}
		have = again
		return false, err
	})
}

// stopped refuses to wait for a machine of specs that is stopped
// (TERMINATED, GCE's stopped state) or being stopped: someone stopped it,
// and waiting would not start it again.
func stopped(have map[string]providers.Machine, specs []providers.MachineSpec) error {
	for _, s := range specs {
		if m, ok := have[string(s.ID)]; ok && m.State == providers.StateStopping {
			return fmt.Errorf("machine %s (%s) is stopped: start it or delete the machine", m.ID, m.ProviderID)
		}
	}
	return nil
}

// insert issues one create call for the missing machines: instances.insert
// for one, instances.bulkInsert for more. The requestId is derived from the
// machines' IDs, so a retry of the same call is the same call.
func (p *Provider) insert(ctx context.Context, b *batch, missing []providers.MachineSpec) (*compute.Operation, error) {
	names := make([]string, 0, len(missing))
	for _, s := range missing {
		names = append(names, string(s.ID))
	}
	reqID := requestID(b.set.Project, b.set.Zone, names)
	log := p.log.With("zone", b.set.Zone, "pool", b.pool, "machines", names, "request_id", reqID, "spot", b.spot)
	if len(names) == 1 {
		props := b.properties(names, false)
		log.Info("gcp: instances.insert")
		return p.instances.Insert(ctx, &computepb.InsertInstanceRequest{
			Project: b.set.Project, Zone: b.set.Zone, RequestId: proto.String(reqID),
			InstanceResource: &computepb.Instance{
				Name: proto.String(names[0]), MachineType: props.MachineType, Labels: props.Labels,
				Metadata: props.Metadata, NetworkInterfaces: props.NetworkInterfaces, Disks: props.Disks,
				Scheduling: props.Scheduling,
			},
		})
	}
	props := b.properties(names, true)
	per := make(map[string]*computepb.BulkInsertInstanceResourcePerInstanceProperties, len(names))
	for _, n := range names {
		per[n] = &computepb.BulkInsertInstanceResourcePerInstanceProperties{Name: proto.String(n)}
	}
	log.Info("gcp: instances.bulkInsert")
	return p.instances.BulkInsert(ctx, &computepb.BulkInsertInstanceRequest{
		Project: b.set.Project, Zone: b.set.Zone, RequestId: proto.String(reqID),
		BulkInsertInstanceResourceResource: &computepb.BulkInsertInstanceResource{
			// All or nothing: a pool that cannot get every machine reports
			// quota/capacity so the engine can fail over to another pool.
			Count:                 proto.Int64(int64(len(names))),
			MinCount:              proto.Int64(int64(len(names))),
			PerInstanceProperties: per,
			InstanceProperties:    props,
		},
	})
}

// properties are the instance properties shared by the machines names,
// for bulkInsert (bulk) or instances.insert: the two take the machine type
// in different forms.
func (b *batch) properties(names []string, bulk bool) *computepb.InstanceProperties {
	labels := map[string]string{}
	for k, v := range b.specs[0].Labels {
		labels[k] = labelValue(v)
	}
	labels[labelCluster] = labelValue(b.cluster)
	labels[labelPool] = labelValue(b.pool)
	disk := &computepb.AttachedDiskInitializeParams{SourceImage: proto.String(b.set.Image)}
	if b.set.DiskGB > 0 {
		disk.DiskSizeGb = proto.Int64(b.set.DiskGB)
	}
	nic := &computepb.NetworkInterface{}
	if b.set.Network != "" {
		nic.Network = proto.String(b.set.networkURL())
	}
	if b.set.Subnetwork != "" {
		nic.Subnetwork = proto.String(b.set.subnetworkURL())
	}
	if b.set.publicIP() {
		nic.AccessConfigs = []*computepb.AccessConfig{{Name: proto.String("External NAT"), Type: proto.String("ONE_TO_ONE_NAT")}}
	}
	return &computepb.InstanceProperties{
		MachineType:       proto.String(b.set.machineTypeRef(bulk)),
		Labels:            labels,
		Scheduling:        b.scheduling(),
		Metadata:          metadataFor(b.cluster, b.pool, names, b.userData, sshKeys(b.specs[0])),
		NetworkInterfaces: []*computepb.NetworkInterface{nic},
		Disks: []*computepb.AttachedDisk{{
			Boot: proto.Bool(true), AutoDelete: proto.Bool(true), InitializeParams: disk,
		}},
	}
}

// scheduling asks for Spot capacity when the pool wants it: a reclaimed
// Spot VM is deleted rather than stopped, so the engine sees it gone and
// replaces it instead of finding a stopped machine. nil (standard) for
// other pools.
func (b *batch) scheduling() *computepb.Scheduling {
	if !b.spot {
		return nil
	}
	return &computepb.Scheduling{
		ProvisioningModel:         proto.String("SPOT"),
		InstanceTerminationAction: proto.String("DELETE"),
	}
}

// wait waits for a zone operation with operations.wait (which blocks up to
// two minutes server-side) until it is DONE or ctx ends, and returns the
// operation's own error, classified. Each wait is a poll: one that was
// throttled or failed is followed by the next.
func (p *Provider) wait(ctx context.Context, project, zone string, w where, op *compute.Operation) error {
	if op.Done() {
		return w.classifyOp(op.Proto())
	}
	name := op.Name()
	return retry.Do(ctx, p.poll, func(ctx context.Context) (bool, error) {
		var got *computepb.Operation
		err := p.call(ctx, gate.Call{Action: "zoneOperations.wait", Poll: true}, w.classifyAPI, func(ctx context.Context) (err error) {
			got, err = p.ops.Wait(ctx, &computepb.WaitZoneOperationRequest{Project: project, Zone: zone, Operation: name})
			return err
		})
		if gate.Transient(err) {
			return false, err
		}
		if err != nil {
			return true, err
		}
		if got.GetStatus() != computepb.Operation_DONE {
			return false, nil
		}
		return true, w.classifyOp(got)
	})
}

// listZone lists one zone's instances matching filter, every page, as one
// request of the gate (a page that fails lists them all again); poll says
// the caller polls (gate.Call.Poll).
func (p *Provider) listZone(ctx context.Context, project, zone, filter string, w where, poll bool) (map[string]providers.Machine, error) {
	var out map[string]providers.Machine
	err := p.call(ctx, gate.Call{Action: "instances.list", Idempotent: true, Poll: poll}, w.classifyAPI, func(ctx context.Context) error {
		out = map[string]providers.Machine{}
		it := p.instances.List(ctx, &computepb.ListInstancesRequest{
			Project: project, Zone: zone, Filter: proto.String(filter), MaxResults: proto.Uint32(500),
		})
		for {
			in, err := it.Next()
			if errors.Is(err, iterator.Done) {
				return nil
			}
			if err != nil {
				return err
			}
			m := p.machine(project, zone, in)
			out[string(m.ID)] = m
		}
	})
	if err != nil {
		return nil, fmt.Errorf("list instances in %s: %w", zone, err)
	}
	return out, nil
}

// List finds the selector's machines in every project this provider knows
// ($GOOGLE_CLOUD_PROJECT and the projects of pools it created), all zones.
func (p *Provider) List(ctx context.Context, sel providers.Selector) ([]providers.Machine, error) {
	if sel.Cluster == "" {
		return nil, fmt.Errorf("%w: list: selector has no cluster", providers.ErrInvalidSpec)
	}
	projects := p.knownProjects()
	if len(projects) == 0 {
		return nil, fmt.Errorf("%w: gcp: no project known to list in: set %s", providers.ErrInvalidSpec, EnvProject)
	}
	filter := labelFilter(sel.Cluster, sel.Pool)
	var out []providers.Machine
	for _, project := range projects {
		var ms []providers.Machine
		w := where{pool: sel.Pool}
		err := p.call(ctx, gate.Call{Action: "instances.aggregatedList", Idempotent: true}, w.classifyAPI, func(ctx context.Context) (err error) {
			ms, err = p.listProject(ctx, project, filter)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("list machines of cluster %q in project %s: %w", sel.Cluster, project, err)
		}
		out = append(out, ms...)
	}
	// Labels are lowercased: keep only exact matches of the real names.
	out = slices.DeleteFunc(out, func(m providers.Machine) bool {
		return m.Cluster != sel.Cluster || (sel.Pool != "" && m.Pool != sel.Pool)
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (p *Provider) listProject(ctx context.Context, project, filter string) ([]providers.Machine, error) {
	var out []providers.Machine
	it := p.instances.AggregatedList(ctx, &computepb.AggregatedListInstancesRequest{
		Project: project, Filter: proto.String(filter), MaxResults: proto.Uint32(500),
	})
	for {
		pair, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("aggregated list: %w", err)
		}
		zone := strings.TrimPrefix(pair.Key, "zones/")
		for _, in := range pair.Value.GetInstances() {
			out = append(out, p.machine(project, zone, in))
		}
	}
}

// machine converts an instance and remembers where it is.
func (p *Provider) machine(project, zone string, in *computepb.Instance) providers.Machine {
	m := providers.Machine{
		ID:         providers.MachineID(in.GetName()),
		ProviderID: fmt.Sprintf("projects/%s/zones/%s/instances/%s", project, zone, in.GetName()),
		Cluster:    metadataValue(in, metaCluster),
		Pool:       metadataValue(in, metaPool),
		Port:       22,
		State:      state(in.GetStatus()),
	}
	if m.Cluster == "" {
		m.Cluster = in.GetLabels()[labelCluster]
	}
	if m.Pool == "" {
		m.Pool = in.GetLabels()[labelPool]
	}
	if nics := in.GetNetworkInterfaces(); len(nics) > 0 {
		m.PrivateAddress = nics[0].GetNetworkIP()
		m.Address = m.PrivateAddress
		for _, ac := range nics[0].GetAccessConfigs() {
			if ac.GetNatIP() != "" {
				m.Address = ac.GetNatIP()
				break
			}
		}
	}
	p.mu.Lock()
	p.located[m.ID] = location{project: project, zone: zone, cluster: m.Cluster, pool: m.Pool}
	p.mu.Unlock()
	return m
}

func state(status string) providers.MachineState {
	switch status {
	case "RUNNING":
		return providers.StateRunning
	// TERMINATED is GCE's stopped state: the instance and its disk remain.
	case "STOPPING", "SUSPENDING", "SUSPENDED", "REPAIRING", "STOPPED", "TERMINATED":
		return providers.StateStopping
	default: // PROVISIONING, STAGING
		return providers.StatePending
	}
}

// Delete deletes the machines and waits until they are gone. GCE has no
// batch delete of instances (outside managed instance groups), so one
// instances.delete per machine is the floor, at most deleteConcurrency at
// a time; the wait is not per machine, though: one list per zone a poll
// until none of them is left. A machine that is already gone is a
// success.
func (p *Provider) Delete(ctx context.Context, ids []providers.MachineID) error {
	if len(ids) == 0 {
		return nil
	}
	ctx, cancel := withDefaultDeadline(ctx)
	defer cancel()
	locs, err := p.locate(ctx, ids)
	if err != nil {
		return err
	}
	// One random requestId per instance per Delete call: stable across this
	// call's retries, but never replaying an older delete of a machine that
	// has since been recreated under the same name.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(deleteConcurrency)
	zones := map[location][]providers.MachineID{} // by project, zone and cluster
	for _, id := range ids {
		loc, ok := locs[id]
		if !ok {
			continue // nowhere to be found: gone
		}
		z := location{project: loc.project, zone: loc.zone, cluster: loc.cluster}
		zones[z] = append(zones[z], id)
		reqID := uuid.NewString()
		g.Go(func() error {
			if err := p.deleteOne(gctx, id, loc, reqID); err != nil {
				return fmt.Errorf("delete machine %s: %w", id, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for z, left := range zones {
		if err := p.waitGone(ctx, z, left); err != nil {
			return err
		}
	}
	p.mu.Lock()
	for _, id := range ids {
		delete(p.located, id)
	}
	p.mu.Unlock()
	p.log.Info("gcp: deleted machines", "count", len(ids))
	return nil
}

// deleteOne sends one instances.delete; its operation is not waited for
// (waitGone watches the instances instead).
func (p *Provider) deleteOne(ctx context.Context, id providers.MachineID, loc location, reqID string) error {
	w := where{zone: loc.zone, pool: loc.pool}
	err := p.call(ctx, gate.Call{Action: "instances.delete", Idempotent: true}, w.classifyAPI, func(ctx context.Context) error {
		_, err := p.instances.Delete(ctx, &computepb.DeleteInstanceRequest{
			Project: loc.project, Zone: loc.zone, Instance: string(id), RequestId: proto.String(reqID),
		})
		return err
	})
	if errors.Is(err, providers.ErrNotFound) {
		return nil
	}
	return err
}

// waitGone polls one zone, one list of the machines' cluster a poll,
// until none of ids is listed.
func (p *Provider) waitGone(ctx context.Context, z location, ids []providers.MachineID) error {
	w := where{zone: z.zone}
	var left []providers.MachineID
	err := retry.Do(ctx, p.poll, func(ctx context.Context) (bool, error) {
		have, err := p.listZone(ctx, z.project, z.zone, labelFilter(z.cluster, ""), w, true)
		if gate.Transient(err) {
			return false, err
		}
		if err != nil {
			return true, err
		}
		left = slices.DeleteFunc(slices.Clone(ids), func(id providers.MachineID) bool {
			_, ok := have[string(id)]
			return !ok
		})
		return len(left) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("wait for %d machines in %s to be gone (%v left): %w", len(ids), z.zone, left, err)
	}
	return nil
}

// locate finds where each machine is: from this process's memory, else by
// listing the cluster in every known project.
func (p *Provider) locate(ctx context.Context, ids []providers.MachineID) (map[providers.MachineID]location, error) {
	out := map[providers.MachineID]location{}
	p.mu.Lock()
	var unknown bool
	for _, id := range ids {
		if loc, ok := p.located[id]; ok {
			out[id] = loc
		} else {
			unknown = true
		}
	}
	p.mu.Unlock()
	if !unknown || p.cluster == "" {
		return out, nil
	}
	if _, err := p.List(ctx, providers.Selector{Cluster: p.cluster}); err != nil {
		return nil, fmt.Errorf("find machines to delete: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range ids {
		if loc, ok := p.located[id]; ok {
			out[id] = loc
		}
	}
	return out, nil
}

func (p *Provider) knownProjects() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.projects))
	for k := range p.projects {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// labelFilter is the GCE list filter for a cluster and optional pool.
func labelFilter(cluster, pool string) string {
	f := fmt.Sprintf(`(labels.%s = "%s")`, labelCluster, labelValue(cluster))
	if pool != "" {
		f += fmt.Sprintf(` AND (labels.%s = "%s")`, labelPool, labelValue(pool))
	}
	return f
}

// requestNS namespaces provision's requestIds (a random, fixed UUID).
var requestNS = uuid.MustParse("6f1c8a52-4b0e-4d7c-9a51-0c3f7e2d9b11")

// requestID is a deterministic UUID for creating exactly these machines in
// this project and zone.
func requestID(project, zone string, names []string) string {
	sorted := slices.Sorted(slices.Values(names))
	return uuid.NewSHA1(requestNS, []byte(project+"/"+zone+"\n"+strings.Join(sorted, "\n"))).String()
}

func sortedLabels(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func withDefaultDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, defaultTimeout)
}
