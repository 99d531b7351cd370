// Package ec2 owns cloudsim's Amazon EC2 emulator: an http.Handler that
// speaks the EC2 Query API (form-encoded POST, XML in the 2016-11-15
// namespace) well enough for aws-sdk-go-v2 to run unchanged against it. It
// models RunInstances (with ClientToken idempotency), DescribeInstances
// (filters, pagination), TerminateInstances, CreateTags and DescribeImages,
// and the faults of cloudsim.Faults: pending → running after a delay,
// fresh IDs invisible for a while, throttling, quota and capacity errors.
// Signatures are accepted without being checked.
package ec2

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/provisionhq/provision/cloudsim"
)

// Options configure a Server.
type Options struct {
	// Region is reported in availability zones; "us-east-1" when empty.
	Region string
	// Backing, when set, makes every instance a real local host: Start on
	// launch (its address becomes the private IP), Stop on terminate.
	Backing cloudsim.Backing
	Logger  *slog.Logger
}

// How long a terminated instance stays visible, and how long shutting-down
// lasts, as on EC2 (where terminated instances linger about an hour).
const (
	terminatedVisibleFor = time.Hour
	shuttingDownFor      = 500 * time.Millisecond
	maxUserData          = 16384
	ownerID              = "123456789012"
	// backingParallelism bounds concurrent Backing.Start/Stop calls.
	backingParallelism = 8
)

// Server is the EC2 emulator. It is safe for concurrent use.
type Server struct {
	sim  *cloudsim.Sim
	opts Options
	log  *slog.Logger
	now  func() time.Time

	mu        sync.Mutex
	instances map[string]*instance // by instance ID
	order     []string             // instance IDs in launch order
	tokens    map[string]*launch   // by ClientToken
	nextIP    int
}

type instance struct {
	id, reservationID, imageID, instanceType string
	subnetID, keyName, clientToken           string
	groups                                   []string
	launchIndex                              int
	tags                                     map[string]string
	privateIP                                string
	launchedAt, visibleAt                    time.Time
	terminatedAt                             time.Time // zero while alive
}

type launch struct {
	reservationID string
	fingerprint   string
	instanceIDs   []string
}

// New returns an emulator using sim's faults and counters.
func New(sim *cloudsim.Sim, opts Options) *Server {
	opts.Region = cmp.Or(opts.Region, "us-east-1")
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{
		sim: sim, opts: opts, log: log.With("cloudsim", "ec2"), now: time.Now,
		instances: map[string]*instance{}, tokens: map[string]*launch{},
	}
}

// apiError is an EC2 error response.
type apiError struct {
	status        int
	code, message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errClient(code, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, message: fmt.Sprintf(format, args...)}
}

// ServeHTTP handles one Query API request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := newID("")
	if err := r.ParseForm(); err != nil {
		s.writeError(w, reqID, errClient("MalformedQueryString", "%v", err))
		return
	}
	action := r.Form.Get("Action")
	if action == "" {
		s.writeError(w, reqID, errClient("MissingAction", "the request must contain the parameter Action"))
		return
	}
	if s.sim.Call(action) {
		s.writeError(w, reqID, &apiError{status: http.StatusServiceUnavailable, code: "RequestLimitExceeded", message: "Request limit exceeded."})
		return
	}
	var (
		resp any
		err  *apiError
	)
	switch action {
	case "RunInstances":
		resp, err = s.runInstances(r.Context(), r.Form)
	case "DescribeInstances":
		resp, err = s.describeInstances(r.Form)
	case "TerminateInstances":
		resp, err = s.terminateInstances(r.Context(), r.Form)
	case "CreateTags":
		resp, err = s.createTags(r.Form)
	case "DescribeImages":
		resp, err = s.describeImages(r.Form)
	default:
		err = errClient("InvalidAction", "The action %s is not valid for this web service.", action)
	}
	if err != nil {
		s.log.DebugContext(r.Context(), "request failed", "action", action, "code", err.code)
		s.writeError(w, reqID, err)
		return
	}
	setRequestID(resp, reqID)
	body, merr := xml.Marshal(resp)
	if merr != nil {
		s.writeError(w, reqID, &apiError{status: http.StatusInternalServerError, code: "InternalError", message: merr.Error()})
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(body)
}

func setRequestID(resp any, id string) {
	switch r := resp.(type) {
	case *xmlRunInstancesResponse:
		r.RequestID, r.Xmlns = id, xmlns
	case *xmlDescribeInstancesResponse:
		r.RequestID, r.Xmlns = id, xmlns
	case *xmlTerminateInstancesResponse:
		r.RequestID, r.Xmlns = id, xmlns
	case *xmlCreateTagsResponse:
		r.RequestID, r.Xmlns = id, xmlns
	case *xmlDescribeImagesResponse:
		r.RequestID, r.Xmlns = id, xmlns
	}
}

