// Package openstack owns the OpenStack emulator: Keystone v3 (version
// discovery, password and application-credential tokens in the Default
// domain, a service catalog pointing back at the same server), Nova
// (version discovery and microversions 2.1..2.38, servers, flavors,
// os-keypairs, os-stop/os-start), Glance images and Neutron (networks,
// subnets, ports, security groups and rules, floating IPs), all in their
// real JSON shapes and with their real error bodies, so gophercloud/v2 and
// the openstack CLI (keystoneauth1, openstacksdk, novaclient) run against
// it unchanged with only OS_AUTH_URL set.
//
// It models what makes Nova hard: servers that stay BUILD before ACTIVE,
// reads that do not see a new server for a while (eventual consistency),
// throttling (429 or 413 overLimit with Retry-After), the instance quota
// (403 "Quota exceeded for instances") and capacity (a server that goes to
// ERROR with the fault "No valid host was found"), and request faults
// (cloudsim.Sim.Serve: latency, 500/503 in each service's error shape,
// reset connections). Like real Nova it has no idempotency token and no
// server-side metadata filter: clients find their servers by listing
// (paginated with limit/marker, optionally narrowed with the name regex)
// and reading metadata. A multi-create (min_count/max_count)
// names its servers "<name>-1".."<name>-N" and gives each its launch index;
// a backing host gets the user_data cloud-init would apply for that index
// (cloudsim/userdata, in the backing), and user_data over 65535 base64 bytes is a
// 400, as in Nova. A server's key pair goes to its backing host as
// Boot.PublicKeys for the image's default user (Image.User: "debian" for
// debian-12, as Debian's OpenStack images name it), so a server created
// with no user_data is still reachable; its host key is the guest's own.
//
// Faults and call counters come from cloudsim.Sim (actions "tokens.create",
// "servers.create", "servers.list", "servers.get", "servers.delete",
// "servers.action", "flavors.list", "flavors.get", "images.list",
// "images.get", "keypairs.*", "networks.list", "ports.list",
// "security_groups.*", "security_group_rules.*", "floatingips.*");
// cloudsim.Backing can make each server a real local host, and
// cloudsim.Power lets os-stop/os-start power it off and on.
package openstack

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/provisionhq/provision/cloudsim"
)

// Options configure a Server.
type Options struct {
	// PublicURL is the base URL put in the catalog; when empty it is built
	// from each request's Host ("http://host").
	PublicURL string
	// Region names the catalog's region; "RegionOne" when empty.
	Region string
	// Password, when set, is the only password (and application
	// credential secret) accepted; any non-empty one otherwise.
	Password string
	// Backing makes servers real local hosts; nil keeps them records with
	// made-up 192.168.x.y addresses.
	Backing cloudsim.Backing
	Logger  *slog.Logger
	// MaxLimit is Nova's max_limit: the largest page a list returns;
	// 1000 when zero.
	MaxLimit int
	// RetryAfter is the Retry-After a throttled call carries; 1s when zero.
	RetryAfter time.Duration
	// DeleteFor is how long a deleted server stays listed (task_state
	// "deleting") before it is gone; 50ms when zero.
	DeleteFor time.Duration
}

// maxUserData is Nova's limit on user_data, counted base64-encoded.
const maxUserData = 65535

// Seeded IDs, stable so tests can refer to them.
const (
	FlavorSmall    = "2"
	FlavorMedium   = "3"
	FlavorLarge    = "4"
	ImageDebian12  = "6f1b2c4e-7d0a-4c52-9a49-1c0f1d2e3a12"
	NetworkPrivate = "a1f0c3d2-5b6e-4f70-8a91-b2c3d4e5f607"
	// NetworkPublic is the external network floating IPs come from.
	NetworkPublic = "b2e1d4c3-6a7f-4081-9b02-c3d4e5f60718"
)

type flavor struct {
	ID, Name   string
	VCPUs, RAM int
	Disk       int
}

// image is a Glance image; User is the login its cloud-init gives the
// key pair, as each distribution's cloud images do ("debian" on Debian's
// OpenStack images, "ubuntu" on Ubuntu's).
type image struct{ ID, Name, User string }

// Server is the emulator; it implements http.Handler. Close stops the
// backing hosts' start-ups it still owns.
type Server struct {
	sim  *cloudsim.Sim
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	servers  map[string]*server
	tokens   map[string]token // by token ID
	seq      int
	flavors  []flavor
	images   []image
	networks []network
	keys     map[string]map[string]*keypair // user ID → name → key pair
	groups   map[string]*secGroup
	rules    map[string]*sgRule
	fips     map[string]*floatingIP
	fipSeq   int

	wg     sync.WaitGroup
	cancel map[string]context.CancelFunc // backing start-ups in flight
	closed bool
}

