// Package gce owns the Compute Engine emulator: the REST/JSON paths the
// official Go client (cloud.google.com/go/compute/apiv1, REST transport)
// calls for instances and zone operations, with GCE's own request and
// response shapes (computepb via protojson), requestId idempotency,
// operations that go PENDING → RUNNING → DONE, eventual consistency,
// throttling, quota and capacity errors. Faults and call counters come from
// cloudsim.Sim; cloudsim.Backing can make each instance a real local host.
package gce

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/provisionhq/provision/cloudsim"
	"github.com/provisionhq/provision/cloudsim/userdata"
)

// UserDataPrefix names the metadata items that carry one instance's own
// user-data when a bulkInsert shares one metadata set between instances:
// the instance named N boots with item UserDataPrefix+N when it exists, else
// with item "user-data". This models the boot-time selector script the gcp
// provider puts in "user-data" (see providers/gcp); the provider keeps its
// own copy of the name so it does not depend on the emulator.
const UserDataPrefix = "provision-user-data-"

// Options configure a Server.
type Options struct {
	// Project is the only project accepted; any project when empty.
	Project string
	// Backing makes instances real local hosts; nil keeps them records.
	Backing cloudsim.Backing
	Logger  *slog.Logger
	// OperationDelay is how long an operation stays RUNNING before DONE;
	// 20ms when zero.
	OperationDelay time.Duration
	// MaxWait caps one operations.wait call, as GCE caps it at 2 minutes;
	// 2 minutes when zero.
	MaxWait time.Duration
}

// Server is the emulator; it implements http.Handler.
type Server struct {
	sim  *cloudsim.Sim
	opts Options
	log  *slog.Logger

	mu         sync.Mutex
	instances  map[string]*instance  // key: project/zone/name
	operations map[string]*operation // key: project/zone/opname
	requests   map[string]string     // project/zone/requestId → op key
	seq        uint64
	changed    chan struct{} // closed and replaced on every op change
}

type instance struct {
	pb        *computepb.Instance
	project   string
	zone      string
	createdAt time.Time
	visibleAt time.Time
	runningAt time.Time
	deleting  bool      // a delete was accepted: STOPPING
	goneAt    time.Time // when the delete finishes; zero while alive
}

// alive reports whether the instance still exists at t (visible or not).
func (in *instance) alive(t time.Time) bool { return in.goneAt.IsZero() || t.Before(in.goneAt) }

type operation struct {
	pb     *computepb.Operation
	doneAt time.Time // when the work is finished and the op may read DONE
	ready  bool      // the work (backing, bookkeeping) is finished
}

// New returns an emulator driven by sim.
func New(sim *cloudsim.Sim, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.OperationDelay <= 0 {
		opts.OperationDelay = 20 * time.Millisecond
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = 2 * time.Minute
	}
	return &Server{
		sim: sim, opts: opts, log: opts.Logger,
		instances:  map[string]*instance{},
		operations: map[string]*operation{},
		requests:   map[string]string{},
		changed:    make(chan struct{}),
	}
}

var _ http.Handler = (*Server)(nil)

