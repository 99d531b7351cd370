package swarm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeEngine is the slice of the Docker Engine API a Source uses, served on a
// unix socket in a temp dir so the real dialer is exercised. Its objects are
// the JSON of testdata/*.json, kept as generic maps so fields the source does
// not know survive an update, as they do in Swarm.
type fakeEngine struct {
	sock string

	mu         sync.Mutex
	apiVersion string // the highest version it speaks, as /_ping reports it
	minVersion string
	nodes      []map[string]any
	tasks      []map[string]any
	services   []map[string]any
	// override answers an unversioned path ("/tasks") with a canned reply.
	override map[string]reply
	requests []string // "METHOD /path?query", as received
	updates  []update
	// onUpdate runs after a node update was applied, with the lock held:
	// the test's stand-in for Swarm's orchestrator.
	onUpdate func(f *fakeEngine, id string)
	// beforeUpdate may refuse an update (with the lock held).
	beforeUpdate func(f *fakeEngine, id string, version int) *reply
	// onTaskList runs before each GET /tasks, with the lock held.
	onTaskList func(f *fakeEngine)

	events      chan string   // lines to send on open event streams
	dropStreams chan struct{} // a receive ends the current event stream
	streams     int           // event streams opened so far
}

type reply struct {
	status int
	body   string
}

type update struct {
	id      string
	version string
	body    map[string]any
}

func startFake(t *testing.T) *fakeEngine {
	t.Helper()
	dir, err := os.MkdirTemp("", "swarm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fakeEngine{
		sock:        filepath.Join(dir, "docker.sock"),
		apiVersion:  "1.41",
		minVersion:  "1.12",
		nodes:       fixture(t, "nodes.json"),
		tasks:       fixture(t, "tasks.json"),
		services:    fixture(t, "services.json"),
		override:    map[string]reply{},
		events:      make(chan string, 16),
		dropStreams: make(chan struct{}),
	}
	l, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/_ping", f.ping)
	mux.HandleFunc("GET /{v}/tasks", f.versioned(func(w http.ResponseWriter, r *http.Request) {
		if f.onTaskList != nil {
			f.onTaskList(f)
		}
		writeJSON(w, f.filterTasks(r))
	}))
	mux.HandleFunc("GET /{v}/nodes", f.versioned(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, f.nodes) }))
	mux.HandleFunc("GET /{v}/nodes/{id}", f.versioned(func(w http.ResponseWriter, r *http.Request) {
		if n := f.node(r.PathValue("id")); n != nil {
			writeJSON(w, n)
			return
		}
		writeError(w, http.StatusNotFound, "node "+r.PathValue("id")+" not found")
	}))
	mux.HandleFunc("GET /{v}/services", f.versioned(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, f.services) }))
	mux.HandleFunc("POST /{v}/nodes/{id}/update", f.versioned(f.updateNode))
	mux.HandleFunc("GET /{v}/events", f.streamEvents)
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return f
}

// fixture reads testdata/name, keeping numbers exact.
func fixture(t *testing.T, name string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out []map[string]any
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

// ping answers the client's version negotiation (HEAD, else GET /_ping).
func (f *fakeEngine) ping(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
	w.Header().Set("Api-Version", f.apiVersion)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if r.Method == http.MethodGet {
		fmt.Fprint(w, "OK")
	}
}

// versioned records the request, answers overrides, and refuses a version
// outside the engine's range the way dockerd does; h runs with the lock held.
func (f *fakeEngine) versioned(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
		v := strings.TrimPrefix(r.PathValue("v"), "v")
		if older(v, f.minVersion) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("client version %s is too old. Minimum supported API version is %s, please upgrade your client to a newer version", v, f.minVersion))
			return
		}
		if older(f.apiVersion, v) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("client version %s is too new. Maximum supported API version is %s", v, f.apiVersion))
			return
		}
		if rep, ok := f.override[strings.TrimPrefix(r.URL.Path, "/"+r.PathValue("v"))]; ok {
			w.WriteHeader(rep.status)
			fmt.Fprint(w, rep.body)
			return
		}
		h(w, r)
	}
}

// older compares API versions ("1.41" < "1.44").
func older(a, b string) bool {
	var amaj, amin, bmaj, bmin int
	fmt.Sscanf(a, "%d.%d", &amaj, &amin)
	fmt.Sscanf(b, "%d.%d", &bmaj, &bmin)
	return amaj < bmaj || amaj == bmaj && amin < bmin
}