type server struct {
	id, name    string
	metadata    map[string]string
	flavorID    string
	imageID     string
	netID       string
	keyName     string
	publicKey   string
	secGroups   []string
	secGroupIDs []string
	projectID   string
	userID      string
	stopped     bool   // powered off (SHUTOFF)
	powerTask   string // "powering-off" / "powering-on" while the backing works
	az          string
	userData    []byte
	reservation string
	launchIndex int
	created     time.Time
	visibleAt   time.Time
	activeAt    time.Time
	started     bool   // the backing (if any) has answered
	address     string // set when started
	fault       string // ERROR when non-empty (once activeAt passed)
	deletedAt   time.Time
	goneAt      time.Time
}

// New returns an emulator driven by sim.
func New(sim *cloudsim.Sim, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Region == "" {
		opts.Region = "RegionOne"
	}
	if opts.MaxLimit <= 0 {
		opts.MaxLimit = 1000
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = time.Second
	}
	if opts.DeleteFor <= 0 {
		opts.DeleteFor = 50 * time.Millisecond
	}
	return &Server{
		sim: sim, opts: opts, log: opts.Logger,
		servers: map[string]*server{},
		tokens:  map[string]token{},
		keys:    map[string]map[string]*keypair{},
		groups:  map[string]*secGroup{},
		rules:   map[string]*sgRule{},
		fips:    map[string]*floatingIP{},
		cancel:  map[string]context.CancelFunc{},
		flavors: []flavor{
			{ID: "1", Name: "m1.tiny", VCPUs: 1, RAM: 512, Disk: 1},
			{ID: FlavorSmall, Name: "m1.small", VCPUs: 1, RAM: 2048, Disk: 20},
			{ID: FlavorMedium, Name: "m1.medium", VCPUs: 2, RAM: 4096, Disk: 40},
			{ID: FlavorLarge, Name: "m1.large", VCPUs: 4, RAM: 8192, Disk: 80},
		},
		images: []image{
			{ID: ImageDebian12, Name: "debian-12", User: "debian"},
			{ID: "0c8e0b43-2f5a-4f0e-b7a1-3d2c1b0a9f88", Name: "ubuntu-24.04", User: "ubuntu"},
		},
		networks: []network{
			{ID: NetworkPrivate, Name: "private", SubnetID: "c0ffee00-0000-4000-8000-000000000001", CIDR: "10.0.0.0/24"},
			{ID: NetworkPublic, Name: "public", SubnetID: "c0ffee00-0000-4000-8000-000000000002", CIDR: "172.24.4.0/24", External: true},
		},
	}
}

var _ http.Handler = (*Server)(nil)

// Close cancels backing start-ups still running and waits for them.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	for _, c := range s.cancel {
		c()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Inventory returns the servers not being deleted, visible to reads yet
// or not, and how many were ever created.
func (s *Server) Inventory() cloudsim.Inventory {
	s.mu.Lock()
	defer s.mu.Unlock()
	inv := cloudsim.Inventory{Alive: []string{}, Launched: len(s.servers)}
	for id, sv := range s.servers {
		if sv.deletedAt.IsZero() {
			inv.Alive = append(inv.Alive, id)
		}
	}
	slices.Sort(inv.Alive)
	return inv
}

// ServeHTTP routes /identity, /compute/v2.1, /image/v2 and /network/v2.0,
// and each service's version discovery (which needs no token), under the
// Sim's request faults (latency, server errors, resets).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.sim.Serve(w, r, serverError, s.serve)
}

