package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/api/types/system"

	"github.com/provisionhq/provision/bootstrap/cluster"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

const secret = "SWMTKN-1-0123456789abcdefghijklmnopqrstuvwxyz-secretpart"

// fakeSwarm is a swarm of fake Docker engines, one per machine, each
// serving the slice of the Engine API the driver uses on its own unix
// socket. They share one cluster: the node list every manager answers.
type fakeSwarm struct {
	mu     sync.Mutex
	log    []string // "machine METHOD /path?query", API version and pings left out
	nodes  []swarm.Node
	tokens swarm.JoinTokens
	// busyLists is how many task lists still report a task running.
	busyLists int
	joins     []swarm.JoinRequest
	// joinRefusal, when set, is the engine's answer to a join.
	joinRefusal string
	// racedUpdates is how many node updates lose a race: another writer
	// bumps the version first and the engine refuses the stale one.
	racedUpdates int
	updates      []swarm.NodeSpec
}

// fakeEngine is one machine's engine.
type fakeEngine struct {
	s    *fakeSwarm
	name string
	sock string
	info swarm.Info
}

var apiVersion = regexp.MustCompile(`^/v[0-9.]+/`)

func (s *fakeSwarm) engine(t *testing.T, name string, state swarm.LocalNodeState, control bool) *fakeEngine {
	t.Helper()
	// Short: a unix socket path has a ~100-byte limit.
	dir, err := os.MkdirTemp("", "sw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e := &fakeEngine{s: s, name: name, sock: filepath.Join(dir, "docker.sock"),
		info: swarm.Info{LocalNodeState: state, ControlAvailable: control}}
	if state == swarm.LocalNodeStateActive {
		e.info.NodeID = "id-" + name
	}
	l, err := net.Listen("unix", e.sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(e)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return e
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"message": msg})
}

func (e *fakeEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/_ping" {
		w.Header().Set("Api-Version", "1.41")
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, "OK")
		return
	}
	s := e.s
	s.mu.Lock()
	defer s.mu.Unlock()
	path := "/" + apiVersion.ReplaceAllString(r.URL.Path, "")
	entry := e.name + " " + r.Method + " " + path
	if r.URL.RawQuery != "" {
		entry += "?" + r.URL.RawQuery
	}
	s.log = append(s.log, entry)
	id, _ := strings.CutPrefix(path, "/nodes/")
	id = strings.TrimSuffix(id, "/update")
	switch {
	case r.Method == http.MethodGet && path == "/info":
		writeJSON(w, 200, system.Info{Swarm: e.info})
	case r.Method == http.MethodPost && path == "/swarm/init":
		var req swarm.InitRequest
		json.NewDecoder(r.Body).Decode(&req)
		e.info = swarm.Info{LocalNodeState: swarm.LocalNodeStateActive, ControlAvailable: true, NodeID: "id-" + e.name}
		s.add(e, req.AdvertiseAddr, &swarm.ManagerStatus{Leader: true})
		writeJSON(w, 200, e.info.NodeID)
	case r.Method == http.MethodGet && path == "/swarm":
		writeJSON(w, 200, swarm.Swarm{JoinTokens: s.tokens})
	case r.Method == http.MethodPost && path == "/swarm/join":
		var req swarm.JoinRequest
		json.NewDecoder(r.Body).Decode(&req)
		s.joins = append(s.joins, req)
		if s.joinRefusal != "" {
			writeError(w, http.StatusBadRequest, s.joinRefusal)
			return
		}
		e.info = swarm.Info{LocalNodeState: swarm.LocalNodeStateActive, NodeID: "id-" + e.name}
		s.add(e, req.AdvertiseAddr, nil)
		w.WriteHeader(200)
	case r.Method == http.MethodPost && path == "/swarm/leave":
		e.info = swarm.Info{LocalNodeState: swarm.LocalNodeStateInactive}
		for i := range s.nodes {
			if s.nodes[i].Description.Hostname == e.name {
				s.nodes[i].Status.State = swarm.NodeStateDown
			}
		}
		w.WriteHeader(200)
	case r.Method == http.MethodGet && path == "/nodes":
		writeJSON(w, 200, s.nodes)
	case r.Method == http.MethodGet && s.node(id) != nil:
		writeJSON(w, 200, s.node(id))
	case r.Method == http.MethodPost && strings.HasSuffix(path, "/update") && s.node(id) != nil:
		n := s.node(id)
		var spec swarm.NodeSpec
		json.NewDecoder(r.Body).Decode(&spec)
		if s.racedUpdates > 0 {
			s.racedUpdates--
			n.Version.Index++
		}
		if r.URL.Query().Get("version") != fmt.Sprint(n.Version.Index) {
			writeError(w, http.StatusInternalServerError, "rpc error: code = Unknown desc = update out of sequence")
			return
		}
		s.updates = append(s.updates, spec)
		n.Spec = spec
		n.Version.Index++
		if spec.Role == swarm.NodeRoleWorker {
			n.ManagerStatus = nil
		}
		w.WriteHeader(200)
	case r.Method == http.MethodDelete && s.node(id) != nil:
		s.nodes = slices.DeleteFunc(s.nodes, func(n swarm.Node) bool { return n.ID == id })
		w.WriteHeader(200)
	case r.Method == http.MethodGet && path == "/tasks":
		var tasks []swarm.Task
		if s.busyLists > 0 {
			s.busyLists--
			tasks = append(tasks, swarm.Task{ID: "task1", DesiredState: swarm.TaskStateRunning})
		}
		writeJSON(w, 200, tasks)
	case strings.HasPrefix(path, "/nodes/"):
		writeError(w, http.StatusNotFound, "node "+id+" not found")
	default:
		writeError(w, http.StatusNotFound, "page not found")
	}
}

