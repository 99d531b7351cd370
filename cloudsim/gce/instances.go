package gce

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/provisionhq/provision/cloudsim"
	"github.com/provisionhq/provision/cloudsim/userdata"
)

type instance struct {
	pb        *computepb.Instance
	project   string
	zone      string
	bootAt    time.Time // the last create or start
	visibleAt time.Time
	runningAt time.Time
	deleting  bool // a delete was accepted: STOPPING
	// starting: its backing host is not up yet, so it is not RUNNING
	// whatever the clock says (the address it shows is not yet its own).
	starting bool
	goneAt   time.Time // when the delete finishes; zero while alive
	power    powerState
}

// powerState is where instances.stop/start left an instance.
type powerState int

const (
	poweredOn powerState = iota
	poweringOff
	poweredOff // GCE's TERMINATED: stopped, disk kept
)

// alive reports whether the instance still exists at t (visible or not).
func (in *instance) alive(t time.Time) bool { return in.goneAt.IsZero() || t.Before(in.goneAt) }

func (in *instance) path() string {
	return fmt.Sprintf("projects/%s/zones/%s/instances/%s", in.project, in.zone, in.pb.GetName())
}

// ---- insert and bulkInsert ----

func (s *Server) insert(w http.ResponseWriter, r *http.Request, project, zone string) {
	if s.throttled(w, "instances.insert") {
		return
	}
	var in computepb.Instance
	if ref := readProto(r, &in); ref != nil {
		ref.write(w)
		return
	}
	if ref := checkName("resource.name", in.GetName()); ref != nil {
		ref.write(w)
		return
	}
	props := &computepb.InstanceProperties{
		MachineType: in.MachineType, Labels: in.Labels, Metadata: in.Metadata,
		NetworkInterfaces: in.NetworkInterfaces, Disks: in.Disks, Tags: in.Tags,
		ServiceAccounts: in.ServiceAccounts, Description: in.Description, Scheduling: in.Scheduling,
	}
	s.create(w, r, project, zone, "insert", []string{in.GetName()}, 1, props, false)
}

func (s *Server) bulkInsert(w http.ResponseWriter, r *http.Request, project, zone string) {
	if s.throttled(w, "instances.bulkInsert") {
		return
	}
	var in computepb.BulkInsertInstanceResource
	if ref := readProto(r, &in); ref != nil {
		ref.write(w)
		return
	}
	if in.InstanceProperties == nil && in.SourceInstanceTemplate == nil {
		invalid("resource.instanceProperties", "", "One of instanceProperties or sourceInstanceTemplate must be specified.").write(w)
		return
	}
	if in.SourceInstanceTemplate != nil {
		writeError(w, http.StatusBadRequest, "invalid", "", "cloudsim: sourceInstanceTemplate is not emulated")
		return
	}
	count := int(in.GetCount())
	minCount := int(in.GetMinCount())
	if minCount == 0 {
		minCount = count
	}
	if count <= 0 || count > 5000 || minCount > count || len(in.PerInstanceProperties) > count {
		invalid("resource.count", fmt.Sprint(count), fmt.Sprintf("Must be between 1 and 5000, at least minCount (%d) and at least the number of perInstanceProperties (%d).", minCount, len(in.PerInstanceProperties))).write(w)
		return
	}
	names := make([]string, 0, count)
	for name := range in.PerInstanceProperties {
		if ref := checkName("resource.perInstanceProperties.key", name); ref != nil {
			ref.write(w)
			return
		}
		names = append(names, name)
	}
	sortStrings(names)
	if extra := count - len(names); extra > 0 {
		pat := in.GetNamePattern()
		if !strings.Contains(pat, "#") {
			invalid("resource.namePattern", pat, "A name pattern with '#' is required when count exceeds the number of perInstanceProperties.").write(w)
			return
		}
		s.mu.Lock()
		names = append(names, s.patternNames(project, zone, pat, extra, names)...)
		s.mu.Unlock()
	}
	s.create(w, r, project, zone, "bulkInsert", names, minCount, in.InstanceProperties, true)
}