// filterTasks applies the "desired-state" and "node" filters.
func (f *fakeEngine) filterTasks(r *http.Request) []map[string]any {
	var filt map[string]map[string]bool
	if s := r.URL.Query().Get("filters"); s != "" {
		if err := json.Unmarshal([]byte(s), &filt); err != nil {
			panic(fmt.Sprintf("fake engine: filters %q: %v", s, err))
		}
	}
	out := []map[string]any{}
	for _, t := range f.tasks {
		if ds := filt["desired-state"]; ds != nil && !ds[str(t, "DesiredState")] {
			continue
		}
		if ns := filt["node"]; ns != nil && !ns[str(t, "NodeID")] {
			continue
		}
		out = append(out, t)
	}
	return out
}

func (f *fakeEngine) updateNode(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	n := f.node(id)
	if n == nil {
		writeError(w, http.StatusNotFound, "node "+id+" not found")
		return
	}
	var spec map[string]any
	dec := json.NewDecoder(r.Body)
	dec.UseNumber()
	if err := dec.Decode(&spec); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	version := r.URL.Query().Get("version")
	f.updates = append(f.updates, update{id: id, version: version, body: spec})
	v, _ := strconv.Atoi(version)
	if f.beforeUpdate != nil {
		if rep := f.beforeUpdate(f, id, v); rep != nil {
			writeError(w, rep.status, rep.body)
			return
		}
	}
	if v != nodeVersion(n) {
		writeError(w, http.StatusInternalServerError, "rpc error: code = Unknown desc = update out of sequence")
		return
	}
	n["Spec"] = spec
	bumpVersion(n)
	if f.onUpdate != nil {
		f.onUpdate(f, id)
	}
}

func (f *fakeEngine) streamEvents(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
	f.streams++
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-f.dropStreams:
			return
		case line := <-f.events:
			fmt.Fprintln(w, line)
			w.(http.Flusher).Flush()
		}
	}
}

// Accessors; the caller holds f.mu or the server is idle.

func (f *fakeEngine) node(id string) map[string]any {
	for _, n := range f.nodes {
		if n["ID"] == id {
			return n
		}
	}
	return nil
}

func (f *fakeEngine) task(id string) map[string]any {
	for _, t := range f.tasks {
		if t["ID"] == id {
			return t
		}
	}
	return nil
}

func nodeVersion(n map[string]any) int {
	v, _ := n["Version"].(map[string]any)["Index"].(json.Number).Int64()
	return int(v)
}

func bumpVersion(n map[string]any) {
	n["Version"] = map[string]any{"Index": json.Number(strconv.Itoa(nodeVersion(n) + 1))}
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

func status(t map[string]any) map[string]any {
	return t["Status"].(map[string]any)
}

// with runs fn with the lock held.
func (f *fakeEngine) with(fn func(f *fakeEngine)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// count is how many requests matched prefix ("GET /v1.41/tasks").
func (f *fakeEngine) count(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.requests {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

func (f *fakeEngine) allRequests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

func (f *fakeEngine) openStreams() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.streams
}

// pendingTask is a task the scheduler could not place, in the fixtures' shape.
func pendingTask(id string, cpuNanos, mem int64, constraints ...string) map[string]any {
	placement := map[string]any{}
	if len(constraints) > 0 {
		placement["Constraints"] = constraints
	}
	return map[string]any{
		"ID": id, "Version": map[string]any{"Index": json.Number("200")}, "ServiceID": "y6qu8e0u2e4q6u8e0u2e4q6u8", "Slot": json.Number("2"),
		"Spec": map[string]any{
			"ContainerSpec": map[string]any{"Image": "redis:7"},
			"Resources": map[string]any{"Limits": map[string]any{},
				"Reservations": map[string]any{"NanoCPUs": cpuNanos, "MemoryBytes": mem}},
			"Placement": placement,
		},
		"Status": map[string]any{
			"Timestamp": time.Now().UTC().Format(time.RFC3339Nano), "State": "pending",
			"Message": "pending task scheduling", "Err": "no suitable node (insufficient resources on 3 nodes)",
		},
		"DesiredState": "running",
	}
}

// nodeEvent is a Swarm node event as GET /events streams it.
func nodeEvent(id, name, action string) string {
	return fmt.Sprintf(`{"Type":"node","Action":%q,"Actor":{"ID":%q,"Attributes":{"name":%q}},"scope":"swarm","time":%d,"timeNano":%d}`,
		action, id, name, time.Now().Unix(), time.Now().UnixNano())
}