// ServeHTTP routes /compute/v1/projects/{p}/... requests.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) < 4 || parts[0] != "compute" || parts[1] != "v1" || parts[2] != "projects" {
		writeError(w, http.StatusNotFound, "notFound", "NOT_FOUND", fmt.Sprintf("The requested URL %s was not found.", r.URL.Path))
		return
	}
	project := parts[3]
	if s.opts.Project != "" && project != s.opts.Project {
		writeError(w, http.StatusNotFound, "notFound", "NOT_FOUND", fmt.Sprintf("The resource 'projects/%s' was not found", project))
		return
	}
	rest := parts[4:]
	m := r.Method
	switch {
	case len(rest) == 2 && rest[0] == "aggregated" && rest[1] == "instances" && m == http.MethodGet:
		s.aggregatedList(w, r, project)
	case len(rest) >= 3 && rest[0] == "zones" && rest[2] == "instances":
		zone := rest[1]
		switch {
		case len(rest) == 3 && m == http.MethodGet:
			s.list(w, r, project, zone)
		case len(rest) == 3 && m == http.MethodPost:
			s.insert(w, r, project, zone)
		case len(rest) == 4 && rest[3] == "bulkInsert" && m == http.MethodPost:
			s.bulkInsert(w, r, project, zone)
		case len(rest) == 4 && m == http.MethodGet:
			s.get(w, r, project, zone, rest[3])
		case len(rest) == 4 && m == http.MethodDelete:
			s.delete(w, r, project, zone, rest[3])
		default:
			writeError(w, http.StatusNotFound, "notFound", "NOT_FOUND", "unsupported instances call "+m+" "+r.URL.Path)
		}
	case len(rest) >= 4 && rest[0] == "zones" && rest[2] == "operations":
		zone, name := rest[1], rest[3]
		switch {
		case len(rest) == 4 && m == http.MethodGet:
			s.getOperation(w, r, project, zone, name, false)
		case len(rest) == 5 && rest[4] == "wait" && m == http.MethodPost:
			s.getOperation(w, r, project, zone, name, true)
		default:
			writeError(w, http.StatusNotFound, "notFound", "NOT_FOUND", "unsupported operations call "+m+" "+r.URL.Path)
		}
	default:
		writeError(w, http.StatusNotFound, "notFound", "NOT_FOUND", "unsupported call "+m+" "+r.URL.Path)
	}
}

// throttled counts the call and answers 429 when the sim refuses it.
func (s *Server) throttled(w http.ResponseWriter, action string) bool {
	if !s.sim.Call(action) {
		return false
	}
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusTooManyRequests, "rateLimitExceeded", "RESOURCE_EXHAUSTED",
		"Rate Limit Exceeded")
	return true
}