// serverError answers a failed request in the shape of the service it was
// for: Keystone's {"error"}, Neutron's {"NeutronError"}, Glance's plain
// text, and Nova's computeFault (500) or serviceUnavailable (503).
func serverError(w http.ResponseWriter, r *http.Request, status int) {
	service, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	unavailable := status == http.StatusServiceUnavailable
	switch {
	case service == "identity" && unavailable:
		keystoneError(w, status, "Service Unavailable", "The service is temporarily unavailable.")
	case service == "identity":
		keystoneError(w, status, "Internal Server Error", "An unexpected error prevented the server from fulfilling your request.")
	case service == "network" && unavailable:
		neutronError(w, status, "ServiceUnavailable", "The service is unavailable.")
	case service == "network":
		neutronError(w, status, "HTTPInternalServerError", "Request Failed: internal server error while processing your request.")
	case service == "image":
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		w.WriteHeader(status)
		_, _ = fmt.Fprintf(w, "%d %s\n\nThe server has either erred or is incapable of performing the requested operation.\n\n   ", status, http.StatusText(status))
	case unavailable:
		novaError(w, status, "serviceUnavailable", "The service is unavailable at this time.")
	default:
		novaError(w, status, "computeFault", "Unexpected API Error. Please report this at http://bugs.launchpad.net/nova/ and attach the Nova API log if possible.\n<class 'oslo_db.exception.DBConnectionError'>")
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	p := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if r.Method == http.MethodGet && s.discovery(w, r, p) {
		return
	}
	switch {
	case len(p) >= 1 && p[0] == "identity":
		s.identity(w, r, p[1:])
		return
	case len(p) >= 2 && p[0] == "compute" && p[1] == "v2.1":
		tok, ok := s.authorized(w, r, novaError)
		if !ok {
			return
		}
		mv, ok := negotiate(w, r)
		if !ok {
			return
		}
		s.compute(w, r, request{token: tok, mv: mv}, p[2:])
		return
	case len(p) >= 2 && p[0] == "image" && p[1] == "v2":
		if _, ok := s.authorized(w, r, novaError); !ok {
			return
		}
		s.image(w, r, p[2:])
		return
	case len(p) >= 2 && p[0] == "network" && p[1] == "v2.0":
		tok, ok := s.authorized(w, r, neutronError)
		if !ok {
			return
		}
		s.network(w, r, tok, p[2:])
		return
	}
	novaError(w, http.StatusNotFound, "itemNotFound", "The resource could not be found.")
}

// discovery answers the version documents and reports whether it did.
func (s *Server) discovery(w http.ResponseWriter, r *http.Request, p []string) bool {
	switch {
	case len(p) == 1 && (p[0] == "image" || p[0] == "network"):
		s.versions(w, r, p[0])
	case len(p) == 1 && p[0] == "identity":
		s.identityDiscovery(w, r, false)
	case len(p) == 2 && p[0] == "identity" && p[1] == "v3":
		s.identityDiscovery(w, r, true)
	case len(p) == 1 && p[0] == "compute":
		s.computeDiscovery(w, r, false)
	case len(p) == 2 && p[0] == "compute" && p[1] == "v2.1":
		s.computeDiscovery(w, r, true)
	case len(p) == 1 && p[0] == "": // the unversioned root: Keystone's list
		s.identityDiscovery(w, r, false)
	default:
		return false
	}
	return true
}

// request is what a Nova handler knows about its caller.
type request struct {
	token token
	mv    microversion
}

func (s *Server) baseURL(r *http.Request) string {
	if s.opts.PublicURL != "" {
		return strings.TrimRight(s.opts.PublicURL, "/")
	}
	return "http://" + r.Host
}

// throttled counts the call and, when the sim refuses it, answers as Nova
// does: 429 for writes and 413 overLimit for reads, both with Retry-After.
func (s *Server) throttled(w http.ResponseWriter, r *http.Request, action string) bool {
	if !s.sim.Call(action) {
		return false
	}
	secs := int((s.opts.RetryAfter + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	code := http.StatusTooManyRequests
	if r.Method == http.MethodGet {
		code = http.StatusRequestEntityTooLarge
	}
	writeJSON(w, code, map[string]any{"overLimit": map[string]any{
		"code": code, "message": "This request was rate-limited.", "retryAfter": strconv.Itoa(secs),
	}})
	return true
}

// ---- Nova ----

func (s *Server) compute(w http.ResponseWriter, r *http.Request, req request, p []string) {
	switch {
	case len(p) == 1 && p[0] == "servers" && r.Method == http.MethodPost:
		s.createServers(w, r, req)
	case len(p) >= 1 && p[0] == "servers" && r.Method == http.MethodGet && (len(p) == 1 || p[1] == "detail") && len(p) <= 2:
		s.listServers(w, r, req, len(p) == 2)
	case len(p) == 2 && p[0] == "servers" && r.Method == http.MethodGet:
		s.getServer(w, r, req, p[1])
	case len(p) == 2 && p[0] == "servers" && r.Method == http.MethodDelete:
		s.deleteServer(w, r, p[1])
	case len(p) == 3 && p[0] == "servers" && p[2] == "action" && r.Method == http.MethodPost:
		s.serverAction(w, r, p[1])
	case len(p) >= 1 && p[0] == "flavors" && r.Method == http.MethodGet:
		s.flavorsHandler(w, r, p[1:])
	case len(p) >= 1 && p[0] == "os-keypairs":
		s.keypairs(w, r, req, p[1:])
	default:
		novaError(w, http.StatusNotFound, "itemNotFound", "The resource could not be found.")
	}
}

type createRequest struct {
	Server struct {
		Name      string            `json:"name"`
		FlavorRef string            `json:"flavorRef"`
		ImageRef  string            `json:"imageRef"`
		Metadata  map[string]string `json:"metadata"`
		UserData  string            `json:"user_data"`
		KeyName   string            `json:"key_name"`
		AZ        string            `json:"availability_zone"`
		MinCount  int               `json:"min_count"`
		MaxCount  int               `json:"max_count"`
		Networks  json.RawMessage   `json:"networks"`
		SecGroups []struct {
			Name string `json:"name"`
		} `json:"security_groups"`
	} `json:"server"`
}

func (s *Server) createServers(w http.ResponseWriter, r *http.Request, req request) {
	if s.throttled(w, r, "servers.create") {
		return
	}
	var body createRequest
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		novaError(w, http.StatusBadRequest, "badRequest", "Invalid JSON in request body: "+err.Error())
		return
	}
	in := body.Server
	if req.mv.atLeast(2, 37) && len(in.Networks) == 0 {
		novaError(w, http.StatusBadRequest, "badRequest", "Invalid input for field/attribute server. Value: networks is a required property")
		return
	}
	if in.Name == "" {
		novaError(w, http.StatusBadRequest, "badRequest", "Invalid input for field/attribute server. Value: name is a required property")
		return
	}
	minC, maxC := max(in.MinCount, 1), in.MaxCount
	if maxC == 0 {
		maxC = minC
	}
	if maxC < minC {
		novaError(w, http.StatusBadRequest, "badRequest", "min_count must be <= max_count")
		return
	}
	if len(in.UserData) > maxUserData {
		novaError(w, http.StatusBadRequest, "badRequest", fmt.Sprintf(
			"User data too large. User data must be no larger than %d bytes once base64 encoded. Your data is %d bytes", maxUserData, len(in.UserData)))
		return
	}
	var userData []byte
	if in.UserData != "" {
		b, err := base64.StdEncoding.DecodeString(in.UserData)
		if err != nil {
			novaError(w, http.StatusBadRequest, "badRequest", "User data needs to be valid base 64.")
			return
		}
		userData = b
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fl := s.findFlavor(in.FlavorRef)
	if fl == nil {
		novaError(w, http.StatusBadRequest, "badRequest", fmt.Sprintf("Flavor %s could not be found.", in.FlavorRef))
		return
	}
	img := s.findImage(in.ImageRef)
	if img == nil {
		novaError(w, http.StatusBadRequest, "badRequest", "Can not find requested image")
		return
	}
	var kp *keypair
	if in.KeyName != "" {
		if kp = s.keys[req.token.userID][in.KeyName]; kp == nil {
			novaError(w, http.StatusBadRequest, "badRequest", "Invalid key_name provided.")
			return
		}
	}
	netID, msg := s.pickNetwork(in.Networks)
	if msg != "" {
		novaError(w, http.StatusBadRequest, "badRequest", msg)
		return
	}
	groupNames := []string{"default"}
	if len(in.SecGroups) > 0 {
		groupNames = groupNames[:0]
		for _, g := range in.SecGroups {
			groupNames = append(groupNames, g.Name)
		}
	}
	var groupIDs []string
	for _, name := range groupNames {
		g := s.findGroup(req.token.projectID, name)
		if g == nil {
			novaError(w, http.StatusBadRequest, "badRequest", fmt.Sprintf("Security group %s not found.", name))
			return
		}
		groupIDs = append(groupIDs, g.id)
	}
	f := s.sim.Faults()
	now := time.Now()
	count := maxC
	if f.InstanceQuota > 0 {
		used := 0
		for _, sv := range s.servers {
			if sv.goneAt.IsZero() || now.Before(sv.goneAt) {
				used++
			}
		}
		room := f.InstanceQuota - used
		if room < minC {
			novaError(w, http.StatusForbidden, "forbidden", fmt.Sprintf(
				"Quota exceeded for instances: Requested %d, but already used %d of %d instances", minC, used, f.InstanceQuota))
			return
		}
		count = min(count, room)
	}
	s.seq++
	reservation := fmt.Sprintf("r-%08d", s.seq)
	var first *server
	for i := range count {
		name := in.Name
		if count > 1 {
			name = fmt.Sprintf("%s-%d", in.Name, i+1) // Nova's multi-create naming
		}
		sv := &server{
			id: uuid.NewString(), name: name, metadata: copyMap(in.Metadata),
			flavorID: fl.ID, imageID: img.ID, netID: netID, keyName: in.KeyName, az: in.AZ,
			userData: userData, reservation: reservation, launchIndex: i,
			created: now, visibleAt: now.Add(f.InvisibleFor), activeAt: now.Add(f.PendingFor),
			secGroups: groupNames, secGroupIDs: groupIDs, projectID: req.token.projectID, userID: req.token.userID,
		}
		if kp != nil {
			sv.publicKey = kp.publicKey
		}
		if sv.az == "" {
			sv.az = "nova"
		}
		if f.NoCapacity {
			sv.fault = "No valid host was found. There are not enough hosts available."
		} else {
			s.start(r.Context(), sv, img.User)
		}
		s.servers[sv.id] = sv
		if first == nil {
			first = sv
		}
	}
	s.log.Info("servers created", "name", in.Name, "count", count, "reservation", reservation)
	base := s.baseURL(r)
	w.Header().Set("Location", base+"/compute/v2.1/servers/"+first.id)
	writeJSON(w, http.StatusAccepted, map[string]any{"server": map[string]any{
		"id": first.id, "links": serverLinks(base, first.id), "OS-DCF:diskConfig": "MANUAL",
		"security_groups": groupsJSON(groupNames), "adminPass": "not-a-secret",
	}})
}

// start gives sv an address: from the backing (asynchronously; sv stays
// BUILD until it answers) or a made-up one. Called with s.mu held.
func (s *Server) start(reqCtx context.Context, sv *server, keyUser string) {
	if s.opts.Backing == nil {
		n := len(s.servers) + 10
		sv.address = fmt.Sprintf("192.168.%d.%d", n/250, n%250+2)
		sv.started = true
		return
	}
	if s.closed {
		sv.fault = "emulator is closed"
		return
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(reqCtx))
	s.cancel[sv.id] = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		// Every server of a multi-create has the same user_data; the guest
		// applies only the parts for its own launch index, as a VM would.
		boot := cloudsim.Boot{UserData: sv.userData, LaunchIndex: sv.launchIndex}
		if sv.publicKey != "" {
			// The key pair goes to the image's default user, as
			// cloud-init's OpenStack datasource puts public-keys there.
			boot.PublicKeys, boot.KeyUser = []string{sv.publicKey}, keyUser
		}
		addr, err := s.opts.Backing.Start(ctx, sv.id, boot)
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.cancel, sv.id)
		if err != nil {
			s.log.Warn("backing start failed", "server", sv.id, "err", err)
			sv.fault = "Build of instance " + sv.id + " aborted: " + err.Error()
			return
		}
		sv.address, sv.started = addr, true
	}()
}

func (s *Server) pickNetwork(raw json.RawMessage) (string, string) {
	var nets []struct {
		UUID string `json:"uuid"`
		Port string `json:"port"`
	}
	if len(raw) == 0 || string(raw) == "null" || string(raw) == `"auto"` {
		return s.networks[0].ID, ""
	}
	if string(raw) == `"none"` {
		return "", "" // 2.37: no network at all
	}
	if err := json.Unmarshal(raw, &nets); err != nil {
		return "", "Bad networks format"
	}
	if len(nets) == 0 {
		return s.networks[0].ID, ""
	}
	for _, n := range nets {
		if s.findNetwork(n.UUID) == nil {
			return "", fmt.Sprintf("Network %s could not be found.", n.UUID)
		}
	}
	return nets[0].UUID, ""
}

// status reports sv's Nova status and task state at t.
func (sv *server) status(t time.Time) (status, task string) {
	switch {
	case !sv.deletedAt.IsZero():
		return "ACTIVE", "deleting"
	case t.Before(sv.activeAt):
		return "BUILD", "spawning"
	case sv.fault != "":
		return "ERROR", ""
	case !sv.started:
		return "BUILD", "spawning"
	case sv.stopped:
		return "SHUTOFF", sv.powerTask
	}
	return "ACTIVE", sv.powerTask
}

// vmStates are Nova's vm_state for each status.
var vmStates = map[string]string{"ACTIVE": "active", "BUILD": "building", "ERROR": "error", "SHUTOFF": "stopped"}

func (sv *server) visible(t time.Time) bool {
	return !t.Before(sv.visibleAt) && (sv.goneAt.IsZero() || t.Before(sv.goneAt))
}

// addressesJSON is Nova's addresses of sv: its fixed address on its
// network and, when one is associated, its floating IP. Called with s.mu
// held.
func (s *Server) addressesJSON(sv *server, status string, t time.Time) map[string]any {
	addrs := map[string]any{}
	if (status != "ACTIVE" && status != "SHUTOFF") || sv.address == "" || sv.netID == "" {
		return addrs
	}
	n := s.findNetwork(sv.netID)
	list := []any{map[string]any{
		"addr": sv.address, "version": 4, "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": mac(sv.id),
	}}
	if fl := s.floatingOf(sv, t); fl != "" {
		list = append(list, map[string]any{
			"addr": fl, "version": 4, "OS-EXT-IPS:type": "floating", "OS-EXT-IPS-MAC:mac_addr": mac(sv.id),
		})
	}
	addrs[n.Name] = list
	return addrs
}

func (s *Server) serverJSON(base string, sv *server, t time.Time, mv microversion, detail bool) map[string]any {
	out := map[string]any{"id": sv.id, "name": sv.name, "links": serverLinks(base, sv.id)}
	if !detail {
		return out
	}
	status, task := sv.status(t)
	power := 0 // NOSTATE while building
	switch status {
	case "ACTIVE":
		power = 1 // RUNNING
	case "SHUTOFF":
		power = 4 // SHUTDOWN
	}
	out["status"] = status
	out["OS-EXT-STS:task_state"] = nilIfEmpty(task)
	out["OS-EXT-STS:vm_state"] = vmStates[status]
	out["OS-EXT-STS:power_state"] = power
	out["OS-EXT-AZ:availability_zone"] = sv.az
	out["OS-EXT-SRV-ATTR:reservation_id"] = sv.reservation
	out["OS-EXT-SRV-ATTR:launch_index"] = sv.launchIndex
	out["OS-DCF:diskConfig"] = "MANUAL"
	out["OS-SRV-USG:launched_at"] = nil
	out["OS-SRV-USG:terminated_at"] = nil
	if status == "ACTIVE" || status == "SHUTOFF" {
		out["OS-SRV-USG:launched_at"] = sv.activeAt.UTC().Format("2006-01-02T15:04:05.000000")
	}
	out["os-extended-volumes:volumes_attached"] = []any{}
	out["config_drive"] = ""
	out["created"] = sv.created.UTC().Format(time.RFC3339)
	out["updated"] = t.UTC().Format(time.RFC3339)
	out["tenant_id"] = sv.projectID
	out["user_id"] = sv.userID
	out["hostId"] = stableID("host", sv.projectID+"/"+sv.az)
	out["metadata"] = sv.metadata
	out["addresses"] = s.addressesJSON(sv, status, t)
	out["flavor"] = map[string]any{"id": sv.flavorID, "links": []any{
		map[string]any{"rel": "bookmark", "href": base + "/compute/flavors/" + sv.flavorID}}}
	out["image"] = map[string]any{"id": sv.imageID, "links": []any{
		map[string]any{"rel": "bookmark", "href": base + "/compute/images/" + sv.imageID}}}
	out["key_name"] = nilIfEmpty(sv.keyName)
	out["accessIPv4"] = ""
	out["accessIPv6"] = ""
	out["progress"] = 0
	if mv.atLeast(2, 9) {
		out["locked"] = false
	}
	if mv.atLeast(2, 19) {
		out["description"] = nil
	}
	if mv.atLeast(2, 26) {
		out["tags"] = []string{}
	}
	out["security_groups"] = groupsJSON(sv.secGroups)
	if status == "ERROR" {
		out["fault"] = map[string]any{"code": 500, "message": sv.fault, "created": sv.activeAt.UTC().Format(time.RFC3339)}
	}
	return out
}

func groupsJSON(names []string) []any {
	out := []any{}
	for _, g := range names {
		out = append(out, map[string]any{"name": g})
	}
	return out
}

func (s *Server) listServers(w http.ResponseWriter, r *http.Request, req request, detail bool) {
	if s.throttled(w, r, "servers.list") {
		return
	}
	q := r.URL.Query()
	limit := s.opts.MaxLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			novaError(w, http.StatusBadRequest, "badRequest", "limit param must be an integer")
			return
		}
		limit = min(n, s.opts.MaxLimit)
	}
	var nameRE *regexp.Regexp
	if v := q.Get("name"); v != "" {
		re, err := regexp.Compile(v)
		if err != nil {
			novaError(w, http.StatusBadRequest, "badRequest", "Invalid regex for name: "+err.Error())
			return
		}
		nameRE = re
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*server
	for _, sv := range s.servers {
		if !sv.visible(now) || (nameRE != nil && !nameRE.MatchString(sv.name)) {
			continue
		}
		if st := q.Get("status"); st != "" {
			if got, _ := sv.status(now); got != st {
				continue
			}
		}
		all = append(all, sv)
	}
	// Nova's default order: created_at desc, id desc.
	before := func(a, b *server) bool {
		if !a.created.Equal(b.created) {
			return a.created.After(b.created)
		}
		return a.id > b.id
	}
	sort.Slice(all, func(i, j int) bool { return before(all[i], all[j]) })
	if m := q.Get("marker"); m != "" {
		// Nova looks the marker up with read_deleted=yes: a server deleted
		// between two pages is still a valid marker.
		ms, ok := s.servers[m]
		if !ok {
			novaError(w, http.StatusBadRequest, "badRequest", fmt.Sprintf("marker [%s] not found", m))
			return
		}
		i := sort.Search(len(all), func(k int) bool { return before(ms, all[k]) })
		all = all[i:]
	}
	base := s.baseURL(r)
	page := all
	if len(page) > limit {
		page = page[:limit]
	}
	items := make([]any, 0, len(page))
	for _, sv := range page {
		items = append(items, s.serverJSON(base, sv, now, req.mv, detail))
	}
	body := map[string]any{"servers": items}
	if len(page) > 0 && len(page) == limit {
		next := url.Values{}
		for k, v := range q {
			next[k] = v
		}
		next.Set("limit", strconv.Itoa(limit))
		next.Set("marker", page[len(page)-1].id)
		body["servers_links"] = []any{map[string]any{"rel": "next", "href": base + r.URL.Path + "?" + next.Encode()}}
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) getServer(w http.ResponseWriter, r *http.Request, req request, id string) {
	if s.throttled(w, r, "servers.get") {
		return
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	sv, ok := s.servers[id]
	if !ok || !sv.visible(now) {
		novaError(w, http.StatusNotFound, "itemNotFound", fmt.Sprintf("Instance %s could not be found.", id))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"server": s.serverJSON(s.baseURL(r), sv, now, req.mv, true)})
}

// deleteServer accepts the delete of any server that exists (writes see
// the truth; only reads lag) and makes it gone after DeleteFor.
func (s *Server) deleteServer(w http.ResponseWriter, r *http.Request, id string) {
	if s.throttled(w, r, "servers.delete") {
		return
	}
	now := time.Now()
	s.mu.Lock()
	sv, ok := s.servers[id]
	if !ok || (!sv.goneAt.IsZero() && !now.Before(sv.goneAt)) {
		s.mu.Unlock()
		novaError(w, http.StatusNotFound, "itemNotFound", fmt.Sprintf("Instance %s could not be found.", id))
		return
	}
	first := sv.deletedAt.IsZero()
	if first {
		sv.deletedAt = now
		sv.goneAt = now.Add(s.opts.DeleteFor)
		if c := s.cancel[id]; c != nil {
			c()
		}
		// The server's port goes with it: its floating IP is let go.
		for _, f := range s.fips {
			if f.portID == portID(id) {
				f.portID = ""
			}
		}
	}
	started := sv.started
	s.mu.Unlock()
	if first && started && s.opts.Backing != nil {
		// The delete was accepted: it goes on when its caller hangs up.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), powerTimeout)
		err := s.opts.Backing.Stop(ctx, id)
		cancel()
		if err != nil {
			s.log.Warn("backing stop failed", "server", id, "err", err)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) flavorsHandler(w http.ResponseWriter, r *http.Request, p []string) {
	fj := func(f flavor) map[string]any {
		return map[string]any{"id": f.ID, "name": f.Name, "vcpus": f.VCPUs, "ram": f.RAM, "disk": f.Disk,
			"OS-FLV-EXT-DATA:ephemeral": 0, "swap": "", "rxtx_factor": 1.0, "os-flavor-access:is_public": true, "links": []any{}}
	}
	if len(p) == 0 || (len(p) == 1 && p[0] == "detail") {
		if s.throttled(w, r, "flavors.list") {
			return
		}
		var out []any
		for _, f := range s.flavors {
			if len(p) == 0 { // the summary list: id, name and links only
				out = append(out, map[string]any{"id": f.ID, "name": f.Name, "links": []any{}})
				continue
			}
			out = append(out, fj(f))
		}
		writeJSON(w, http.StatusOK, map[string]any{"flavors": out})
		return
	}
	if s.throttled(w, r, "flavors.get") {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.flavors {
		if f.ID == p[0] {
			writeJSON(w, http.StatusOK, map[string]any{"flavor": fj(f)})
			return
		}
	}
	novaError(w, http.StatusNotFound, "itemNotFound", fmt.Sprintf("Flavor %s could not be found.", p[0]))
}

func (s *Server) findFlavor(ref string) *flavor {
	ref = lastSegment(ref)
	for i := range s.flavors {
		if s.flavors[i].ID == ref {
			return &s.flavors[i]
		}
	}
	return nil
}

func (s *Server) findImage(ref string) *image {
	ref = lastSegment(ref)
	for i := range s.images {
		if s.images[i].ID == ref {
			return &s.images[i]
		}
	}
	return nil
}

func (s *Server) findNetwork(id string) *network {
	for i := range s.networks {
		if s.networks[i].ID == id {
			return &s.networks[i]
		}
	}
	return nil
}

// ---- Glance ----

func (s *Server) image(w http.ResponseWriter, r *http.Request, p []string) {
	if len(p) == 0 || p[0] != "images" || r.Method != http.MethodGet || len(p) > 2 {
		novaError(w, http.StatusNotFound, "itemNotFound", "The resource could not be found.")
		return
	}
	ij := func(im image) map[string]any {
		return map[string]any{"id": im.ID, "name": im.Name, "status": "active", "visibility": "public",
			"disk_format": "qcow2", "container_format": "bare", "self": "/v2/images/" + im.ID}
	}
	if len(p) == 2 {
		if s.throttled(w, r, "images.get") {
			return
		}
		for _, im := range s.images {
			if im.ID == p[1] {
				writeJSON(w, http.StatusOK, ij(im))
				return
			}
		}
		http.Error(w, "404 Not Found\n\nNo image found with ID "+p[1], http.StatusNotFound)
		return
	}
	if s.throttled(w, r, "images.list") {
		return
	}
	name, id := r.URL.Query().Get("name"), r.URL.Query().Get("id")
	out := []any{}
	for _, im := range s.images {
		if glanceMatch(name, im.Name) && glanceMatch(id, im.ID) {
			out = append(out, ij(im))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"images": out, "first": "/v2/images", "schema": "/v2/schemas/images"})
}

// glanceMatch applies a Glance filter: empty matches all, "in:a,b" any of
// a list, anything else exactly.
func glanceMatch(filter, v string) bool {
	if filter == "" {
		return true
	}
	if list, ok := strings.CutPrefix(filter, "in:"); ok {
		return slices.Contains(strings.Split(list, ","), v)
	}
	return filter == v
}

// ---- helpers ----

func serverLinks(base, id string) []any {
	return []any{
		map[string]any{"rel": "self", "href": base + "/compute/v2.1/servers/" + id},
		map[string]any{"rel": "bookmark", "href": base + "/compute/servers/" + id},
	}
}

func mac(id string) string {
	h := strings.ReplaceAll(id, "-", "")
	return "fa:16:3e:" + h[0:2] + ":" + h[2:4] + ":" + h[4:6]
}

func lastSegment(ref string) string {
	if i := strings.LastIndex(ref, "/"); i >= 0 {
		return ref[i+1:]
	}
	return ref
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// novaError writes Nova's error shape: {"itemNotFound": {"code", "message"}}.
func novaError(w http.ResponseWriter, code int, kind, msg string) {
	writeJSON(w, code, map[string]any{kind: map[string]any{"code": code, "message": msg}})
}

func neutronError(w http.ResponseWriter, code int, kind, msg string) {
	writeJSON(w, code, map[string]any{"NeutronError": map[string]any{"type": kind, "message": msg, "detail": ""}})
}

func keystoneError(w http.ResponseWriter, code int, title, msg string) {
	writeJSON(w, code, map[string]any{"error": map[string]any{"code": code, "title": title, "message": msg}})
}