// add lists e's machine as a swarm node (caller holds s.mu).
func (s *fakeSwarm) add(e *fakeEngine, addr string, mgr *swarm.ManagerStatus) {
	role := swarm.NodeRoleWorker
	if mgr != nil {
		role = swarm.NodeRoleManager
	}
	s.nodes = append(s.nodes, swarm.Node{ID: e.info.NodeID, Meta: swarm.Meta{Version: swarm.Version{Index: 10}},
		Spec:          swarm.NodeSpec{Role: role, Availability: swarm.NodeAvailabilityActive},
		Description:   swarm.NodeDescription{Hostname: e.name},
		Status:        swarm.NodeStatus{State: swarm.NodeStateReady, Addr: addr},
		ManagerStatus: mgr})
}

func (s *fakeSwarm) node(id string) *swarm.Node {
	for i := range s.nodes {
		if s.nodes[i].ID == id {
			return &s.nodes[i]
		}
	}
	return nil
}

func (s *fakeSwarm) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

// conn is a machine's connection as the driver gets it: it opens the
// engine's socket and refuses to run commands, since the driver needs none.
type conn struct {
	sock    string
	dialErr error
	mu      sync.Mutex
	cmds    []string
}

func (c *conn) Run(_ context.Context, cmd string, _ io.Reader, _ io.Writer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cmds = append(c.cmds, cmd)
	return errors.New("the swarm driver runs no commands")
}

func (c *conn) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	if path != cluster.DockerSocket {
		return nil, fmt.Errorf("dial %s: not the docker socket", path)
	}
	if c.dialErr != nil {
		return nil, c.dialErr
	}
	var d net.Dialer
	return d.DialContext(ctx, "unix", c.sock)
}

func (c *conn) commands() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.cmds)
}

func node(e *fakeEngine, addr, role string) (cluster.Node, *conn) {
	c := &conn{sock: e.sock}
	return cluster.Node{Name: e.name, Address: addr, Role: role, Run: c}, c
}

func fastSwarm() *cluster.Swarm {
	s := cluster.NewSwarm(nil)
	s.Poll = 5 * time.Millisecond
	s.DrainTimeout = 2 * time.Second
	s.DownTimeout = 2 * time.Second
	return s
}

