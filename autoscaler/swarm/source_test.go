package swarm

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/provisionhq/provision/autoscaler"
)

// Node IDs of testdata/nodes.json.
const (
	idMgr1  = "p8ftg3o1x4zl8jfd6wd1ex0ra" // mgr-1: manager, ready, active
	idW9f00 = "r7yq2q5o0jz1w8m6k0b1x3n4d" // w-9f00: worker, ready, active, zone=a disk=ssd
	idW1b2c = "m2c8v1x0z9l8k7j6h5g4f3d2s" // w-1b2c: worker, ready, active, zone=b
	idW5511 = "j2k4l6n8p0r2t4v6x8z0b2d4f" // w-5511: worker, ready, drained
	idW77ee = "q9w8e7r6t5y4u3i2o1p0a9s8d" // w-77ee: worker, down
)

const (
	gib = int64(1) << 30
	mib = int64(1) << 20
)

func newSource(t *testing.T, f *fakeEngine, opts Options) *Source {
	t.Helper()
	s := New(UnixDialer(f.sock), opts)
	t.Cleanup(func() { s.Close() })
	return s
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func labels(extra map[string]string, id, host, role string) map[string]string {
	l := map[string]string{LabelID: id, LabelHostname: host, LabelRole: role, LabelOS: "linux", LabelArch: "x86_64"}
	for k, v := range extra {
		l[k] = v
	}
	return l
}

func TestSnapshot(t *testing.T) {
	t.Parallel()
	f := startFake(t)
	snap, err := newSource(t, f, Options{}).Snapshot(ctxTimeout(t, 10*time.Second))
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	pending := map[string]autoscaler.Task{}
	for _, p := range snap.Pending {
		pending[p.ID] = p
	}
	nodes := map[string]autoscaler.Node{}
	for _, n := range snap.Nodes {
		nodes[n.Name] = n
	}

	t.Run("pending", func(t *testing.T) {
		tests := []struct {
			name string
			id   string
			want *autoscaler.Task // nil: not pending
		}{
			{name: "short of resources, with its reservations", id: "b1gq0x6wq7w8f0k2z4r5t6y7u",
				want: &autoscaler.Task{ID: "b1gq0x6wq7w8f0k2z4r5t6y7u", Requests: autoscaler.Resources{MilliCPU: 8000, MemoryBytes: 16 * gib}}},
			{name: "constraints unsatisfied: node label and role become the selector", id: "a1pk3m5n7q9s1u3w5y7z9b1d3",
				want: &autoscaler.Task{ID: "a1pk3m5n7q9s1u3w5y7z9b1d3", Requests: autoscaler.Resources{MilliCPU: 500, MemoryBytes: 512 * mib},
					NodeSelector: map[string]string{"zone": "c", LabelRole: "worker"}}},
			{name: "each replica counts", id: "a2pk3m5n7q9s1u3w5y7z9b1d3",
				want: &autoscaler.Task{ID: "a2pk3m5n7q9s1u3w5y7z9b1d3", Requests: autoscaler.Resources{MilliCPU: 500, MemoryBytes: 512 * mib},
					NodeSelector: map[string]string{"zone": "c", LabelRole: "worker"}}},
			{name: "role != manager is worker; label != is kept as unsupported", id: "e1dg4e6f8h0j2l4n6p8r0t2v4",
				want: &autoscaler.Task{ID: "e1dg4e6f8h0j2l4n6p8r0t2v4", Requests: autoscaler.Resources{MilliCPU: 4000, MemoryBytes: 2 * gib},
					NodeSelector: map[string]string{LabelRole: "worker", "node.labels.disk!=hdd": "unsupported"}}},
			{name: "global service's task is pinned to its node", id: "g4mr1x0pq8w7e6r5t4y3u2i1o",
				want: &autoscaler.Task{ID: "g4mr1x0pq8w7e6r5t4y3u2i1o", Requests: autoscaler.Resources{MilliCPU: 100, MemoryBytes: 64 * mib},
					NodeSelector: map[string]string{LabelHostname: "mgr-1"}}},
			{name: "not yet seen by the scheduler is not pending", id: "f0r3sh9x8c7v6b5n4m3l2k1j0"},
			{name: "running is not pending", id: "w1eb5x4c3v2b1n0m9l8k7j6h5"},
			{name: "preparing is not pending", id: "w2eb5x4c3v2b1n0m9l8k7j6h5"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, ok := pending[tt.id]
				switch {
				case tt.want == nil && ok:
					t.Errorf("task %s is pending: %+v", tt.id, got)
				case tt.want != nil && !ok:
					t.Errorf("task %s is not pending", tt.id)
				case tt.want != nil && !reflect.DeepEqual(got, *tt.want):
					t.Errorf("pending task:\n got %+v\nwant %+v", got, *tt.want)
				}
			})
		}
		if !slices.IsSortedFunc(snap.Pending, func(a, b autoscaler.Task) int { return strings.Compare(a.ID, b.ID) }) {
			t.Errorf("Pending not sorted by ID")
		}
	})

	t.Run("nodes", func(t *testing.T) {
		tests := []struct {
			name string
			host string
			want *autoscaler.Node // nil: not a usable node
		}{
			{name: "manager: reservations of what runs there; a pending pinned task is not one", host: "mgr-1",
				want: &autoscaler.Node{Name: "mgr-1", Manager: true,
					Allocatable: autoscaler.Resources{MilliCPU: 2000, MemoryBytes: 4112375808},
					Allocated:   autoscaler.Resources{MilliCPU: 1950, MemoryBytes: 256 * mib},
					Labels:      labels(nil, idMgr1, "mgr-1", "manager"),
					Tasks: []autoscaler.Task{{ID: "t1rf8k7j6h5g4f3d2s1a0z9x8", Requests: autoscaler.Resources{MilliCPU: 1950, MemoryBytes: 256 * mib},
						NodeSelector: map[string]string{LabelRole: "manager"}}}}},
			{name: "worker: running and preparing tasks count; a global task counts but does not move; stopped tasks do not count", host: "w-9f00",
				want: &autoscaler.Node{Name: "w-9f00",
					Allocatable: autoscaler.Resources{MilliCPU: 4000, MemoryBytes: 8232394752},
					Allocated:   autoscaler.Resources{MilliCPU: 1000 + 1000 + 1500 + 100, MemoryBytes: gib + gib + 2*gib + 64*mib},
					Labels:      labels(map[string]string{"zone": "a", "disk": "ssd", "engine.labels.provision.pool": "general"}, idW9f00, "w-9f00", "worker"),
					Tasks: []autoscaler.Task{
						{ID: "d1bq2w3e4r5t6y7u8i9o0p1a2", Requests: autoscaler.Resources{MilliCPU: 1500, MemoryBytes: 2 * gib}, NodeSelector: map[string]string{"disk": "ssd"}},
						{ID: "w1eb5x4c3v2b1n0m9l8k7j6h5", Requests: autoscaler.Resources{MilliCPU: 1000, MemoryBytes: gib}},
						{ID: "w2eb5x4c3v2b1n0m9l8k7j6h5", Requests: autoscaler.Resources{MilliCPU: 1000, MemoryBytes: gib}},
					}}},
			{name: "worker with only a global task and one shutting down: nothing to move", host: "w-1b2c",
				want: &autoscaler.Node{Name: "w-1b2c",
					Allocatable: autoscaler.Resources{MilliCPU: 2000, MemoryBytes: 4112375808},
					Allocated:   autoscaler.Resources{MilliCPU: 100, MemoryBytes: 64 * mib},
					Labels:      labels(map[string]string{"zone": "b"}, idW1b2c, "w-1b2c", "worker")}},
			{name: "drained node is left out", host: "w-5511"},
			{name: "down node is left out, with the tasks it last reported", host: "w-77ee"},
			{name: "paused node is left out", host: "w-3c4d"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, ok := nodes[tt.host]
				switch {
				case tt.want == nil && ok:
					t.Errorf("node %s is in the snapshot: %+v", tt.host, got)
				case tt.want != nil && !ok:
					t.Errorf("node %s is not in the snapshot", tt.host)
				case tt.want != nil && !reflect.DeepEqual(got, *tt.want):
					t.Errorf("node:\n got %+v\nwant %+v", got, *tt.want)
				}
			})
		}
		var names []string
		for _, n := range snap.Nodes {
			names = append(names, n.Name)
		}
		if want := []string{"mgr-1", "w-1b2c", "w-9f00"}; !slices.Equal(names, want) {
			t.Errorf("nodes = %v, want %v in name order", names, want)
		}
	})

	t.Run("the decision core reads it as intended", func(t *testing.T) {
		// A pool of 16-CPU workers in zone c: big and both api replicas
		// fit it; edge's `!=` label and the pinned global task do not.
		pools := []autoscaler.PoolShape{{Name: "large", Provider: "docker", Max: 10,
			Allocatable: autoscaler.Resources{MilliCPU: 16000, MemoryBytes: 32 * gib},
			Labels:      map[string]string{"zone": "c", LabelRole: "worker", LabelOS: "linux"}}}
		dec := (&autoscaler.Planner{}).Decide(autoscaler.Demand{Pending: snap.Pending, Nodes: snap.Nodes, Pools: pools})
		if len(dec.ScaleUps) != 1 || dec.ScaleUps[0].Tasks != 3 {
			t.Errorf("scale-ups = %+v, want one for big and the two api replicas", dec.ScaleUps)
		}
		var unsched []string
		for _, u := range dec.Unschedulable {
			unsched = append(unsched, u.TaskIDs...)
			if !strings.Contains(u.Reason, "node.labels.disk!=hdd") && !strings.Contains(u.Reason, "node.hostname=mgr-1") {
				t.Errorf("unschedulable reason %q names neither the unsupported constraint nor the pinned node", u.Reason)
			}
		}
		slices.Sort(unsched)
		if want := []string{"e1dg4e6f8h0j2l4n6p8r0t2v4", "g4mr1x0pq8w7e6r5t4y3u2i1o"}; !slices.Equal(unsched, want) {
			t.Errorf("unschedulable = %v, want %v", unsched, want)
		}
	})

	t.Run("one request per list, at API 1.41 (negotiated once)", func(t *testing.T) {
		want := []string{
			"HEAD /_ping",
			`GET /v1.41/tasks?filters=%7B%22desired-state%22%3A%7B%22running%22%3Atrue%7D%7D`,
			"GET /v1.41/nodes",
			"GET /v1.41/services",
		}
		if got := f.allRequests(); !slices.Equal(got, want) {
			t.Errorf("requests:\n got %q\nwant %q", got, want)
		}
	})
}

