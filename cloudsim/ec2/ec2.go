// Package ec2 owns cloudsim's Amazon EC2 emulator: an http.Handler that
// speaks the EC2 Query API (form-encoded POST, XML in the 2016-11-15
// namespace) well enough for aws-sdk-go-v2 and the AWS CLI to run
// unchanged against it.
//
// It is as strict as EC2 about what a launch names: images come from a
// small catalog of real-looking AMIs (DescribeImages), instance types from
// EC2's own names, zones from the region's, and subnets, security groups
// and key pairs must exist (each region has a default VPC with a default
// subnet per zone and a default security group, as a new account has). An
// unknown reference gets EC2's error code and message. The key pair's
// public key goes to the guest (cloudsim.Boot.PublicKeys) for the image's
// default user.
//
// Instances go pending → running after Faults.PendingFor (and once their
// backing host is up), running → stopping → stopped → pending → running
// through StopInstances/StartInstances (cloudsim.Power), and shutting-down
// → terminated. Fresh IDs are invisible for Faults.InvisibleFor, calls are
// throttled at Faults.ThrottleRate (and, with Options.Limits, by
// EC2's published token buckets), and quota, capacity and spot capacity
// faults answer as EC2 does. Request faults (cloudsim.Sim.Serve) answer
// 500 InternalError or 503 Unavailable in EC2's XML shape or reset the
// connection; RunInstances honours ClientToken, so a client that retries
// a launch whose answer was lost gets the same reservation back. The region of a request is the one its
// signature names (SigV4 credential scope); signatures are not checked.
package ec2

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
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
	// Region is the region of requests whose signature names none (or one
	// EC2 does not have); "us-east-1" when empty.
	Region string
	// Backing, when set, makes every instance a real local host: Start on
	// launch (its address becomes the instance's private and public IP),
	// Stop on terminate, and PowerOff/PowerOn on stop/start when it
	// implements cloudsim.Power.
	Backing cloudsim.Backing
	// Limits, when set, throttles calls as EC2's published rate limits
	// do (ratelimit.EC2); see Limiter.
	Limits Limiter
	Logger *slog.Logger
}

// How long a terminated instance stays visible, how long shutting-down and
// stopping last, as on EC2 (where terminated instances linger about an
// hour).
const (
	terminatedVisibleFor = time.Hour
	shuttingDownFor      = 500 * time.Millisecond
	stoppingFor          = 500 * time.Millisecond
	maxUserData          = 16384
	ownerID              = "123456789012"
	// backingParallelism bounds concurrent Backing.Start/Stop calls of one
	// request.
	backingParallelism = 8
	// backingTimeout bounds a backing call that outlives its request
	// (power on/off run after the response, as EC2's do).
	backingTimeout = 5 * time.Minute
)

// Server is the EC2 emulator. It is safe for concurrent use. One lock
// guards every record; it is never held across a backing call.
type Server struct {
	sim  *cloudsim.Sim
	opts Options
	log  *slog.Logger
	now  func() time.Time

	mu        sync.Mutex
	seq       int64                // orders instances (pagination cursor)
	instances map[string]*instance // by instance ID
	tokens    map[string]*launch   // by region + ClientToken
	nets      map[string]*network  // by region, made on first use
	groups    map[string]*secGroup // by group ID
	keys      map[string]*keyPair  // by key pair ID
	nextIP    int
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
		instances: map[string]*instance{}, tokens: map[string]*launch{}, nets: map[string]*network{},
		groups: map[string]*secGroup{}, keys: map[string]*keyPair{},
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

// request is one decoded Query API call.
type request struct {
	ctx    context.Context
	form   url.Values
	region region
}

type handler func(*Server, *request) (response, *apiError)

// response is an action's result document; ServeHTTP names its root
// element <Action>Response and fills in the request ID.
type response interface{ setRequestID(string) }

type meta struct {
	RequestID string `xml:"requestId"`
}

func (m *meta) setRequestID(id string) { m.RequestID = id }

var actions = map[string]handler{
	"RunInstances":                  (*Server).runInstances,
	"DescribeInstances":             (*Server).describeInstances,
	"TerminateInstances":            (*Server).terminateInstances,
	"StopInstances":                 (*Server).stopInstances,
	"StartInstances":                (*Server).startInstances,
	"RebootInstances":               (*Server).rebootInstances,
	"CreateTags":                    (*Server).createTags,
	"DeleteTags":                    (*Server).deleteTags,
	"DescribeImages":                (*Server).describeImages,
	"DescribeRegions":               (*Server).describeRegions,
	"DescribeAvailabilityZones":     (*Server).describeAvailabilityZones,
	"DescribeAccountAttributes":     (*Server).describeAccountAttributes,
	"DescribeVpcs":                  (*Server).describeVpcs,
	"DescribeSubnets":               (*Server).describeSubnets,
	"CreateSecurityGroup":           (*Server).createSecurityGroup,
	"DescribeSecurityGroups":        (*Server).describeSecurityGroups,
	"DeleteSecurityGroup":           (*Server).deleteSecurityGroup,
	"AuthorizeSecurityGroupIngress": (*Server).authorizeIngress,
	"AuthorizeSecurityGroupEgress":  (*Server).authorizeEgress,
	"ImportKeyPair":                 (*Server).importKeyPair,
	"CreateKeyPair":                 (*Server).createKeyPair,
	"DescribeKeyPairs":              (*Server).describeKeyPairs,
	"DeleteKeyPair":                 (*Server).deleteKeyPair,
}

// ServeHTTP handles one Query API request under the Sim's request faults
// (latency, server errors, resets).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.sim.Serve(w, r, s.serverError, s.serve)
}