func TestSwarmInit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		state   swarm.LocalNodeState
		control bool
		labels  map[string]string
		want    []string
		wantErr error
	}{
		{name: "already active manager is a no-op", state: "active", control: true, want: []string{"m-1 GET /info"}},
		{name: "inactive is initialized", state: "inactive", want: []string{"m-1 GET /info", "m-1 POST /swarm/init"}},
		{name: "labels are set on the new manager", state: "inactive", labels: map[string]string{"tier": "edge"},
			want: []string{"m-1 GET /info", "m-1 POST /swarm/init", "m-1 GET /nodes/id-m-1", "m-1 POST /nodes/id-m-1/update?version=10"}},
		{name: "worker of another swarm is refused", state: "active", want: []string{"m-1 GET /info"}, wantErr: cluster.ErrSwarmState},
		{name: "pending is refused", state: "pending", want: []string{"m-1 GET /info"}, wantErr: cluster.ErrSwarmState},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := &fakeSwarm{}
			n, c := node(s.engine(t, "m-1", tt.state, tt.control), "10.0.0.1", "manager")
			n.Labels = tt.labels
			err := fastSwarm().Init(t.Context(), n)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got := s.requests(); !slices.Equal(got, tt.want) {
				t.Errorf("requests = %q, want %q", got, tt.want)
			}
			if len(c.commands()) > 0 {
				t.Errorf("commands run: %q", c.commands())
			}
			if tt.want[len(tt.want)-1] == "m-1 POST /swarm/init" && (len(s.nodes) != 1 || s.nodes[0].Status.Addr != "10.0.0.1") {
				t.Errorf("swarm after init = %+v, want m-1 advertising 10.0.0.1", s.nodes)
			}
			if tt.labels != nil && (len(s.updates) != 1 || !maps(s.updates[0].Labels, tt.labels)) {
				t.Errorf("updates = %+v, want the labels %v", s.updates, tt.labels)
			}
		})
	}
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestSwarmCredential(t *testing.T) {
	t.Parallel()
	s := &fakeSwarm{tokens: swarm.JoinTokens{Worker: secret, Manager: "SWMTKN-1-manager"}}
	mgr, c := node(s.engine(t, "m-1", "active", true), "10.0.0.1", "manager")
	cred, err := fastSwarm().Credential(t.Context(), mgr, "worker")
	if err != nil {
		t.Fatal(err)
	}
	if cred.Secret() != secret {
		t.Errorf("secret = %q", cred.Secret())
	}
	if cred, err := fastSwarm().Credential(t.Context(), mgr, "manager"); err != nil || cred.Secret() != "SWMTKN-1-manager" {
		t.Errorf("manager token = %q, %v", cred.Secret(), err)
	}
	if _, err := fastSwarm().Credential(t.Context(), mgr, "admin"); err == nil {
		t.Error("a bogus role was accepted")
	}
	if len(c.commands()) > 0 {
		t.Errorf("commands run: %q", c.commands())
	}
}

func TestSwarmJoin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		state      swarm.LocalNodeState
		refusal    string
		dialErr    error
		labels     map[string]string
		wantJoin   bool
		wantErrMsg string
	}{
		{name: "inactive node joins", state: "inactive", wantJoin: true},
		{name: "inactive node joins and is labelled", state: "inactive", wantJoin: true, labels: map[string]string{"provision.pool": "gpu"}},
		{name: "member is a no-op", state: "active"},
		{
			name: "engine refusal is surfaced without the token", state: "inactive", wantJoin: true,
			refusal:    "invalid join token " + secret,
			wantErrMsg: "invalid join token [redacted]",
		},
		{
			name: "engine unreachable", state: "inactive",
			dialErr:    errors.New("w-1: dial unix socket /var/run/docker.sock over ssh: administratively prohibited"),
			wantErrMsg: "administratively prohibited",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := &fakeSwarm{joinRefusal: tt.refusal}
			mgr, mc := node(s.engine(t, "m-1", "active", true), "10.0.0.1", "manager")
			s.mu.Lock()
			s.add(&fakeEngine{name: "m-1", info: swarm.Info{NodeID: "id-m-1"}}, "10.0.0.1", &swarm.ManagerStatus{Leader: true})
			s.mu.Unlock()
			w, wc := node(s.engine(t, "w-1", tt.state, false), "10.0.0.7", "worker")
			w.Labels = tt.labels
			wc.dialErr = tt.dialErr
			err := fastSwarm().Join(t.Context(), w, mgr, cluster.NewCredential(secret))
			if tt.wantErrMsg == "" && err != nil {
				t.Fatal(err)
			}
			if tt.wantErrMsg != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErrMsg)) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErrMsg)
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("the token leaked into the error: %v", err)
			}
			if cmds := append(mc.commands(), wc.commands()...); len(cmds) > 0 {
				t.Errorf("commands run: %q", cmds)
			}
			if got := len(s.joins) > 0; got != tt.wantJoin {
				t.Fatalf("join requested = %v, want %v (requests %q)", got, tt.wantJoin, s.requests())
			}
			if tt.wantJoin {
				want := swarm.JoinRequest{ListenAddr: "0.0.0.0:2377", AdvertiseAddr: "10.0.0.7", RemoteAddrs: []string{"10.0.0.1:2377"}, JoinToken: secret}
				if got := s.joins[0]; got.JoinToken != want.JoinToken || got.AdvertiseAddr != want.AdvertiseAddr ||
					got.ListenAddr != want.ListenAddr || !slices.Equal(got.RemoteAddrs, want.RemoteAddrs) {
					t.Errorf("join request = %+v, want %+v", got, want)
				}
			}
			if tt.labels != nil {
				n := s.node("id-w-1")
				if n == nil || !maps(n.Spec.Labels, tt.labels) {
					t.Errorf("w-1 after join = %+v, want labels %v", n, tt.labels)
				}
				for _, r := range s.requests() {
					if strings.Contains(r, "/nodes/") && !strings.HasPrefix(r, "m-1 ") {
						t.Errorf("label request %q not sent to the manager", r)
					}
				}
			}
		})
	}
}