func (s *Server) writeError(w http.ResponseWriter, reqID string, e *apiError) {
	body, _ := xml.Marshal(xmlErrorResponse{Errors: []xmlError{{Code: e.code, Message: e.message}}, RequestID: reqID})
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(e.status)
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(body)
}

var (
	amiRE          = regexp.MustCompile(`^ami-[0-9a-f]{8,17}$`)
	instanceTypeRE = regexp.MustCompile(`^[a-z][a-z0-9-]*\.[a-z0-9]+$`)
	instanceIDRE   = regexp.MustCompile(`^i-[0-9a-f]{8,17}$`)
)

func (s *Server) runInstances(ctx context.Context, f url.Values) (any, *apiError) {
	image, itype := f.Get("ImageId"), f.Get("InstanceType")
	if image == "" {
		return nil, errClient("MissingParameter", "The request must contain the parameter ImageId")
	}
	if !amiRE.MatchString(image) {
		return nil, errClient("InvalidAMIID.Malformed", "Invalid id: %q (expecting \"ami-...\")", image)
	}
	itype = cmp.Or(itype, "m1.small")
	if !instanceTypeRE.MatchString(itype) {
		return nil, errClient("InvalidParameterValue", "Invalid value '%s' for InstanceType.", itype)
	}
	minCount, err1 := strconv.Atoi(f.Get("MinCount"))
	maxCount, err2 := strconv.Atoi(f.Get("MaxCount"))
	if err1 != nil || err2 != nil || minCount < 1 || maxCount < minCount {
		return nil, errClient("InvalidParameterValue", "MinCount (%q) and MaxCount (%q) must be positive with MinCount <= MaxCount", f.Get("MinCount"), f.Get("MaxCount"))
	}
	userData, err := base64.StdEncoding.DecodeString(f.Get("UserData"))
	if err != nil {
		return nil, errClient("InvalidParameterValue", "Invalid BASE64 encoding of user data.")
	}
	if len(userData) > maxUserData {
		return nil, errClient("InvalidParameterValue", "User data is limited to %d bytes", maxUserData)
	}
	groups := indexed(f, "SecurityGroupId")
	tags := map[string]string{}
	for _, ts := range indexedGroups(f, "TagSpecification") {
		if rt := ts.Get("ResourceType"); rt != "instance" {
			continue // volumes, network interfaces: not modelled
		}
		for _, t := range indexedGroups(ts, "Tag") {
			tags[t.Get("Key")] = t.Get("Value")
		}
	}
	if len(tags) > 50 {
		return nil, errClient("TagLimitExceeded", "The maximum number of tags per resource is 50")
	}
	token := f.Get("ClientToken")
	if len(token) > 64 {
		return nil, errClient("InvalidParameterValue", "ClientToken must be at most 64 characters")
	}
	fp := fingerprint(image, itype, strconv.Itoa(minCount), strconv.Itoa(maxCount), f.Get("SubnetId"), f.Get("KeyName"), strings.Join(groups, ","), string(userData))

	// The lock is held across the backing calls so a concurrent retry with
	// the same token waits for this launch instead of making a second one.
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if token != "" {
		if l, ok := s.tokens[token]; ok {
			if l.fingerprint != fp {
				return nil, errClient("IdempotentParameterMismatch", "Arguments on this idempotent request are inconsistent with arguments used in previous request(s).")
			}
			return &xmlRunInstancesResponse{xmlReservation: s.reservationLocked(l.reservationID, l.instanceIDs, now)}, nil
		}
	}
	faults := s.sim.Faults()
	if faults.NoCapacity {
		return nil, &apiError{status: http.StatusInternalServerError, code: "InsufficientInstanceCapacity",
			message: fmt.Sprintf("We currently do not have sufficient %s capacity in the Availability Zone you requested (%sa).", itype, s.opts.Region)}
	}
	if q := faults.InstanceQuota; q > 0 {
		alive := 0
		for _, in := range s.instances {
			if in.terminatedAt.IsZero() {
				alive++
			}
		}
		if alive+minCount > q {
			return nil, errClient("InstanceLimitExceeded", "You have requested more instances (%d) than your current instance limit of %d allows for the specified instance type. Please visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit.", alive+minCount, q)
		}
	}
	resID := newID("r-")
	insts := make([]*instance, maxCount)
	for i := range insts {
		insts[i] = &instance{
			id: newID("i-"), reservationID: resID, imageID: image, instanceType: itype,
			subnetID: f.Get("SubnetId"), keyName: f.Get("KeyName"), clientToken: token, groups: groups,
			launchIndex: i, tags: clone(tags), privateIP: s.allocIPLocked(),
			launchedAt: now, visibleAt: now.Add(faults.InvisibleFor),
		}
	}
	if s.opts.Backing != nil {
		if err := s.startBackingLocked(ctx, insts, userData); err != nil {
			return nil, err
		}
	}
	ids := make([]string, len(insts))
	for i, in := range insts {
		s.instances[in.id] = in
		s.order = append(s.order, in.id)
		ids[i] = in.id
	}
	if token != "" {
		s.tokens[token] = &launch{reservationID: resID, fingerprint: fp, instanceIDs: ids}
	}
	s.log.InfoContext(ctx, "run instances", "reservation", resID, "count", len(ids), "type", itype)
	// The response reflects the launch itself, visible or not.
	return &xmlRunInstancesResponse{xmlReservation: s.reservationLocked(resID, ids, now)}, nil
}