// patternNames picks n free names from a namePattern ("web-####");
// caller holds s.mu.
func (s *Server) patternNames(project, zone, pat string, n int, taken []string) []string {
	width := strings.Count(pat, "#")
	i := strings.Index(pat, "#")
	prefix, suffix := pat[:i], pat[i+width:]
	used := map[string]bool{}
	for _, t := range taken {
		used[t] = true
	}
	var out []string
	for k := 1; len(out) < n; k++ {
		name := fmt.Sprintf("%s%0*d%s", prefix, width, k, suffix)
		if used[name] || s.instances[key(project, zone, name)] != nil {
			continue
		}
		out = append(out, name)
	}
	return out
}

// create is insert and bulkInsert: it checks the properties as GCE does,
// reserves the names and the requestId under the lock, answers with the
// operation, and finishes the work (backing hosts) before the operation
// may read DONE.
func (s *Server) create(w http.ResponseWriter, r *http.Request, project, zone, kind string, names []string, minCount int, props *computepb.InstanceProperties, bulk bool) {
	res, ref := checkProps(project, zone, props, bulk)
	if ref != nil && ref.opCode == "" {
		ref.write(w)
		return
	}
	faults := s.sim.Faults()
	now := time.Now()

	s.mu.Lock()
	if op := s.replay(project, zone, r.URL.Query().Get("requestId")); op != nil {
		s.mu.Unlock()
		s.log.Info("gce: replayed request", "operation", op.pb.GetName())
		writeProto(w, s.opView(op, now))
		return
	}
	if !bulk {
		// instances.insert refuses a taken name at once; bulkInsert
		// accepts the call and fails its operation (refuseCreate).
		if old := s.instances[key(project, zone, names[0])]; old != nil && old.alive(now) {
			s.mu.Unlock()
			writeError(w, http.StatusConflict, "alreadyExists", "", fmt.Sprintf("The resource '%s' already exists", old.path()))
			return
		}
	}
	target := ""
	if len(names) == 1 {
		target = fmt.Sprintf("projects/%s/zones/%s/instances/%s", project, zone, names[0])
	}
	op := s.newOperation(r, project, zone, kind, target)
	if ref != nil {
		op.fail(ref.opCode, ref.msg, ref.status)
		s.mu.Unlock()
		writeProto(w, s.opView(op, now))
		return
	}
	code, msg, httpCode := s.refuseCreate(project, zone, names, minCount, res, faults, now)
	if code != "" {
		op.fail(code, msg, httpCode)
		if code == "QUOTA_EXCEEDED" {
			op.pb.Error.Errors[0].ErrorDetails = quotaDetails(zone, faults.InstanceQuota)
		}
		s.mu.Unlock()
		writeProto(w, s.opView(op, now))
		return
	}
	if faults.InstanceQuota > 0 {
		// bulkInsert creates at least minCount, at most what fits.
		names = names[:min(len(names), faults.InstanceQuota-s.aliveCount(now))]
	}
	created := make([]*instance, 0, len(names))
	for _, n := range names {
		in := s.newInstance(r, project, zone, n, props, res, now, faults)
		in.starting = s.opts.Backing != nil
		s.instances[key(project, zone, n)] = in
		created = append(created, in)
	}
	s.mu.Unlock()

	// Back the instances with real hosts before the operation completes.
	// An accepted operation goes on when its caller hangs up (a killed
	// client): the hosts' start is not the request's.
	bctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), backingTimeout)
	err := s.start(bctx, created)
	cancel()
	if err != nil {
		s.log.Error("gce: backing failed", "operation", op.pb.GetName(), "err", err)
		s.mu.Lock()
		for _, in := range created {
			delete(s.instances, key(project, zone, in.pb.GetName()))
		}
		op.fail("INTERNAL_ERROR", err.Error(), http.StatusInternalServerError)
		s.notify()
		s.mu.Unlock()
		writeProto(w, s.opView(op, time.Now()))
		return
	}
	s.mu.Lock()
	op.ready = true
	s.notify()
	s.mu.Unlock()
	s.log.Info("gce: created instances", "kind", kind, "zone", zone, "count", len(created), "spot", res.spot, "operation", op.pb.GetName())
	writeProto(w, s.opView(op, time.Now()))
}

