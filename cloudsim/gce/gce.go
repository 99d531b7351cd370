// Package gce owns the Compute Engine emulator: the REST/JSON paths the
// official Go client (cloud.google.com/go/compute/apiv1, REST transport)
// calls, with GCE's own request and response shapes (computepb via
// protojson) and GCE's own errors.
//
// It is as strict as Compute Engine where provision could go wrong: zones,
// machine types, images, networks and subnetworks come from a catalog
// (catalog.go) and a create that references anything else is refused in
// GCE's words; instances.insert takes a zonal machine type URL while
// bulkInsert takes a bare name; Spot and preemptible scheduling is
// recorded and reported back. Beyond that: requestId idempotency,
// operations that go RUNNING → DONE, instances.stop/start (TERMINATED is
// GCE's stopped state), firewalls, eventual consistency, throttling, quota
// and capacity errors, and request faults (cloudsim.Sim.Serve: latency,
// 500/503 backendError, reset connections; a create whose answer was lost
// is replayed by its requestId, or refused 409 alreadyExists by name). Faults and call counters come from cloudsim.Sim;
// cloudsim.Backing can make each instance a real local host.
package gce

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/provisionhq/provision/cloudsim"
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
	// Project is the only project accepted (besides the public image
	// projects); any project when empty.
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
	operations map[string]*operation // key: project/zone/opname; zone "global" for global ops
	requests   map[string]string     // project/zone/requestId → op key
	firewalls  map[string]map[string]*computepb.Firewall
	seq        uint64
	changed    chan struct{} // closed and replaced on every op change
}

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
		firewalls:  map[string]map[string]*computepb.Firewall{},
		changed:    make(chan struct{}),
	}
}

var _ http.Handler = (*Server)(nil)

// globalScope is the operations key of a project's global operations
// (no zone is named "global").
const globalScope = "global"

// ServeHTTP routes /compute/v1/projects/{p}/... requests, under the Sim's
// request faults (latency, server errors, resets).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.sim.Serve(w, r, serverError, s.serve)
}

// serverError answers as Compute Engine's front end does when it fails:
// 500 or 503 with reason backendError in Google's JSON error shape (the
// 503 carries the front end's status UNAVAILABLE).
func serverError(w http.ResponseWriter, _ *http.Request, status int) {
	if status == http.StatusServiceUnavailable {
		writeError(w, status, "backendError", "UNAVAILABLE", "The service is currently unavailable.")
		return
	}
	writeError(w, status, "backendError", "", "Internal error. Please try again or contact Google Support. (Code: '-5023311046871466231')")
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) < 4 || parts[0] != "compute" || parts[1] != "v1" || parts[2] != "projects" {
		writeError(w, http.StatusNotFound, "notFound", "", fmt.Sprintf("The requested URL %s was not found.", r.URL.Path))
		return
	}
	project, rest := parts[3], parts[4:]
	if !s.projectAllowed(project, rest) {
		notFound("projects/" + project).write(w)
		return
	}
	if len(rest) >= 2 && rest[0] == "zones" {
		if _, ok := zoneRegion(rest[1]); !ok {
			unknownZone(rest[1]).write(w)
			return
		}
	}
	if len(rest) >= 2 && rest[0] == "regions" {
		if _, ok := findRegion(rest[1]); !ok {
			unknownRegion(rest[1]).write(w)
			return
		}
	}
	if !s.route(w, r, project, rest) {
		writeError(w, http.StatusNotFound, "notFound", "", "cloudsim: unsupported call "+r.Method+" "+r.URL.Path)
	}
}

// projectAllowed: Options.Project, or anyone reading a public image project.
func (s *Server) projectAllowed(project string, rest []string) bool {
	if s.opts.Project == "" || project == s.opts.Project {
		return true
	}
	return slices.Contains(imageProjects, project) && len(rest) >= 2 && rest[0] == "global" && rest[1] == "images"
}