func TestSnapshotErrors(t *testing.T) {
	t.Parallel()
	notManager := `{"message":"This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again."}`
	tests := []struct {
		name     string
		setup    func(f *fakeEngine)
		noEngine bool
		want     []string
		wantIs   func(error) bool // the errdefs class callers act on
	}{
		{name: "malformed JSON", setup: func(f *fakeEngine) { f.override["/tasks"] = reply{200, `[{"ID":"x","Status":`} },
			want: []string{"list swarm tasks", "unexpected EOF"}},
		{name: "an object where a list belongs", setup: func(f *fakeEngine) { f.override["/nodes"] = reply{200, `{"ID":"x"}`} },
			want: []string{"list swarm nodes", "cannot unmarshal object"}},
		{name: "not a manager", setup: func(f *fakeEngine) { f.override["/nodes"] = reply{503, notManager} },
			want:   []string{"list swarm nodes", "This node is not a swarm manager"},
			wantIs: cerrdefs.IsUnavailable},
		{name: "error body that is not JSON", setup: func(f *fakeEngine) { f.override["/services"] = reply{500, "upstream broke\n"} },
			want: []string{"list swarm services", "upstream broke"}, wantIs: cerrdefs.IsInternal},
		{name: "engine older than the client supports", setup: func(f *fakeEngine) { f.apiVersion = "1.30" },
			want: []string{"engine API version", "API version 1.30 is not supported"}},
		{name: "no engine at the socket", noEngine: true,
			want: []string{"engine API version", "no such file or directory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := startFake(t)
			if tt.setup != nil {
				f.with(tt.setup)
			}
			dial := UnixDialer(f.sock)
			if tt.noEngine {
				dial = UnixDialer(filepath.Join(t.TempDir(), "missing.sock"))
			}
			s := New(dial, Options{})
			defer s.Close()
			_, err := s.Snapshot(ctxTimeout(t, 10*time.Second))
			if err == nil {
				t.Fatal("Snapshot succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q, want it to contain %q", err, w)
				}
			}
			if tt.wantIs != nil && !tt.wantIs(err) {
				t.Errorf("err = %#v, not of the expected errdefs class", err)
			}
		})
	}
}