// refuseCreate is why an accepted create fails in its operation: no
// capacity (for Spot only, or for all), a name taken, or a quota; empty
// code when it may go ahead. Caller holds s.mu.
func (s *Server) refuseCreate(project, zone string, names []string, minCount int, res *resolved, f cloudsim.Faults, now time.Time) (code, msg string, httpCode int) {
	if f.NoCapacity || (f.SpotNoCapacity && res.spot) {
		return "ZONE_RESOURCE_POOL_EXHAUSTED", fmt.Sprintf("The zone 'projects/%s/zones/%s' does not have enough resources available to fulfill the request.  Try a different zone, or try again later.", project, zone), http.StatusServiceUnavailable
	}
	for _, n := range names {
		if old := s.instances[key(project, zone, n)]; old != nil && old.alive(now) {
			return "RESOURCE_ALREADY_EXISTS", fmt.Sprintf("The resource 'projects/%s/zones/%s/instances/%s' already exists", project, zone, n), http.StatusConflict
		}
	}
	if f.InstanceQuota > 0 && f.InstanceQuota-s.aliveCount(now) < minCount {
		reg, _ := zoneRegion(zone)
		return "QUOTA_EXCEEDED", fmt.Sprintf("Quota 'INSTANCES' exceeded.  Limit: %d.0 in region %s.", f.InstanceQuota, reg.name), http.StatusForbidden
	}
	return "", "", 0
}

func quotaDetails(zone string, limit int) []*computepb.ErrorDetails {
	reg, _ := zoneRegion(zone)
	return []*computepb.ErrorDetails{{QuotaInfo: &computepb.QuotaExceededInfo{
		MetricName: proto.String("compute.googleapis.com/instances"),
		LimitName:  proto.String("INSTANCES-per-project-region"),
		Limit:      proto.Float64(float64(limit)),
		Dimensions: map[string]string{"region": reg.name},
	}}}
}

// backingTimeout bounds a backing host's start or stop, which outlive the
// request that asked for them.
const backingTimeout = 5 * time.Minute