// writeError writes Google's standard JSON error body, which
// googleapi.CheckResponse turns into a *googleapi.Error with Errors[].Reason.
func writeError(w http.ResponseWriter, code int, reason, status, msg string) {
	body := map[string]any{"error": map[string]any{
		"code":    code,
		"message": msg,
		"errors":  []any{map[string]any{"message": msg, "domain": "global", "reason": reason}},
		"status":  status,
	}}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

func writeProto(w http.ResponseWriter, m proto.Message) {
	b, err := protojson.Marshal(m)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "backendError", "INTERNAL", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_, _ = w.Write(b)
}

func readProto(r *http.Request, m proto.Message) error {
	var buf strings.Builder
	if _, err := ioCopy(&buf, r); err != nil {
		return err
	}
	// Strict: an unknown field is a client bug the emulator must surface.
	return protojson.Unmarshal([]byte(buf.String()), m)
}

func key(project, zone, name string) string { return project + "/" + zone + "/" + name }

func selfLink(r *http.Request, path string) string {
	return "https://" + r.Host + "/compute/v1/" + path
}

// notify wakes operations.wait callers; caller holds s.mu.
func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// ---- instances ----

func (s *Server) insert(w http.ResponseWriter, r *http.Request, project, zone string) {
	if s.throttled(w, "instances.insert") {
		return
	}
	var in computepb.Instance
	if err := readProto(r, &in); err != nil {
		writeError(w, http.StatusBadRequest, "invalid", "INVALID_ARGUMENT", "Invalid JSON payload received. "+err.Error())
		return
	}
	if in.GetName() == "" {
		writeError(w, http.StatusBadRequest, "required", "INVALID_ARGUMENT", "Required field 'resource.name' not specified")
		return
	}
	props := &computepb.InstanceProperties{
		MachineType: in.MachineType, Labels: in.Labels, Metadata: in.Metadata,
		NetworkInterfaces: in.NetworkInterfaces, Disks: in.Disks, Tags: in.Tags,
		ServiceAccounts: in.ServiceAccounts, Description: in.Description,
	}
	s.create(w, r, project, zone, "insert", []string{in.GetName()}, 1, props)
}

func (s *Server) bulkInsert(w http.ResponseWriter, r *http.Request, project, zone string) {
	if s.throttled(w, "instances.bulkInsert") {
		return
	}
	var in computepb.BulkInsertInstanceResource
	if err := readProto(r, &in); err != nil {
		writeError(w, http.StatusBadRequest, "invalid", "INVALID_ARGUMENT", "Invalid JSON payload received. "+err.Error())
		return
	}
	if in.InstanceProperties == nil && in.SourceInstanceTemplate == nil {
		writeError(w, http.StatusBadRequest, "invalid", "INVALID_ARGUMENT", "Invalid value for field 'resource.instanceProperties': one of instanceProperties or sourceInstanceTemplate is required.")
		return
	}
	if in.SourceInstanceTemplate != nil {
		writeError(w, http.StatusBadRequest, "invalid", "INVALID_ARGUMENT", "cloudsim: sourceInstanceTemplate is not emulated")
		return
	}
	count := int(in.GetCount())
	minCount := int(in.GetMinCount())
	if minCount == 0 {
		minCount = count
	}
	if count <= 0 || count > 5000 || minCount > count || len(in.PerInstanceProperties) > count {
		writeError(w, http.StatusBadRequest, "invalid", "INVALID_ARGUMENT", fmt.Sprintf("Invalid value for field 'resource.count': %d (minCount %d, perInstanceProperties %d).", count, minCount, len(in.PerInstanceProperties)))
		return
	}
	names := make([]string, 0, count)
	for name := range in.PerInstanceProperties {
		names = append(names, name)
	}
	sortStrings(names)
	if extra := count - len(names); extra > 0 {
		pat := in.GetNamePattern()
		if !strings.Contains(pat, "#") {
			writeError(w, http.StatusBadRequest, "invalid", "INVALID_ARGUMENT", "Invalid value for field 'resource.namePattern': a pattern with '#' is required when count exceeds perInstanceProperties.")
			return
		}
		s.mu.Lock()
		names = append(names, s.patternNames(project, zone, pat, extra, names)...)
		s.mu.Unlock()
	}
	s.create(w, r, project, zone, "bulkInsert", names, minCount, in.InstanceProperties)
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

// create is insert and bulkInsert: it reserves the names and the requestId
// under the lock, answers with the operation, and finishes the work (backing
// hosts) before the operation may read DONE.
func (s *Server) create(w http.ResponseWriter, r *http.Request, project, zone, kind string, names []string, minCount int, props *computepb.InstanceProperties) {
	reqID := r.URL.Query().Get("requestId")
	faults := s.sim.Faults()
	now := time.Now()

	s.mu.Lock()
	if reqID != "" {
		if opKey, ok := s.requests[key(project, zone, reqID)]; ok {
			op := s.operations[opKey]
			s.mu.Unlock()
			s.log.Info("gce: replayed request", "request_id", reqID, "operation", op.pb.GetName())
			writeProto(w, s.opView(op, now))
			return
		}
	}
	op := s.newOperation(r, project, zone, kind, names)
	if reqID != "" {
		s.requests[key(project, zone, reqID)] = key(project, zone, op.pb.GetName())
	}
	var opErr *computepb.Errors
	httpCode := int32(0)
	if faults.NoCapacity {
		opErr = &computepb.Errors{
			Code:    proto.String("ZONE_RESOURCE_POOL_EXHAUSTED"),
			Message: proto.String(fmt.Sprintf("The zone 'projects/%s/zones/%s' does not have enough resources available to fulfill the request.  Try a different zone, or try again later.", project, zone)),
		}
		httpCode = http.StatusServiceUnavailable
	}
	for _, n := range names {
		if old := s.instances[key(project, zone, n)]; opErr == nil && old != nil && old.alive(now) {
			opErr = &computepb.Errors{
				Code:    proto.String("RESOURCE_ALREADY_EXISTS"),
				Message: proto.String(fmt.Sprintf("The resource 'projects/%s/zones/%s/instances/%s' already exists", project, zone, n)),
			}
			httpCode = http.StatusConflict
		}
	}
	if opErr == nil && faults.InstanceQuota > 0 {
		room := faults.InstanceQuota - s.aliveCount(now)
		if room < minCount {
			region := zone
			if i := strings.LastIndex(zone, "-"); i > 0 {
				region = zone[:i]
			}
			opErr = &computepb.Errors{
				Code: proto.String("QUOTA_EXCEEDED"),
				Message: proto.String(fmt.Sprintf("Quota 'INSTANCES' exceeded.  Limit: %d.0 in region %s.",
					faults.InstanceQuota, region)),
				ErrorDetails: []*computepb.ErrorDetails{{QuotaInfo: &computepb.QuotaExceededInfo{
					MetricName: proto.String("compute.googleapis.com/instances"),
					LimitName:  proto.String("INSTANCES-per-project-region"),
					Limit:      proto.Float64(float64(faults.InstanceQuota)),
					Dimensions: map[string]string{"region": region},
				}}},
			}
			httpCode = http.StatusForbidden
		} else if room < len(names) {
			names = names[:room] // bulkInsert creates at least minCount, at most what fits
		}
	}
	if opErr != nil {
		op.pb.Error = &computepb.Error{Errors: []*computepb.Errors{opErr}}
		op.pb.HttpErrorStatusCode = proto.Int32(httpCode)
		op.pb.HttpErrorMessage = proto.String(strings.ToUpper(http.StatusText(int(httpCode))))
		op.ready = true
		s.mu.Unlock()
		writeProto(w, s.opView(op, now))
		return
	}
	created := make([]*instance, 0, len(names))
	for _, n := range names {
		in := s.newInstance(r, project, zone, n, props, now, faults)
		s.instances[key(project, zone, n)] = in
		created = append(created, in)
	}
	s.mu.Unlock()

	// Back the instances with real hosts before the operation completes;
	// the request's context bounds the work.
	if err := s.start(r.Context(), created); err != nil {
		s.log.Error("gce: backing failed", "operation", op.pb.GetName(), "err", err)
		s.mu.Lock()
		for _, in := range created {
			delete(s.instances, key(project, zone, in.pb.GetName()))
		}
		op.pb.Error = &computepb.Error{Errors: []*computepb.Errors{{Code: proto.String("INTERNAL_ERROR"), Message: proto.String(err.Error())}}}
		op.pb.HttpErrorStatusCode = proto.Int32(http.StatusInternalServerError)
		op.ready = true
		s.notify()
		s.mu.Unlock()
		writeProto(w, s.opView(op, time.Now()))
		return
	}
	s.mu.Lock()
	op.ready = true
	s.notify()
	s.mu.Unlock()
	s.log.Info("gce: created instances", "kind", kind, "zone", zone, "count", len(created), "operation", op.pb.GetName())
	writeProto(w, s.opView(op, time.Now()))
}

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
		name, ud := in.pb.GetName(), userData(in.pb)
		s.mu.Unlock()
		g.Go(func() error {
			a, err := s.opts.Backing.Start(ctx, name, cloudsim.Boot{UserData: ud, LaunchIndex: userdata.NoLaunchIndex})
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
		if addrs[i] == "" {
			continue
		}
		nic := in.pb.NetworkInterfaces[0]
		nic.NetworkIP = proto.String(addrs[i])
		for _, ac := range nic.AccessConfigs {
			ac.NatIP = proto.String(addrs[i])
		}
	}
	return err
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

func (s *Server) newInstance(r *http.Request, project, zone, name string, props *computepb.InstanceProperties, now time.Time, f cloudsim.Faults) *instance {
	s.seq++
	n := s.seq
	pb := proto.Clone(props).(*computepb.InstanceProperties)
	nics := pb.NetworkInterfaces
	if len(nics) == 0 {
		nics = []*computepb.NetworkInterface{{Network: proto.String("global/networks/default")}}
	}
	for i, nic := range nics {
		nic.Name = proto.String(fmt.Sprintf("nic%d", i))
		if i == 0 {
			nic.NetworkIP = proto.String(fmt.Sprintf("10.128.%d.%d", (n/250)%250, n%250+2))
			for _, ac := range nic.AccessConfigs {
				ac.NatIP = proto.String(fmt.Sprintf("35.200.%d.%d", (n/250)%250, n%250+2))
			}
		}
	}
	mt := pb.GetMachineType()
	if !strings.Contains(mt, "/") {
		mt = fmt.Sprintf("zones/%s/machineTypes/%s", zone, mt)
	}
	in := &computepb.Instance{
		Kind:              proto.String("compute#instance"),
		Id:                proto.Uint64(1000000000000000000 + n),
		Name:              proto.String(name),
		Zone:              proto.String(selfLink(r, fmt.Sprintf("projects/%s/zones/%s", project, zone))),
		SelfLink:          proto.String(selfLink(r, fmt.Sprintf("projects/%s/zones/%s/instances/%s", project, zone, name))),
		MachineType:       proto.String(selfLink(r, "projects/"+project+"/"+mt)),
		Labels:            pb.Labels,
		Metadata:          pb.Metadata,
		NetworkInterfaces: nics,
		Disks:             []*computepb.AttachedDisk{{Boot: proto.Bool(true), DeviceName: proto.String(name), AutoDelete: proto.Bool(true)}},
		Tags:              pb.Tags,
		Description:       pb.Description,
		CreationTimestamp: proto.String(now.Format(time.RFC3339Nano)),
		Status:            proto.String("PROVISIONING"),
	}
	if in.Metadata != nil {
		in.Metadata.Fingerprint = proto.String(fmt.Sprintf("fp%d", n))
	}
	return &instance{
		pb: in, project: project, zone: zone, createdAt: now,
		visibleAt: now.Add(f.InvisibleFor), runningAt: now.Add(f.PendingFor),
	}
}

// view returns the instance as a read at t sees it; nil when invisible.
// Caller holds s.mu.
func (in *instance) view(t time.Time) *computepb.Instance {
	if t.Before(in.visibleAt) || !in.alive(t) {
		return nil
	}
	pb := proto.Clone(in.pb).(*computepb.Instance)
	switch {
	case in.deleting:
		pb.Status = proto.String("STOPPING")
	case !t.Before(in.runningAt):
		pb.Status = proto.String("RUNNING")
	case t.Sub(in.createdAt) > (in.runningAt.Sub(in.createdAt))/2:
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
		writeError(w, http.StatusNotFound, "notFound", "NOT_FOUND", fmt.Sprintf("The resource 'projects/%s/zones/%s/instances/%s' was not found", project, zone, name))
		return
	}
	writeProto(w, pb)
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, project, zone, name string) {
	if s.throttled(w, "instances.delete") {
		return
	}
	now := time.Now()
	s.mu.Lock()
	// Delete is a write: it sees an instance that reads cannot see yet.
	in := s.instances[key(project, zone, name)]
	if in == nil || !in.alive(now) {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "notFound", "NOT_FOUND", fmt.Sprintf("The resource 'projects/%s/zones/%s/instances/%s' was not found", project, zone, name))
		return
	}
	reqID := r.URL.Query().Get("requestId")
	if reqID != "" {
		if opKey, ok := s.requests[key(project, zone, reqID)]; ok {
			op := s.operations[opKey]
			s.mu.Unlock()
			writeProto(w, s.opView(op, now))
			return
		}
	}
	op := s.newOperation(r, project, zone, "delete", []string{name})
	if reqID != "" {
		s.requests[key(project, zone, reqID)] = key(project, zone, op.pb.GetName())
	}
	in.deleting = true
	s.mu.Unlock()

	if s.opts.Backing != nil {
		if err := s.opts.Backing.Stop(r.Context(), name); err != nil {
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
		writeError(w, http.StatusBadRequest, "invalid", "INVALID_ARGUMENT", "Invalid value for field 'filter': "+err.Error())
		return
	}
	all := s.matching(project, func(in *instance) bool { return in.zone == zone }, f)
	page, next, err := paginate(all, q.Get("maxResults"), q.Get("pageToken"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", "INVALID_ARGUMENT", err.Error())
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
		writeError(w, http.StatusBadRequest, "invalid", "INVALID_ARGUMENT", "Invalid value for field 'filter': "+err.Error())
		return
	}
	all := s.matching(project, func(*instance) bool { return true }, f)
	page, next, err := paginate(all, q.Get("maxResults"), q.Get("pageToken"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", "INVALID_ARGUMENT", err.Error())
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
		if pb == nil || !f.match(pb) {
			continue
		}
		out = append(out, pb)
	}
	sortInstances(out)
	return out
}

// ---- operations ----

// newOperation records a RUNNING operation; caller holds s.mu.
func (s *Server) newOperation(r *http.Request, project, zone, kind string, names []string) *operation {
	s.seq++
	now := time.Now()
	name := fmt.Sprintf("operation-%d-%d", now.UnixMilli(), s.seq)
	target := ""
	if len(names) == 1 {
		target = selfLink(r, fmt.Sprintf("projects/%s/zones/%s/instances/%s", project, zone, names[0]))
	}
	op := &operation{
		pb: &computepb.Operation{
			Kind:          proto.String("compute#operation"),
			Id:            proto.Uint64(7000000000000000000 + s.seq),
			Name:          proto.String(name),
			Zone:          proto.String(selfLink(r, fmt.Sprintf("projects/%s/zones/%s", project, zone))),
			OperationType: proto.String(kind),
			TargetLink:    proto.String(target),
			SelfLink:      proto.String(selfLink(r, fmt.Sprintf("projects/%s/zones/%s/operations/%s", project, zone, name))),
			InsertTime:    proto.String(now.Format(time.RFC3339Nano)),
			StartTime:     proto.String(now.Format(time.RFC3339Nano)),
			User:          proto.String("cloudsim@example.iam.gserviceaccount.com"),
			Progress:      proto.Int32(0),
		},
		doneAt: now.Add(s.opts.OperationDelay),
	}
	s.operations[key(project, zone, name)] = op
	return op
}

// opView returns the operation as seen at t, turning it DONE when its work
// is finished and its delay has passed.
func (s *Server) opView(op *operation, t time.Time) *computepb.Operation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opViewLocked(op, t)
}

func (s *Server) opViewLocked(op *operation, t time.Time) *computepb.Operation {
	if op.pb.GetStatus() != computepb.Operation_DONE && op.ready && (!t.Before(op.doneAt) || op.pb.Error != nil) {
		op.pb.Status = computepb.Operation_DONE.Enum()
		op.pb.Progress = proto.Int32(100)
		op.pb.EndTime = proto.String(t.Format(time.RFC3339Nano))
	}
	pb := proto.Clone(op.pb).(*computepb.Operation)
	if pb.GetStatus() != computepb.Operation_DONE {
		pb.Status = computepb.Operation_RUNNING.Enum()
	}
	return pb
}

func (s *Server) getOperation(w http.ResponseWriter, r *http.Request, project, zone, name string, wait bool) {
	action := "zoneOperations.get"
	if wait {
		action = "zoneOperations.wait"
	}
	if s.throttled(w, action) {
		return
	}
	deadline := time.NewTimer(s.opts.MaxWait)
	defer deadline.Stop()
	for {
		now := time.Now()
		s.mu.Lock()
		op := s.operations[key(project, zone, name)]
		if op == nil {
			s.mu.Unlock()
			writeError(w, http.StatusNotFound, "notFound", "NOT_FOUND", fmt.Sprintf("The resource 'projects/%s/zones/%s/operations/%s' was not found", project, zone, name))
			return
		}
		pb := s.opViewLocked(op, now)
		changed := s.changed
		s.mu.Unlock()
		if !wait || pb.GetStatus() == computepb.Operation_DONE {
			writeProto(w, pb)
			return
		}
		// Wake on any change, or when the delay of a finished op passes.
		tick := time.NewTimer(max(time.Until(op.doneAt), time.Millisecond))
		select {
		case <-r.Context().Done():
			tick.Stop()
			return
		case <-deadline.C:
			tick.Stop()
			writeProto(w, pb) // GCE returns the op unfinished after its cap
			return
		case <-changed:
		case <-tick.C:
		}
		tick.Stop()
	}
}

// Instances returns a snapshot of every live instance (tests check for
// duplicates and leaks with it), visible yet or not.
func (s *Server) Instances() []*computepb.Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*computepb.Instance, 0, len(s.instances))
	now := time.Now()
	for _, in := range s.instances {
		if in.alive(now) {
			out = append(out, proto.Clone(in.pb).(*computepb.Instance))
		}
	}
	sortInstances(out)
	return out
}