// startBackingLocked starts a local host per instance with the user-data
// cloud-init would apply on it; on failure it stops those it started.
func (s *Server) startBackingLocked(ctx context.Context, insts []*instance, userData []byte) *apiError {
	type result struct {
		addr string
		err  error
	}
	results := make([]result, len(insts))
	var wg sync.WaitGroup
	slots := make(chan struct{}, backingParallelism)
	for i, in := range insts {
		boot := cloudsim.Boot{UserData: userData, LaunchIndex: in.launchIndex}
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			results[i].addr, results[i].err = s.opts.Backing.Start(ctx, in.id, boot)
		}()
	}
	wg.Wait()
	var failed error
	for i, r := range results {
		if r.err != nil && failed == nil {
			failed = r.err
		}
		if r.err == nil {
			insts[i].privateIP = r.addr
		}
	}
	if failed == nil {
		return nil
	}
	for i, r := range results {
		if r.err == nil && r.addr != "" {
			if err := s.opts.Backing.Stop(ctx, insts[i].id); err != nil {
				s.log.WarnContext(ctx, "stop backing host after a failed launch", "instance", insts[i].id, "err", err)
			}
		}
	}
	return &apiError{status: http.StatusInternalServerError, code: "InternalError", message: "backing host: " + failed.Error()}
}

func (s *Server) allocIPLocked() string {
	s.nextIP++
	n := s.nextIP
	return fmt.Sprintf("10.0.%d.%d", (n/250)%256, n%250+4)
}

func (s *Server) reservationLocked(resID string, ids []string, now time.Time) xmlReservation {
	r := xmlReservation{ReservationID: resID, OwnerID: ownerID}
	for _, id := range ids {
		if in, ok := s.instances[id]; ok {
			r.Instances = append(r.Instances, s.render(in, now))
		}
	}
	return r
}

// state is an instance's lifecycle state at now.
func (s *Server) state(in *instance, now time.Time) (int, string) {
	switch {
	case !in.terminatedAt.IsZero() && now.Sub(in.terminatedAt) >= shuttingDownFor:
		return 48, "terminated"
	case !in.terminatedAt.IsZero():
		return 32, "shutting-down"
	case now.Sub(in.launchedAt) < s.sim.Faults().PendingFor:
		return 0, "pending"
	default:
		return 16, "running"
	}
}

func (s *Server) render(in *instance, now time.Time) xmlInstance {
	code, name := s.state(in, now)
	x := xmlInstance{
		InstanceID: in.id, ImageID: in.imageID, State: xmlState{Code: code, Name: name},
		KeyName: in.keyName, AmiLaunchIndex: in.launchIndex, InstanceType: in.instanceType,
		LaunchTime: in.launchedAt.UTC().Format(time.RFC3339), AvailabilityZone: s.opts.Region + "a",
		SubnetID: in.subnetID, ClientToken: in.clientToken,
	}
	if name != "terminated" {
		x.PrivateIP = in.privateIP
		x.PrivateDNSName = "ip-" + strings.ReplaceAll(in.privateIP, ".", "-") + ".ec2.internal"
	}
	if in.subnetID != "" {
		x.VpcID = "vpc-0123456789abcdef0"
	}
	if !in.terminatedAt.IsZero() {
		x.StateReason = &xmlStateReason{Code: "Client.UserInitiatedShutdown", Message: "Client.UserInitiatedShutdown: User initiated shutdown"}
	}
	for _, g := range in.groups {
		x.Groups = append(x.Groups, xmlGroup{GroupID: g})
	}
	for _, k := range slices.Sorted(maps.Keys(in.tags)) {
		x.Tags = append(x.Tags, xmlTag{Key: k, Value: in.tags[k]})
	}
	return x
}