// start runs Backing.Start for each instance (bounded), recording addresses.
func (s *Server) start(ctx context.Context, ins []*instance) error {
	if s.opts.Backing == nil {
		return nil
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(4) // docker container starts; more only contends for 2 cores
	addrs := make([]string, len(ins))
	for i, in := range ins {
		s.mu.Lock()
		name, boot := in.pb.GetName(), bootOf(in.pb)
		s.mu.Unlock()
		g.Go(func() error {
			a, err := s.opts.Backing.Start(ctx, name, boot)
			if err != nil {
				return fmt.Errorf("start instance %s: %w", name, err)
			}
			addrs[i] = a
			return nil
		})
	}
	err := g.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, in := range ins {
		if addrs[i] != "" {
			in.setAddress(addrs[i])
			in.starting = false
		}
	}
	return err
}

// setAddress makes addr the instance's internal and external address (a
// backed host has one); caller holds s.mu.
func (in *instance) setAddress(addr string) {
	nic := in.pb.NetworkInterfaces[0]
	nic.NetworkIP = proto.String(addr)
	for _, ac := range nic.AccessConfigs {
		ac.NatIP = proto.String(addr)
	}
}

// bootOf is what the instance's guest reads at first boot: its user-data
// (see UserDataPrefix) and the ssh-keys metadata the guest agent installs.
func bootOf(pb *computepb.Instance) cloudsim.Boot {
	user, keys := loginKeys(pb.GetMetadata())
	return cloudsim.Boot{UserData: userData(pb), LaunchIndex: userdata.NoLaunchIndex, PublicKeys: keys, KeyUser: user}
}

// userData is what the instance's guest boots with (see UserDataPrefix).
func userData(pb *computepb.Instance) []byte {
	var plain string
	for _, it := range pb.GetMetadata().GetItems() {
		switch it.GetKey() {
		case UserDataPrefix + pb.GetName():
			return []byte(it.GetValue())
		case "user-data":
			plain = it.GetValue()
		}
	}
	return []byte(plain)
}

// newInstance builds the instance as GCE reports it: references as full
// URLs, the boot disk created from the image, scheduling filled in.
func (s *Server) newInstance(r *http.Request, project, zone, name string, props *computepb.InstanceProperties, res *resolved, now time.Time, f cloudsim.Faults) *instance {
	s.seq++
	n := s.seq
	pb := proto.Clone(props).(*computepb.InstanceProperties)
	reg, _ := zoneRegion(zone)
	for i, nic := range pb.NetworkInterfaces {
		nic.Name = proto.String(fmt.Sprintf("nic%d", i))
		nic.Network = proto.String(selfLink(r, res.networks[i]))
		nic.Subnetwork = proto.String(selfLink(r, res.subnets[i]))
		nic.NetworkIP = proto.String(hostIP(reg.cidr, n))
		for _, ac := range nic.AccessConfigs {
			ac.Type = proto.String("ONE_TO_ONE_NAT")
			ac.Name = proto.String(cmp.Or(ac.GetName(), "External NAT"))
			ac.NetworkTier = proto.String("PREMIUM")
			ac.NatIP = proto.String(fmt.Sprintf("35.200.%d.%d", (n/250)%250, n%250+2))
		}
	}
	d := pb.Disks[0]
	disk := &computepb.AttachedDisk{
		Kind: proto.String("compute#attachedDisk"), Type: proto.String("PERSISTENT"), Mode: proto.String("READ_WRITE"),
		Boot: proto.Bool(true), Index: proto.Int32(0), Interface: proto.String("SCSI"),
		AutoDelete: proto.Bool(d.AutoDelete == nil || d.GetAutoDelete()),
		DeviceName: proto.String(cmp.Or(d.GetDeviceName(), "persistent-disk-0")),
		Source:     proto.String(selfLink(r, fmt.Sprintf("projects/%s/zones/%s/disks/%s", project, zone, name))),
		DiskSizeGb: proto.Int64(res.diskGB),
	}
	in := &computepb.Instance{
		Kind:              proto.String("compute#instance"),
		Id:                proto.Uint64(1000000000000000000 + n),
		Name:              proto.String(name),
		Zone:              proto.String(selfLink(r, fmt.Sprintf("projects/%s/zones/%s", project, zone))),
		SelfLink:          proto.String(selfLink(r, fmt.Sprintf("projects/%s/zones/%s/instances/%s", project, zone, name))),
		MachineType:       proto.String(selfLink(r, fmt.Sprintf("projects/%s/zones/%s/machineTypes/%s", project, zone, res.machineType.name))),
		Labels:            pb.Labels,
		Metadata:          pb.Metadata,
		NetworkInterfaces: pb.NetworkInterfaces,
		Disks:             []*computepb.AttachedDisk{disk},
		Tags:              pb.Tags,
		Description:       pb.Description,
		ServiceAccounts:   pb.ServiceAccounts,
		Scheduling:        res.scheduling,
		CreationTimestamp: proto.String(now.Format(time.RFC3339Nano)),
		Status:            proto.String("PROVISIONING"),
	}
	if in.Metadata != nil {
		in.Metadata.Fingerprint = proto.String(fmt.Sprintf("fp%d", n))
	}
	return &instance{
		pb: in, project: project, zone: zone, bootAt: now,
		visibleAt: now.Add(f.InvisibleFor), runningAt: now.Add(f.PendingFor),
	}
}

// hostIP is the n-th address of a subnetwork (.0 and .1 are GCE's).
func hostIP(cidr netip.Prefix, n uint64) string {
	a := cidr.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	size := uint32(1) << (32 - cidr.Bits())
	v += 2 + uint32(n%uint64(size-4))
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String()
}

// view returns the instance as a read at t sees it; nil when invisible.
// Caller holds s.mu.
func (in *instance) view(t time.Time) *computepb.Instance {
	if t.Before(in.visibleAt) || !in.alive(t) {
		return nil
	}
	pb := proto.Clone(in.pb).(*computepb.Instance)
	switch {
	case in.deleting, in.power == poweringOff:
		pb.Status = proto.String("STOPPING")
	case in.power == poweredOff:
		pb.Status = proto.String("TERMINATED")
	case in.starting:
		pb.Status = proto.String("STAGING")
	case !t.Before(in.runningAt):
		pb.Status = proto.String("RUNNING")
	case t.Sub(in.bootAt) > (in.runningAt.Sub(in.bootAt))/2:
		pb.Status = proto.String("STAGING")
	}
	return pb
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, project, zone, name string) {
	if s.throttled(w, "instances.get") {
		return
	}
	s.mu.Lock()
	var pb *computepb.Instance
	if in := s.instances[key(project, zone, name)]; in != nil {
		pb = in.view(time.Now())
	}
	s.mu.Unlock()
	if pb == nil {
		notFound(fmt.Sprintf("projects/%s/zones/%s/instances/%s", project, zone, name)).write(w)
		return
	}
	writeProto(w, pb)
}

// writable returns the instance a write call names: writes see an
// instance that reads cannot see yet. Caller holds s.mu.
func (s *Server) writable(project, zone, name string, now time.Time) (*instance, *refusal) {
	in := s.instances[key(project, zone, name)]
	if in == nil || !in.alive(now) {
		return nil, notFound(fmt.Sprintf("projects/%s/zones/%s/instances/%s", project, zone, name))
	}
	return in, nil
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, project, zone, name string) {
	if s.throttled(w, "instances.delete") {
		return
	}
	now := time.Now()
	s.mu.Lock()
	in, ref := s.writable(project, zone, name, now)
	if ref != nil {
		s.mu.Unlock()
		ref.write(w)
		return
	}
	if op := s.replay(project, zone, r.URL.Query().Get("requestId")); op != nil {
		s.mu.Unlock()
		writeProto(w, s.opView(op, now))
		return
	}
	op := s.newOperation(r, project, zone, "delete", in.path())
	in.deleting = true
	s.mu.Unlock()

	if s.opts.Backing != nil {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), backingTimeout)
		err := s.opts.Backing.Stop(bctx, name)
		cancel()
		if err != nil {
			s.log.Error("gce: stop backing host", "instance", name, "err", err)
		}
	}
	s.mu.Lock()
	op.ready = true
	in.goneAt = op.doneAt
	s.notify()
	s.mu.Unlock()
	writeProto(w, s.opView(op, time.Now()))
}