// route dispatches one call; false when the path is not emulated.
func (s *Server) route(w http.ResponseWriter, r *http.Request, project string, rest []string) bool {
	get, post, del := r.Method == http.MethodGet, r.Method == http.MethodPost, r.Method == http.MethodDelete
	n := len(rest)
	at := func(i int, v string) bool { return n > i && rest[i] == v }
	switch {
	case n == 2 && at(0, "aggregated") && at(1, "instances") && get:
		s.aggregatedList(w, r, project)

	// zones/...
	case n == 1 && at(0, "zones") && get:
		s.listZones(w, r, project)
	case n == 2 && at(0, "zones") && get:
		s.getZone(w, r, project, rest[1])
	case n >= 3 && at(0, "zones") && at(2, "instances"):
		return s.routeInstances(w, r, project, rest[1], rest[3:])
	case (n == 4 || n == 5) && at(0, "zones") && at(2, "operations"):
		wait := n == 5 && at(4, "wait") && post
		if !wait && !(n == 4 && get) {
			return false
		}
		s.getOperation(w, r, project, rest[1], rest[3], wait)
	case n == 3 && at(0, "zones") && at(2, "machineTypes") && get:
		s.listMachineTypes(w, r, project, rest[1])
	case n == 4 && at(0, "zones") && at(2, "machineTypes") && get:
		s.getMachineType(w, r, project, rest[1], rest[3])

	// regions/...
	case n == 1 && at(0, "regions") && get:
		s.listRegions(w, r, project)
	case n == 2 && at(0, "regions") && get:
		s.getRegion(w, r, project, rest[1])
	case n == 3 && at(0, "regions") && at(2, "subnetworks") && get:
		s.listSubnetworks(w, r, project, rest[1])
	case n == 4 && at(0, "regions") && at(2, "subnetworks") && get:
		s.getSubnetwork(w, r, project, rest[1], rest[3])

	// global/...
	case n == 2 && at(0, "global") && at(1, "images") && get:
		s.listImages(w, r, project)
	case n == 3 && at(0, "global") && at(1, "images") && get:
		s.getImage(w, r, project, rest[2], false)
	case n == 4 && at(0, "global") && at(1, "images") && at(2, "family") && get:
		s.getImage(w, r, project, rest[3], true)
	case n == 2 && at(0, "global") && at(1, "networks") && get:
		s.listNetworks(w, r, project)
	case n == 3 && at(0, "global") && at(1, "networks") && get:
		s.getNetwork(w, r, project, rest[2])
	case n == 2 && at(0, "global") && at(1, "firewalls") && get:
		s.listFirewalls(w, r, project)
	case n == 2 && at(0, "global") && at(1, "firewalls") && post:
		s.insertFirewall(w, r, project)
	case n == 3 && at(0, "global") && at(1, "firewalls") && get:
		s.getFirewall(w, r, project, rest[2])
	case n == 3 && at(0, "global") && at(1, "firewalls") && del:
		s.deleteFirewall(w, r, project, rest[2])
	case n == 3 && at(0, "global") && at(1, "operations") && get:
		s.getOperation(w, r, project, globalScope, rest[2], false)
	case n == 4 && at(0, "global") && at(1, "operations") && at(3, "wait") && post:
		s.getOperation(w, r, project, globalScope, rest[2], true)
	default:
		return false
	}
	return true
}