func (s *Server) describeInstances(f url.Values) (any, *apiError) {
	ids := indexed(f, "InstanceId")
	maxResults := 0
	if v := f.Get("MaxResults"); v != "" {
		if len(ids) > 0 {
			return nil, errClient("InvalidParameterCombination", "The parameter instancesSet cannot be used with the parameter maxResults")
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 5 || n > 1000 {
			return nil, errClient("InvalidParameterValue", "Value ( %s ) for parameter maxResults is invalid. Expecting a value between 5 and 1000.", v)
		}
		maxResults = n
	}
	type filter struct {
		name   string
		values []string
	}
	var filters []filter
	for _, g := range indexedGroups(f, "Filter") {
		flt := filter{name: g.Get("Name"), values: indexed(g, "Value")}
		switch {
		case flt.name == "instance-state-name", flt.name == "instance-id", flt.name == "reservation-id",
			flt.name == "tag-key", flt.name == "client-token", flt.name == "instance-type",
			strings.HasPrefix(flt.name, "tag:"):
		default:
			return nil, errClient("InvalidParameterValue", "The filter '%s' is invalid", flt.name)
		}
		filters = append(filters, flt)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.purgeLocked(now)
	var match []*instance
	if len(ids) > 0 {
		for _, id := range ids {
			if !instanceIDRE.MatchString(id) {
				return nil, errClient("InvalidInstanceID.Malformed", "Invalid id: %q", id)
			}
			in, ok := s.instances[id]
			if !ok || now.Before(in.visibleAt) {
				return nil, errClient("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
			}
			match = append(match, in)
		}
	} else {
		for _, id := range s.order {
			if in := s.instances[id]; !now.Before(in.visibleAt) {
				match = append(match, in)
			}
		}
	}
	match = slices.DeleteFunc(match, func(in *instance) bool {
		_, state := s.state(in, now)
		for _, flt := range filters {
			var have []string
			switch {
			case flt.name == "instance-state-name":
				have = []string{state}
			case flt.name == "instance-id":
				have = []string{in.id}
			case flt.name == "reservation-id":
				have = []string{in.reservationID}
			case flt.name == "client-token":
				have = []string{in.clientToken}
			case flt.name == "instance-type":
				have = []string{in.instanceType}
			case flt.name == "tag-key":
				have = slices.Collect(maps.Keys(in.tags))
			default:
				v, ok := in.tags[strings.TrimPrefix(flt.name, "tag:")]
				if !ok {
					return true
				}
				have = []string{v}
			}
			if !anyMatch(flt.values, have) {
				return true
			}
		}
		return false
	})
	start := 0
	if tok := f.Get("NextToken"); tok != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(tok, "page-"))
		if err != nil || n < 0 || n > len(match) {
			return nil, errClient("InvalidParameterValue", "Invalid NextToken %q", tok)
		}
		start = n
	}
	end := len(match)
	resp := &xmlDescribeInstancesResponse{}
	if maxResults > 0 && start+maxResults < end {
		end = start + maxResults
		resp.NextToken = "page-" + strconv.Itoa(end)
	}
	// Group consecutive instances of a reservation, as EC2 does.
	for _, in := range match[start:end] {
		n := len(resp.Reservations)
		if n == 0 || resp.Reservations[n-1].ReservationID != in.reservationID {
			resp.Reservations = append(resp.Reservations, xmlReservation{ReservationID: in.reservationID, OwnerID: ownerID})
			n++
		}
		resp.Reservations[n-1].Instances = append(resp.Reservations[n-1].Instances, s.render(in, now))
	}
	return resp, nil
}

// purgeLocked forgets instances terminated long ago (their tokens stay).
func (s *Server) purgeLocked(now time.Time) {
	s.order = slices.DeleteFunc(s.order, func(id string) bool {
		in := s.instances[id]
		if !in.terminatedAt.IsZero() && now.Sub(in.terminatedAt) > terminatedVisibleFor {
			delete(s.instances, id)
			return true
		}
		return false
	})
}

func (s *Server) terminateInstances(ctx context.Context, f url.Values) (any, *apiError) {
	ids := indexed(f, "InstanceId")
	if len(ids) == 0 {
		return nil, errClient("MissingParameter", "The request must contain the parameter InstanceId")
	}
	s.mu.Lock()
	now := s.now()
	var targets []*instance
	for _, id := range ids {
		if !instanceIDRE.MatchString(id) {
			s.mu.Unlock()
			return nil, errClient("InvalidInstanceID.Malformed", "Invalid id: %q", id)
		}
		in, ok := s.instances[id]
		if !ok || now.Before(in.visibleAt) {
			s.mu.Unlock()
			return nil, errClient("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
		}
		targets = append(targets, in)
	}
	resp := &xmlTerminateInstancesResponse{}
	var stop []string
	for _, in := range targets {
		code, name := s.state(in, now)
		if in.terminatedAt.IsZero() {
			in.terminatedAt = now
			stop = append(stop, in.id)
		}
		c2, n2 := s.state(in, now)
		resp.Instances = append(resp.Instances, xmlStateChange{InstanceID: in.id, PreviousState: xmlState{code, name}, CurrentState: xmlState{c2, n2}})
	}
	s.mu.Unlock()
	if s.opts.Backing != nil && len(stop) > 0 {
		var wg sync.WaitGroup
		slots := make(chan struct{}, backingParallelism)
		for _, id := range stop {
			wg.Add(1)
			go func() {
				defer wg.Done()
				slots <- struct{}{}
				defer func() { <-slots }()
				if err := s.opts.Backing.Stop(ctx, id); err != nil {
					s.log.WarnContext(ctx, "stop backing host", "instance", id, "err", err)
				}
			}()
		}
		wg.Wait()
	}
	return resp, nil
}

func (s *Server) createTags(f url.Values) (any, *apiError) {
	ids := indexed(f, "ResourceId")
	tags := indexedGroups(f, "Tag")
	if len(ids) == 0 || len(tags) == 0 {
		return nil, errClient("MissingParameter", "The request must contain the parameters ResourceId and Tag")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for _, id := range ids {
		in, ok := s.instances[id]
		if !ok || now.Before(in.visibleAt) {
			return nil, errClient("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
		}
		if n := len(in.tags) + len(tags); n > 50 {
			return nil, errClient("TagLimitExceeded", "The maximum number of tags per resource is 50")
		}
	}
	for _, id := range ids {
		for _, t := range tags {
			s.instances[id].tags[t.Get("Key")] = t.Get("Value")
		}
	}
	return &xmlCreateTagsResponse{Return: true}, nil
}

// describeImages knows every well-formed AMI ID as an EBS-backed image
// whose root device is /dev/xvda.
func (s *Server) describeImages(f url.Values) (any, *apiError) {
	resp := &xmlDescribeImagesResponse{}
	for _, id := range indexed(f, "ImageId") {
		if !amiRE.MatchString(id) {
			return nil, errClient("InvalidAMIID.Malformed", "Invalid id: %q", id)
		}
		resp.Images = append(resp.Images, xmlImage{ImageID: id, State: "available", RootDeviceName: "/dev/xvda", RootDeviceType: "ebs"})
	}
	return resp, nil
}

// indexed returns the values of prefix.1, prefix.2, ... in order.
func indexed(f url.Values, prefix string) []string {
	var out []string
	for i := 1; ; i++ {
		v, ok := f[prefix+"."+strconv.Itoa(i)]
		if !ok || len(v) == 0 {
			return out
		}
		out = append(out, v[0])
	}
}

// indexedGroups returns the sub-parameters of prefix.1.*, prefix.2.*, ...
// as their own value sets (prefix.N.Name → Name).
func indexedGroups(f url.Values, prefix string) []url.Values {
	var out []url.Values
	for i := 1; ; i++ {
		p := prefix + "." + strconv.Itoa(i) + "."
		g := url.Values{}
		for k, v := range f {
			if rest, ok := strings.CutPrefix(k, p); ok {
				g[rest] = v
			}
		}
		if len(g) == 0 {
			return out
		}
		out = append(out, g)
	}
}

// anyMatch reports whether any have value matches any pattern (EC2
// filters accept * and ? wildcards).
func anyMatch(patterns, have []string) bool {
	for _, p := range patterns {
		for _, h := range have {
			if ok, _ := path.Match(p, h); ok || p == h {
				return true
			}
		}
	}
	return false
}

func fingerprint(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func newID(prefix string) string {
	b := make([]byte, 9)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)[:17]
}

func clone(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Count returns how many instances are alive (not shutting down or
// terminated), visible or not: what tests assert "no duplicates" with.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, in := range s.instances {
		if in.terminatedAt.IsZero() {
			n++
		}
	}
	return n
}