// power is instances.stop (on false) and instances.start (on true): the
// instance goes STOPPING → TERMINATED with its disk kept, and back to
// RUNNING with a new external address, through cloudsim.Power when the
// instance is backed.
func (s *Server) power(w http.ResponseWriter, r *http.Request, project, zone, name string, on bool) {
	kind := map[bool]string{false: "stop", true: "start"}[on]
	if s.throttled(w, "instances."+kind) {
		return
	}
	pw, canPower := s.opts.Backing.(cloudsim.Power)
	if s.opts.Backing != nil && !canPower {
		writeError(w, http.StatusBadRequest, "unsupported", "", "cloudsim: this backing cannot stop and start instances")
		return
	}
	now := time.Now()
	s.mu.Lock()
	in, ref := s.writable(project, zone, name, now)
	if ref == nil && (in.deleting || (on && in.power == poweringOff)) {
		ref = &refusal{status: http.StatusBadRequest, reason: "resourceNotReady",
			msg: fmt.Sprintf("The resource '%s' is not ready", in.path())}
	}
	if ref != nil {
		s.mu.Unlock()
		ref.write(w)
		return
	}
	if op := s.replay(project, zone, r.URL.Query().Get("requestId")); op != nil {
		s.mu.Unlock()
		writeProto(w, s.opView(op, now))
		return
	}
	op := s.newOperation(r, project, zone, kind, in.path())
	if (on && in.power == poweredOn) || (!on && in.power != poweredOn) {
		op.ready = true // already where it was asked to be: nothing to do
		s.mu.Unlock()
		writeProto(w, s.opView(op, now))
		return
	}
	if !on {
		in.power = poweringOff
	}
	s.mu.Unlock()

	addr, err := s.switchPower(r.Context(), pw, name, on)
	s.mu.Lock()
	switch {
	case err != nil:
		s.log.Error("gce: "+kind+" backing host", "instance", name, "err", err)
		op.fail("INTERNAL_ERROR", err.Error(), http.StatusInternalServerError)
		if !on {
			in.power = poweredOn
		}
	case on:
		in.power, in.bootAt, in.runningAt = poweredOn, time.Now(), time.Now().Add(s.sim.Faults().PendingFor)
		s.seq++
		for _, ac := range in.pb.NetworkInterfaces[0].AccessConfigs {
			ac.NatIP = proto.String(fmt.Sprintf("35.201.%d.%d", (s.seq/250)%250, s.seq%250+2))
		}
		if addr != "" {
			in.setAddress(addr)
		}
	default:
		in.power = poweredOff
		for _, ac := range in.pb.NetworkInterfaces[0].AccessConfigs {
			ac.NatIP = nil // an ephemeral external address is released on stop
		}
	}
	op.ready = true
	s.notify()
	s.mu.Unlock()
	writeProto(w, s.opView(op, time.Now()))
}