// routeInstances dispatches zones/{zone}/instances[/{name}[/verb]].
func (s *Server) routeInstances(w http.ResponseWriter, r *http.Request, project, zone string, rest []string) bool {
	m := r.Method
	switch {
	case len(rest) == 0 && m == http.MethodGet:
		s.list(w, r, project, zone)
	case len(rest) == 0 && m == http.MethodPost:
		s.insert(w, r, project, zone)
	case len(rest) == 1 && rest[0] == "bulkInsert" && m == http.MethodPost:
		s.bulkInsert(w, r, project, zone)
	case len(rest) == 1 && m == http.MethodGet:
		s.get(w, r, project, zone, rest[0])
	case len(rest) == 1 && m == http.MethodDelete:
		s.delete(w, r, project, zone, rest[0])
	case len(rest) == 2 && rest[1] == "stop" && m == http.MethodPost:
		s.power(w, r, project, zone, rest[0], false)
	case len(rest) == 2 && rest[1] == "start" && m == http.MethodPost:
		s.power(w, r, project, zone, rest[0], true)
	default:
		return false
	}
	return true
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

// writeError writes Google's JSON error body, which googleapi.CheckResponse
// turns into a *googleapi.Error with Errors[].Reason. Compute's own errors
// carry no "status"; the front end's (rate limits) do.
func writeError(w http.ResponseWriter, code int, reason, status, msg string) {
	e := map[string]any{
		"code":    code,
		"message": msg,
		"errors":  []any{map[string]any{"message": msg, "domain": "global", "reason": reason}},
	}
	if status != "" {
		e["status"] = status
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": e})
}

func writeProto(w http.ResponseWriter, m proto.Message) {
	b, err := protojson.Marshal(m)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "backendError", "", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_, _ = w.Write(b)
}

// readProto decodes a request body; an error is GCE's 400 for a payload it
// cannot parse.
func readProto(r *http.Request, m proto.Message) *refusal {
	var buf strings.Builder
	if _, err := ioCopy(&buf, r); err != nil {
		return &refusal{status: http.StatusBadRequest, reason: "parseError", msg: "Invalid JSON payload received. " + err.Error()}
	}
	// Strict: an unknown field is a client bug the emulator must surface.
	if err := protojson.Unmarshal([]byte(buf.String()), m); err != nil {
		return &refusal{status: http.StatusBadRequest, reason: "invalid", msg: "Invalid JSON payload received. " + err.Error()}
	}
	return nil
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

// ---- operations ----

// replay returns the operation an earlier call with the same requestId
// started, if any; caller holds s.mu.
func (s *Server) replay(project, scope, reqID string) *operation {
	if reqID == "" {
		return nil
	}
	if opKey, ok := s.requests[key(project, scope, reqID)]; ok {
		return s.operations[opKey]
	}
	return nil
}

// newOperation records a RUNNING operation in a zone (or globalScope) on
// target (a resource path, may be empty), remembering its requestId;
// caller holds s.mu.
func (s *Server) newOperation(r *http.Request, project, scope, kind, target string) *operation {
	s.seq++
	now := time.Now()
	name := fmt.Sprintf("operation-%d-%d", now.UnixMilli(), s.seq)
	where := "projects/" + project + "/global"
	if scope != globalScope {
		where = fmt.Sprintf("projects/%s/zones/%s", project, scope)
	}
	op := &operation{
		pb: &computepb.Operation{
			Kind:          proto.String("compute#operation"),
			Id:            proto.Uint64(7000000000000000000 + s.seq),
			Name:          proto.String(name),
			OperationType: proto.String(kind),
			SelfLink:      proto.String(selfLink(r, where+"/operations/"+name)),
			InsertTime:    proto.String(now.Format(time.RFC3339Nano)),
			StartTime:     proto.String(now.Format(time.RFC3339Nano)),
			User:          proto.String("cloudsim@example.iam.gserviceaccount.com"),
			Progress:      proto.Int32(0),
		},
		doneAt: now.Add(s.opts.OperationDelay),
	}
	if scope != globalScope {
		op.pb.Zone = proto.String(selfLink(r, where))
	}
	if target != "" {
		op.pb.TargetLink = proto.String(selfLink(r, target))
	}
	s.operations[key(project, scope, name)] = op
	if reqID := r.URL.Query().Get("requestId"); reqID != "" {
		s.requests[key(project, scope, reqID)] = key(project, scope, name)
	}
	return op
}

// fail finishes op with an error, as GCE reports an accepted call whose
// work failed; caller holds s.mu.
func (op *operation) fail(code, msg string, httpCode int) {
	op.pb.Error = &computepb.Error{Errors: []*computepb.Errors{{Code: proto.String(code), Message: proto.String(msg)}}}
	op.pb.HttpErrorStatusCode = proto.Int32(int32(httpCode))
	op.pb.HttpErrorMessage = proto.String(strings.ToUpper(http.StatusText(httpCode)))
	op.ready = true
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

func (s *Server) getOperation(w http.ResponseWriter, r *http.Request, project, scope, name string, wait bool) {
	action := "zoneOperations.get"
	if scope == globalScope {
		action = "globalOperations.get"
	}
	if wait {
		action = strings.TrimSuffix(action, ".get") + ".wait"
	}
	if s.throttled(w, action) {
		return
	}
	deadline := time.NewTimer(s.opts.MaxWait)
	defer deadline.Stop()
	for {
		now := time.Now()
		s.mu.Lock()
		op := s.operations[key(project, scope, name)]
		if op == nil {
			s.mu.Unlock()
			where := "projects/" + project + "/global"
			if scope != globalScope {
				where = fmt.Sprintf("projects/%s/zones/%s", project, scope)
			}
			notFound(where + "/operations/" + name).write(w)
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