// TestDialErrorIsKept: the client reports a failed dial as "Cannot connect
// to the Docker daemon"; the dial's own reason must still reach the log.
func TestDialErrorIsKept(t *testing.T) {
	t.Parallel()
	dial := func(context.Context) (net.Conn, error) {
		return nil, errors.New("mgr-1: dial unix socket /var/run/docker.sock over ssh: ssh: rejected: administratively prohibited")
	}
	s := New(dial, Options{})
	defer s.Close()
	_, err := s.Snapshot(ctxTimeout(t, 10*time.Second))
	if err == nil || !strings.Contains(err.Error(), "administratively prohibited") {
		t.Errorf("err = %v, want the dial's reason in it", err)
	}
}

func TestAPIVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		engineMin string
		engineMax string
		pinned    string
		wantPath  string
		wantAsked bool // GET /version was called
	}{
		{name: "engine speaks 1.41 (Docker 20.10)", engineMin: "1.12", engineMax: "1.41", wantPath: "/v1.41/", wantAsked: true},
		{name: "newer engine: its highest", engineMin: "1.24", engineMax: "1.47", wantPath: "/v1.47/", wantAsked: true},
		{name: "engine that dropped 1.41 (Docker 29)", engineMin: "1.44", engineMax: "1.52", wantPath: "/v1.52/", wantAsked: true},
		{name: "pinned version, no negotiation", engineMin: "1.12", engineMax: "1.41", pinned: "v1.40", wantPath: "/v1.40/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := startFake(t)
			f.with(func(f *fakeEngine) { f.apiVersion, f.minVersion = tt.engineMax, tt.engineMin })
			s := newSource(t, f, Options{APIVersion: tt.pinned})
			for range 2 {
				if _, err := s.Snapshot(ctxTimeout(t, 10*time.Second)); err != nil {
					t.Fatalf("Snapshot: %v", err)
				}
			}
			versionCalls := 0
			for _, r := range f.allRequests() {
				if r == "HEAD /_ping" {
					versionCalls++
					continue
				}
				if !strings.Contains(r, tt.wantPath) {
					t.Errorf("request %q, want the path under %s", r, tt.wantPath)
				}
			}
			if want := map[bool]int{true: 1, false: 0}[tt.wantAsked]; versionCalls != want {
				t.Errorf("HEAD /_ping called %d times over two snapshots, want %d", versionCalls, want)
			}
		})
	}
}