// serverError answers as EC2's front end does when it fails: 500
// InternalError or 503 Unavailable, in EC2's XML error shape.
func (s *Server) serverError(w http.ResponseWriter, _ *http.Request, status int) {
	e := &apiError{status: status, code: "InternalError", message: "An internal error has occurred. Retry your request, but if the problem persists, contact us with details by posting a message on the AWS forums."}
	if status == http.StatusServiceUnavailable {
		e.code, e.message = "Unavailable", "The server is overloaded and can't handle the request."
	}
	s.writeError(w, newRequestID(), e)
}

// serve handles one Query API request.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	reqID := newRequestID()
	if err := r.ParseForm(); err != nil {
		s.writeError(w, reqID, errClient("MalformedQueryString", "%v", err))
		return
	}
	action := r.Form.Get("Action")
	if action == "" {
		s.writeError(w, reqID, errClient("MissingAction", "The request must contain the parameter Action"))
		return
	}
	if s.sim.Call(action) || s.overLimit(action, r.Form) {
		s.writeError(w, reqID, errRequestLimit())
		return
	}
	h, ok := actions[action]
	if !ok {
		s.writeError(w, reqID, errClient("InvalidAction", "The action %s is not valid for this web service.", action))
		return
	}
	resp, err := h(s, &request{ctx: r.Context(), form: r.Form, region: s.regionOf(r)})
	if err != nil {
		s.log.DebugContext(r.Context(), "request failed", "action", action, "code", err.code)
		s.writeError(w, reqID, err)
		return
	}
	resp.setRequestID(reqID)
	var body strings.Builder
	body.WriteString(xml.Header)
	start := xml.StartElement{Name: xml.Name{Local: action + "Response"}, Attr: []xml.Attr{{Name: xml.Name{Local: "xmlns"}, Value: xmlns}}}
	if merr := xml.NewEncoder(&body).EncodeElement(resp, start); merr != nil {
		s.writeError(w, reqID, &apiError{status: http.StatusInternalServerError, code: "InternalError", message: merr.Error()})
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	_, _ = w.Write([]byte(body.String()))
}

// credentialScope finds the region in a SigV4 Authorization header:
// Credential=AKID/20240101/us-east-1/ec2/aws4_request.
var credentialScope = regexp.MustCompile(`Credential=[^/,\s]+/\d{8}/([a-z0-9-]+)/`)

// regionOf is the region a request is for: the one its signature was made
// for, or Options.Region.
func (s *Server) regionOf(r *http.Request) region {
	name := s.opts.Region
	if m := credentialScope.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
		if _, ok := findRegion(m[1]); ok {
			name = m[1]
		}
	}
	if reg, ok := findRegion(name); ok {
		return reg
	}
	// A region cloudsim does not list (Options.Region): three zones.
	return region{name: name, zones: []string{"a", "b", "c"}, zoneIDs: name}
}

func (s *Server) writeError(w http.ResponseWriter, reqID string, e *apiError) {
	body, _ := xml.Marshal(xmlErrorResponse{Errors: []xmlError{{Code: e.code, Message: e.message}}, RequestID: reqID})
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(e.status)
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(body)
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

// tagSpecs returns the tags a TagSpecification.N list gives resourceType.
func tagSpecs(f url.Values, resourceType string) (map[string]string, *apiError) {
	tags := map[string]string{}
	for _, ts := range indexedGroups(f, "TagSpecification") {
		if ts.Get("ResourceType") != resourceType {
			continue // volumes, network interfaces: not modelled
		}
		for _, t := range indexedGroups(ts, "Tag") {
			tags[t.Get("Key")] = t.Get("Value")
		}
	}
	if len(tags) > 50 {
		return nil, errClient("TagLimitExceeded", "The maximum number of tags per resource is 50")
	}
	return tags, nil
}

func newID(prefix string) string {
	b := make([]byte, 9)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)[:17]
}

// newRequestID is a request ID in EC2's (UUID) form.
func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func clone(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Inventory returns the instances alive (not shutting down or
// terminated), visible or not, and how many were ever launched.
func (s *Server) Inventory() cloudsim.Inventory {
	s.mu.Lock()
	defer s.mu.Unlock()
	inv := cloudsim.Inventory{Alive: []string{}, Launched: len(s.instances)}
	for id, in := range s.instances {
		if !in.terminating() {
			inv.Alive = append(inv.Alive, id)
		}
	}
	slices.Sort(inv.Alive)
	return inv
}

// Count returns how many instances are alive (not shutting down or
// terminated), visible or not: what tests assert "no duplicates" with.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, in := range s.instances {
		if !in.terminating() {
			n++
		}
	}
	return n
}