func (s *Server) switchPower(ctx context.Context, pw cloudsim.Power, name string, on bool) (string, error) {
	if pw == nil {
		return "", nil
	}
	if on {
		return pw.PowerOn(ctx, name)
	}
	return "", pw.PowerOff(ctx, name)
}

// aliveCount counts instances alive at t; caller holds s.mu.
func (s *Server) aliveCount(t time.Time) int {
	n := 0
	for _, in := range s.instances {
		if in.alive(t) {
			n++
		}
	}
	return n
}

// ---- list ----

func (s *Server) list(w http.ResponseWriter, r *http.Request, project, zone string) {
	if s.throttled(w, "instances.list") {
		return
	}
	q := r.URL.Query()
	f, err := parseFilter(q.Get("filter"))
	if err != nil {
		invalid("filter", q.Get("filter"), err.Error()).write(w)
		return
	}
	all := s.matching(project, func(in *instance) bool { return in.zone == zone }, f)
	page, next, ref := paginate(all, q.Get("maxResults"), q.Get("pageToken"))
	if ref != nil {
		ref.write(w)
		return
	}
	writeProto(w, &computepb.InstanceList{
		Kind:          proto.String("compute#instanceList"),
		Id:            proto.String(fmt.Sprintf("projects/%s/zones/%s/instances", project, zone)),
		Items:         page,
		NextPageToken: next,
		SelfLink:      proto.String(selfLink(r, fmt.Sprintf("projects/%s/zones/%s/instances", project, zone))),
	})
}

func (s *Server) aggregatedList(w http.ResponseWriter, r *http.Request, project string) {
	if s.throttled(w, "instances.aggregatedList") {
		return
	}
	q := r.URL.Query()
	f, err := parseFilter(q.Get("filter"))
	if err != nil {
		invalid("filter", q.Get("filter"), err.Error()).write(w)
		return
	}
	all := s.matching(project, func(*instance) bool { return true }, f)
	page, next, ref := paginate(all, q.Get("maxResults"), q.Get("pageToken"))
	if ref != nil {
		ref.write(w)
		return
	}
	items := map[string]*computepb.InstancesScopedList{}
	for _, pb := range page {
		z := "zones/" + lastSegment(pb.GetZone())
		if items[z] == nil {
			items[z] = &computepb.InstancesScopedList{}
		}
		items[z].Instances = append(items[z].Instances, pb)
	}
	writeProto(w, &computepb.InstanceAggregatedList{
		Kind:          proto.String("compute#instanceAggregatedList"),
		Id:            proto.String("projects/" + project + "/aggregated/instances"),
		Items:         items,
		NextPageToken: next,
		SelfLink:      proto.String(selfLink(r, "projects/"+project+"/aggregated/instances")),
	})
}

// matching returns the visible instances of project that pass keep and the
// filter, sorted by zone and name (GCE lists in a stable order).
func (s *Server) matching(project string, keep func(*instance) bool, f filter) []*computepb.Instance {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*computepb.Instance
	for _, in := range s.instances {
		if in.project != project || !keep(in) {
			continue
		}
		pb := in.view(now)
		if pb == nil || !f.match(instanceField(pb)) {
			continue
		}
		out = append(out, pb)
	}
	sortInstances(out)
	return out
}

// Inventory returns the instances not being deleted, by name, and how
// many were ever inserted.
func (s *Server) Inventory() cloudsim.Inventory {
	s.mu.Lock()
	defer s.mu.Unlock()
	inv := cloudsim.Inventory{Alive: []string{}, Launched: len(s.instances)}
	for _, in := range s.instances {
		if in.goneAt.IsZero() {
			inv.Alive = append(inv.Alive, in.pb.GetName())
		}
	}
	slices.Sort(inv.Alive)
	return inv
}

// Instances returns a snapshot of every live instance (tests check for
// duplicates and leaks with it), visible yet or not, with its status now.
func (s *Server) Instances() []*computepb.Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*computepb.Instance, 0, len(s.instances))
	now := time.Now()
	for _, in := range s.instances {
		if !in.alive(now) {
			continue
		}
		v := *in
		v.visibleAt = time.Time{}
		out = append(out, v.view(now))
	}
	sortInstances(out)
	return out
}