func TestConstraintSelector(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		constraints []string
		want        map[string]string
	}{
		{name: "none", want: nil},
		{name: "node label", constraints: []string{"node.labels.zone==a"}, want: map[string]string{"zone": "a"}},
		{name: "spaces and prefix case as Swarm allows; label key case kept",
			constraints: []string{"  Node.Labels.Zone == a "}, want: map[string]string{"Zone": "a"}},
		{name: "label with dots in its key", constraints: []string{"node.labels.provision.pool==gpu"}, want: map[string]string{"provision.pool": "gpu"}},
		{name: "role", constraints: []string{"node.role==Worker"}, want: map[string]string{LabelRole: "worker"}},
		{name: "role != manager is worker", constraints: []string{"node.role != manager"}, want: map[string]string{LabelRole: "worker"}},
		{name: "role != worker is manager", constraints: []string{"node.role!=worker"}, want: map[string]string{LabelRole: "manager"}},
		{name: "node attributes", constraints: []string{"node.hostname==w-1", "node.id==abc", "node.platform.os==linux", "node.platform.arch==aarch64"},
			want: map[string]string{LabelHostname: "w-1", LabelID: "abc", LabelOS: "linux", LabelArch: "aarch64"}},
		{name: "engine label", constraints: []string{"engine.labels.region==eu"}, want: map[string]string{"engine.labels.region": "eu"}},
		{name: "label != is unsupported, kept", constraints: []string{"node.labels.disk != hdd"}, want: map[string]string{"node.labels.disk!=hdd": "unsupported"}},
		{name: "hostname != is unsupported, kept", constraints: []string{"node.hostname!=w-1"}, want: map[string]string{"node.hostname!=w-1": "unsupported"}},
		{name: "node.ip is unsupported", constraints: []string{"node.ip==10.0.0.0/8"}, want: map[string]string{"node.ip==10.0.0.0/8": "unsupported"}},
		{name: "unknown key is unsupported (Swarm never matches it)", constraints: []string{"zone==a"}, want: map[string]string{"zone==a": "unsupported"}},
		{name: "role that does not exist", constraints: []string{"node.role==leader"}, want: map[string]string{"node.role==leader": "unsupported"}},
		{name: "no operator", constraints: []string{"node.labels.zone"}, want: map[string]string{"node.labels.zone": "unsupported"}},
		{name: "empty value", constraints: []string{"node.labels.zone=="}, want: map[string]string{"node.labels.zone==": "unsupported"}},
		{name: "contradicting constraints cannot be met", constraints: []string{"node.labels.zone==a", "node.labels.zone==b"},
			want: map[string]string{"zone": "a", "node.labels.zone==b": "unsupported"}},
		{name: "repeated constraint is one", constraints: []string{"node.role==worker", "node.role!=manager"}, want: map[string]string{LabelRole: "worker"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := constraintSelector(tt.constraints); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("constraintSelector(%q) = %v, want %v", tt.constraints, got, tt.want)
			}
		})
	}
}