// TestSwarmLabelRace: another writer updates the node between the read and
// the write; the driver reads it again instead of failing.
func TestSwarmLabelRace(t *testing.T) {
	t.Parallel()
	s := &fakeSwarm{racedUpdates: 1}
	n, _ := node(s.engine(t, "m-1", "inactive", false), "10.0.0.1", "manager")
	n.Labels = map[string]string{"tier": "edge"}
	if err := fastSwarm().Init(t.Context(), n); err != nil {
		t.Fatal(err)
	}
	if got := s.node("id-m-1").Spec.Labels; !maps(got, n.Labels) {
		t.Errorf("labels = %v, want %v", got, n.Labels)
	}
}

func loadNodes(t *testing.T) []swarm.Node {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "nodes.json"))
	if err != nil {
		t.Fatal(err)
	}
	var nodes []swarm.Node
	if err := json.Unmarshal(b, &nodes); err != nil {
		t.Fatal(err)
	}
	return nodes
}

func TestSwarmRemove(t *testing.T) {
	t.Parallel()
	leader := swarm.Node{ID: "mgr1", Spec: swarm.NodeSpec{Role: "manager", Availability: "active"},
		Description: swarm.NodeDescription{Hostname: "m-1"}, Status: swarm.NodeStatus{State: "ready"},
		ManagerStatus: &swarm.ManagerStatus{Leader: true}}
	entry := func(id, state, avail string, mgr bool) swarm.Node {
		n := swarm.Node{ID: id, Meta: swarm.Meta{Version: swarm.Version{Index: 20}},
			Spec:        swarm.NodeSpec{Role: "worker", Availability: swarm.NodeAvailability(avail)},
			Description: swarm.NodeDescription{Hostname: "w-1"}, Status: swarm.NodeStatus{State: swarm.NodeState(state)}}
		if mgr {
			n.Spec.Role, n.ManagerStatus = "manager", &swarm.ManagerStatus{Reachability: "reachable"}
		}
		return n
	}
	tests := []struct {
		name      string
		nodes     []swarm.Node
		reachable bool
		state     swarm.LocalNodeState
		want      []string // requests in order, manager and node interleaved
	}{
		{
			name: "worker: drain, leave, rm", nodes: []swarm.Node{leader, entry("wid1", "ready", "active", false)},
			reachable: true, state: "active",
			want: []string{"m-1 GET /nodes", "m-1 GET /nodes/wid1", "m-1 POST /nodes/wid1/update?version=20",
				`m-1 GET /tasks?filters={"desired-state":{"running":true},"node":{"wid1":true}}`, "m-1 GET /tasks?…",
				"w-1 GET /info", "w-1 POST /swarm/leave", "m-1 GET /nodes", "m-1 DELETE /nodes/wid1?force=1"},
		},
		{
			name: "manager: demoted before it leaves with force", nodes: []swarm.Node{leader, entry("mid2", "ready", "active", true)},
			reachable: true, state: "active",
			want: []string{"m-1 GET /nodes", "m-1 GET /nodes/mid2", "m-1 POST /nodes/mid2/update?version=20",
				"m-1 GET /tasks?…", "m-1 GET /tasks?…",
				"m-1 GET /nodes/mid2", "m-1 POST /nodes/mid2/update?version=21",
				"w-1 GET /info", "w-1 POST /swarm/leave?force=1", "m-1 GET /nodes", "m-1 DELETE /nodes/mid2?force=1"},
		},
		{
			name: "unreachable node is removed from the manager", nodes: []swarm.Node{leader, entry("wid1", "down", "drain", false)},
			want: []string{"m-1 GET /nodes", "m-1 GET /nodes/wid1", "m-1 GET /tasks?…", "m-1 GET /tasks?…",
				"m-1 GET /nodes", "m-1 DELETE /nodes/wid1?force=1"},
		},
		{
			name: "unknown node is already removed", nodes: []swarm.Node{leader},
			reachable: true, state: "inactive",
			want: []string{"m-1 GET /nodes", "w-1 GET /info"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := &fakeSwarm{nodes: tt.nodes, busyLists: 1}
			mgr, _ := node(s.engine(t, "m-1", "active", true), "10.0.0.1", "manager")
			var n cluster.Node
			if tt.reachable {
				n, _ = node(s.engine(t, "w-1", tt.state, false), "10.0.0.7", "worker")
			} else {
				n = cluster.Node{Name: "w-1", Address: "10.0.0.7", Role: "worker"}
			}
			if err := fastSwarm().Remove(t.Context(), mgr, n); err != nil {
				t.Fatal(err)
			}
			got := s.requests()
			for i := range got {
				if u, err := url.PathUnescape(got[i]); err == nil {
					got[i] = u
				}
			}
			ok := len(got) == len(tt.want)
			for i := 0; ok && i < len(got); i++ {
				if p, wild := strings.CutSuffix(tt.want[i], "…"); wild {
					ok = strings.HasPrefix(got[i], p)
				} else {
					ok = got[i] == tt.want[i]
				}
			}
			if !ok {
				t.Errorf("requests:\n%q\nwant:\n%q", got, tt.want)
			}
			if slices.ContainsFunc(s.nodes, func(e swarm.Node) bool { return e.Description.Hostname == "w-1" }) {
				t.Errorf("w-1 still listed: %+v", s.nodes)
			}
		})
	}
}

