// Package gcp owns the Google Compute Engine provider: pool settings,
// batch creation with instances.bulkInsert (instances.insert for a batch of
// one), finding machines by label with a paginated aggregated list, and
// deleting them one instance at a time (GCE has no batch delete), all on the
// official REST client cloud.google.com/go/compute/apiv1.
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
	"golang.org/x/sync/errgroup"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/proto"

	"github.com/provisionhq/provision/internal/retry"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/cloudinit"
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
	// no batch delete). GCE's default write rate is 20 requests/s per
	// project; 8 in flight, each followed by an operations.wait, stays well
	// under it while deleting a 100-machine pool in seconds.
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
	backoff   retry.Policy

	mu       sync.Mutex
	projects map[string]bool                  // projects seen in specs, for List/Delete
	located  map[providers.MachineID]location // where machines were created or seen
}

// location is where an instance is.
type location struct{ project, zone, pool string }

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
	ic, err := compute.NewInstancesRESTClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("gcp: instances client: %w", err)
	}
	oc, err := compute.NewZoneOperationsRESTClient(ctx, opts...)
	if err != nil {
		_ = ic.Close()
		return nil, fmt.Errorf("gcp: zone operations client: %w", err)
	}
	p := &Provider{
		instances: ic, ops: oc, log: log.With("provider", "gcp"),
		cluster: env.Cluster, project: os.Getenv(EnvProject),
		backoff:  retry.Policy{Initial: 200 * time.Millisecond, Max: 5 * time.Second},
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
// (per maxBatch machines), and returns every machine in spec order once each
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
	found := make([]map[string]providers.Machine, len(batches))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(groupConcurrency)
	for i, b := range batches {
		g.Go(func() error {
			ms, err := p.createBatch(gctx, b)
			if err != nil {
				return fmt.Errorf("create %d machines in pool %q: %w", len(b.specs), b.pool, err)
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

// plan validates every spec and groups them into batches.
func (p *Provider) plan(specs []providers.MachineSpec) ([]*batch, error) {
	var order []string
	groups := map[string]*batch{}
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
		b := groups[k]
		if b == nil || len(b.specs) == maxBatch {
			if b != nil {
				k += fmt.Sprintf("\x00%d", len(order))
			}
			b = &batch{set: set, cluster: s.Cluster, pool: s.Pool, spot: s.Spot, userData: map[string][]byte{}}
			groups[k] = b
			order = append(order, k)
		}
		b.specs = append(b.specs, s)
		b.userData[string(s.ID)] = ud
	}
	out := make([]*batch, 0, len(order))
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range order {
		b := groups[k]
		p.projects[b.set.Project] = true
		out = append(out, b)
	}
	return out, nil
}

// createBatch creates the batch's missing machines and waits until every
// machine of the batch is visible with an address.
func (p *Provider) createBatch(ctx context.Context, b *batch) (map[string]providers.Machine, error) {
	w := b.where()
	filter := labelFilter(b.cluster, b.pool)
	err := retry.Do(ctx, p.backoff, func(ctx context.Context) (bool, error) {
		have, err := p.listZone(ctx, b.set.Project, b.set.Zone, filter)
		if err != nil {
			return p.retryable(w.classifyAPI(err))
		}
		if err := stopped(have, b.specs); err != nil {
			return true, err
		}
		var missing []providers.MachineSpec
		for _, s := range b.specs {
			if _, ok := have[string(s.ID)]; !ok {
				missing = append(missing, s)
			}
		}
		if len(missing) == 0 {
			return true, nil
		}
		op, err := p.insert(ctx, b, missing)
		if err != nil {
			err = w.classifyCreate(err)
			if errors.Is(err, errAlreadyExists) {
				return false, err // instances.insert says so at once: list again, adopt it
			}
			return p.retryable(err)
		}
		if err := p.wait(ctx, b.set.Project, b.set.Zone, w, op); err != nil {
			if errors.Is(err, errAlreadyExists) {
				return false, err // a machine exists already: list again, adopt it
			}
			return p.retryable(err)
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	// Wait until every machine is visible (reads may lag the operation).
	var got map[string]providers.Machine
	err = retry.Do(ctx, p.backoff, func(ctx context.Context) (bool, error) {
		have, err := p.listZone(ctx, b.set.Project, b.set.Zone, filter)
		if err != nil {
			return p.retryable(w.classifyAPI(err))
		}
		if err := stopped(have, b.specs); err != nil {
			return true, err
		}
		for _, s := range b.specs {
			m, ok := have[string(s.ID)]
			if !ok || m.Address == "" || m.State != providers.StateRunning {
				return false, nil // not visible or not running yet: a result, not an error
			}
		}
		got = have
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("wait for machines to appear: %w", err)
	}
	return got, nil
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

// retryable: throttling and unavailability (a 5xx, a connection lost
// before the answer) are retried, everything else ends the loop. This is
// the one layer that retries them: the client library retries only 503
// and 504 of reads (Get, List, AggregatedList, operations.get), nothing
// for inserts, deletes or operations.wait. A retry never does a thing
// twice: creates carry a requestId derived from the machines and follow
// a list (a machine made meanwhile is adopted by name), deletes carry one
// requestId per Delete call, the rest only read.
func (p *Provider) retryable(err error) (bool, error) {
	if providers.Retryable(err) || errors.Is(err, providers.ErrUnavailable) {
		p.log.Debug("gcp: throttled or unavailable, backing off", "err", err)
		return false, err
	}
	return true, err
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
// operation's own error, classified.
func (p *Provider) wait(ctx context.Context, project, zone string, w where, op *compute.Operation) error {
	if op.Done() {
		return w.classifyOp(op.Proto())
	}
	name := op.Name()
	return retry.Do(ctx, p.backoff, func(ctx context.Context) (bool, error) {
		got, err := p.ops.Wait(ctx, &computepb.WaitZoneOperationRequest{Project: project, Zone: zone, Operation: name})
		if err != nil {
			return p.retryable(w.classifyAPI(err))
		}
		if got.GetStatus() != computepb.Operation_DONE {
			return false, nil
		}
		return true, w.classifyOp(got)
	})
}

// listZone lists one zone's instances matching filter, every page.
func (p *Provider) listZone(ctx context.Context, project, zone, filter string) (map[string]providers.Machine, error) {
	out := map[string]providers.Machine{}
	it := p.instances.List(ctx, &computepb.ListInstancesRequest{
		Project: project, Zone: zone, Filter: proto.String(filter), MaxResults: proto.Uint32(500),
	})
	for {
		in, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("list instances in %s: %w", zone, err)
		}
		m := p.machine(project, zone, in)
		out[string(m.ID)] = m
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
		err := retry.Do(ctx, p.backoff, func(ctx context.Context) (bool, error) {
			var err error
			ms, err = p.listProject(ctx, project, filter)
			if err != nil {
				return p.retryable(w.classifyAPI(err))
			}
			return true, nil
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
	p.located[m.ID] = location{project: project, zone: zone, pool: m.Pool}
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

// Delete deletes the machines, at most deleteConcurrency at a time, and
// waits for each delete operation. A machine that is already gone is a
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
	for _, id := range ids {
		loc, ok := locs[id]
		if !ok {
			continue // nowhere to be found: gone
		}
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
	p.log.Info("gcp: deleted machines", "count", len(ids))
	return nil
}

func (p *Provider) deleteOne(ctx context.Context, id providers.MachineID, loc location, reqID string) error {
	w := where{zone: loc.zone, pool: loc.pool}
	err := retry.Do(ctx, p.backoff, func(ctx context.Context) (bool, error) {
		op, err := p.instances.Delete(ctx, &computepb.DeleteInstanceRequest{
			Project: loc.project, Zone: loc.zone, Instance: string(id), RequestId: proto.String(reqID),
		})
		if err != nil {
			err = w.classifyAPI(err)
			if errors.Is(err, providers.ErrNotFound) {
				return true, nil
			}
			return p.retryable(err)
		}
		err = p.wait(ctx, loc.project, loc.zone, w, op)
		if errors.Is(err, providers.ErrNotFound) {
			return true, nil
		}
		return p.retryable(err)
	})
	if err != nil {
		return err
	}
	p.mu.Lock()
	delete(p.located, id)
	p.mu.Unlock()
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