func TestSwarmRemoveRefusesItsOwnManager(t *testing.T) {
	t.Parallel()
	s := &fakeSwarm{}
	mgr, _ := node(s.engine(t, "m-1", "active", true), "10.0.0.1", "manager")
	if err := fastSwarm().Remove(t.Context(), mgr, mgr); err == nil {
		t.Error("removing the manager through itself succeeded")
	}
	if got := s.requests(); len(got) > 0 {
		t.Errorf("requests made: %q", got)
	}
}

func TestSwarmMembers(t *testing.T) {
	t.Parallel()
	s := &fakeSwarm{nodes: loadNodes(t)}
	mgr, _ := node(s.engine(t, "m-1a2b", "active", true), "10.0.0.1", "manager")
	members, err := fastSwarm().Members(t.Context(), mgr)
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.MarshalIndent(members, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	golden := filepath.Join("testdata", "members.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("members differ from %s:\n%s\nwant:\n%s", golden, got, want)
	}

	// A connection that cannot open sockets is a clear error, not a hang.
	plain := cluster.Node{Name: "m-1", Run: runnerOnly{}}
	if _, err := fastSwarm().Members(t.Context(), plain); !errors.Is(err, cluster.ErrNoSocket) {
		t.Errorf("members over a plain runner: err = %v, want ErrNoSocket", err)
	}
}

type runnerOnly struct{}

func (runnerOnly) Run(context.Context, string, io.Reader, io.Writer) error { return nil }
