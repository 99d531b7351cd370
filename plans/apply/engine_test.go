package apply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisionhq/provision/bootstrap/cluster"
	"github.com/provisionhq/provision/plans"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/hostkey"
	"github.com/provisionhq/provision/providers/providertest"
	"github.com/provisionhq/provision/state"
)

// fakeProvider keeps machines in memory and counts calls.
type fakeProvider struct {
	mu        sync.Mutex
	machines  map[providers.MachineID]providers.Machine
	creates   int
	createErr map[string]error // by pool
	deleted   []providers.MachineID
	spot      map[providers.MachineID]bool // what each create asked for
}

func newFakeProvider() *fakeProvider {
	return &fakeProvider{machines: map[providers.MachineID]providers.Machine{}, createErr: map[string]error{},
		spot: map[providers.MachineID]bool{}}
}

// fakeSettings are the settings the fake accepts: like a real provider it
// refuses unknown keys, so a plan's typo fails as it would on a cloud.
type fakeSettings struct {
	Size string `json:"size"`
}

func (f *fakeProvider) Create(_ context.Context, specs []providers.MachineSpec) ([]providers.Machine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates++
	for _, s := range specs {
		if err := s.Settings.Decode(&fakeSettings{}).Err("fake"); err != nil {
			return nil, fmt.Errorf("spec %s: %w", s.ID, err)
		}
	}
	var out []providers.Machine
	for _, s := range specs {
		if err := f.createErr[s.Pool]; err != nil {
			return nil, err
		}
		f.spot[s.ID] = s.Spot
		if s.HostKey.Public == "" || len(s.HostKey.PrivatePEM) == 0 {
			return nil, fmt.Errorf("%w: spec %s has no host key", providers.ErrInvalidSpec, s.ID)
		}
		m, ok := f.machines[s.ID]
		switch {
		case !ok:
			m = providers.Machine{ID: s.ID, ProviderID: "p-" + string(s.ID), Cluster: s.Cluster, Pool: s.Pool,
				Address: "10.0.0." + fmt.Sprint(len(f.machines)+2), State: providers.StateRunning}
			f.machines[s.ID] = m
		case m.Address == "": // created, never started: a real provider finishes it
			m.Address, m.State = "10.0.0."+fmt.Sprint(len(f.machines)+2), providers.StateRunning
			f.machines[s.ID] = m
		}
		out = append(out, m)
	}
	return out, nil
}

func (f *fakeProvider) List(_ context.Context, sel providers.Selector) ([]providers.Machine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []providers.Machine
	for _, m := range f.machines {
		if m.Cluster == sel.Cluster && (sel.Pool == "" || sel.Pool == m.Pool) {
			out = append(out, m)
		}
	}
	return out, nil
}

func (f *fakeProvider) Delete(_ context.Context, ids []providers.MachineID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		delete(f.machines, id)
		f.deleted = append(f.deleted, id)
	}
	return nil
}

// TestFakeProviderConforms: the engine's tests trust the fake to behave
// like a provider (batch create in spec order, idempotent create and
// delete, list by cluster and pool, ErrInvalidSpec); the same suite every
// real provider passes proves it.
func TestFakeProviderConforms(t *testing.T) {
	t.Parallel()
	providertest.Run(t, newFakeProvider(), providertest.Options{
		Cluster:         "conform",
		Settings:        providers.Settings{"size": "small"},
		InvalidSettings: providers.Settings{"sise": "small"},
		Timeout:         time.Minute,
	})
}

func (f *fakeProvider) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.machines)
}

// fakeDriver records what the engine asked of the cluster.
type fakeDriver struct {
	mu      sync.Mutex
	calls   []string
	members map[string]string // name → role
}

func (d *fakeDriver) record(s string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, s)
}

func (d *fakeDriver) Init(_ context.Context, n cluster.Node) error {
	d.record("init " + n.Name)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.members[n.Name] = n.Role
	return nil
}
func (d *fakeDriver) Credential(_ context.Context, mgr cluster.Node, role string) (cluster.Credential, error) {
	return cluster.NewCredential("token-" + role), nil
}
func (d *fakeDriver) Join(_ context.Context, n, mgr cluster.Node, c cluster.Credential) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.members[mgr.Name]; !ok {
		return fmt.Errorf("manager %s is not initialized", mgr.Name)
	}
	if c.Secret() != "token-"+n.Role {
		return errors.New("wrong token")
	}
	d.calls = append(d.calls, "join "+n.Name)
	d.members[n.Name] = n.Role
	return nil
}
func (d *fakeDriver) Remove(_ context.Context, mgr, n cluster.Node) error {
	d.record(fmt.Sprintf("remove %s via %s reachable=%v", n.Name, mgr.Name, n.Run != nil))
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.members, n.Name)
	return nil
}
func (d *fakeDriver) Members(context.Context, cluster.Node) ([]cluster.Member, error) {
	return nil, nil
}

func (d *fakeDriver) count(prefix string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, c := range d.calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

type fakeConn struct{ name string }

func (fakeConn) Run(context.Context, string, io.Reader, io.Writer) error { return nil }
func (fakeConn) Close() error                                            { return nil }

type fakeConnector struct {
	mu     sync.Mutex
	dialed map[string]string // id → host key pinned when dialed
}

func (c *fakeConnector) Connect(_ context.Context, m state.Machine) (Conn, error) {
	if m.HostKey == "" || m.Address == "" {
		return nil, fmt.Errorf("machine %s has no host key or address", m.ID)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dialed[m.ID] = m.HostKey
	return fakeConn{m.ID}, nil
}

type fixture struct {
	engine  *Engine
	prov    *fakeProvider
	driver  *fakeDriver
	backend *state.Memory
	prepErr func(name string) error
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{prov: newFakeProvider(), driver: &fakeDriver{members: map[string]string{}}, backend: state.NewMemory(nil)}
	reg := providers.NewRegistry()
	reg.Register("fake", providers.Entry{New: func(context.Context, providers.Env) (providers.Provider, error) { return f.prov, nil }})
	n := 0
	var mu sync.Mutex
	f.engine = &Engine{
		Providers: reg,
		Backend:   f.backend,
		Connector: &fakeConnector{dialed: map[string]string{}},
		Prepare: func(ctx context.Context, m state.Machine, r cluster.Runner) error {
			if f.prepErr != nil {
				return f.prepErr(m.ID)
			}
			return nil
		},
		Driver: f.driver,
		HostKeys: func() (hostkey.Key, error) {
			mu.Lock()
			defer mu.Unlock()
			n++
			return hostkey.Key{PrivatePEM: []byte("private"), Public: fmt.Sprintf("ssh-ed25519 KEY%d", n)}, nil
		},
		Operation: "up",
	}
	return f
}

func testPlan(managers, workers int) *plans.Plan {
	return &plans.Plan{
		Cluster: plans.Cluster{Name: "t", Kind: "swarm"},
		SSH:     plans.SSH{User: "root", Port: 22},
		Pools: []plans.Pool{
			{Name: "managers", Provider: "fake", Count: managers, Role: providers.RoleManager},
			{Name: "workers", Provider: "fake", Count: workers, Role: providers.RoleWorker},
		},
	}
}

func phases(t *testing.T, b *state.Memory) map[state.Phase]int {
	t.Helper()
	st := b.Snapshot()
	out := map[state.Phase]int{}
	for _, m := range st.Machines {
		out[m.Phase]++
	}
	return out
}

func TestApplyCreatesAndJoinsThenIsNoOp(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	rep, err := f.engine.Apply(ctx, testPlan(1, 2))
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if rep.Created != 3 || f.prov.creates != 2 {
		t.Fatalf("created %d machines in %d provider calls, want 3 in 2 (one per pool)", rep.Created, f.prov.creates)
	}
	if got := phases(t, f.backend); got[state.PhaseJoined] != 3 {
		t.Fatalf("phases = %v, want 3 joined", got)
	}
	if f.driver.count("init") != 1 || f.driver.count("join") != 2 {
		t.Fatalf("driver calls = %v, want 1 init and 2 joins", f.driver.calls)
	}
	rep, err = f.engine.Apply(ctx, testPlan(1, 2))
	if err != nil {
		t.Fatalf("second apply: %v", err)
	}
	if rep.Created+rep.Deleted+rep.Resumed != 0 || rep.Unchanged != 3 || f.prov.creates != 2 {
		t.Fatalf("second apply changed something: %+v, provider creates %d", rep, f.prov.creates)
	}
}

// TestSpotReachesTheProvider: a pool's spot: true is what its provider is
// asked for, machine by machine, and only for that pool.
func TestSpotReachesTheProvider(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	plan := testPlan(1, 2)
	plan.Pools[1].Spot = true
	if _, err := f.engine.Apply(context.Background(), plan); err != nil {
		t.Fatalf("apply: %v", err)
	}
	f.prov.mu.Lock()
	defer f.prov.mu.Unlock()
	for id, spot := range f.prov.spot {
		if want := f.prov.machines[id].Pool == "workers"; spot != want {
			t.Errorf("machine %s of pool %s created with spot %v, want %v", id, f.prov.machines[id].Pool, spot, want)
		}
	}
	if len(f.prov.spot) != 3 {
		t.Errorf("%d machines created, want 3", len(f.prov.spot))
	}
}

func TestApplyScalesWorkersUpAndDown(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.engine.Apply(ctx, testPlan(1, 2)); err != nil {
		t.Fatal(err)
	}
	rep, err := f.engine.Apply(ctx, testPlan(1, 4))
	if err != nil || rep.Created != 2 {
		t.Fatalf("scale up: %+v %v", rep, err)
	}
	if f.driver.count("init") != 1 {
		t.Fatalf("the cluster was initialized again: %v", f.driver.calls)
	}
	rep, err = f.engine.Apply(ctx, testPlan(1, 1))
	if err != nil || rep.Deleted != 3 {
		t.Fatalf("scale down: %+v %v", rep, err)
	}
	if got := f.driver.count("remove"); got != 3 {
		t.Fatalf("removed from the cluster %d times, want 3 (drain before delete): %v", got, f.driver.calls)
	}
	if f.prov.count() != 2 || len(f.backend.Snapshot().Machines) != 2 {
		t.Fatalf("provider has %d machines, state %d; want 2", f.prov.count(), len(f.backend.Snapshot().Machines))
	}
	for id := range f.driver.members {
		if f.backend.Snapshot().Machine(id) == nil {
			t.Errorf("cluster still has member %s that is gone from state", id)
		}
	}
}

func TestApplyResumesAfterCrash(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		inProvider  bool                   // did the lost create reach the provider?
		address     string                 // the machine's address there ("": never started)
		state       providers.MachineState // and its state
		wantCreates int                    // provider Create calls made by the resuming apply
	}{
		{name: "create reached the provider, the machine runs: adopt", inProvider: true, address: "10.0.0.99", state: providers.StateRunning, wantCreates: 0},
		{name: "killed before the machine started: Create finishes it", inProvider: true, state: providers.StatePending, wantCreates: 1},
		// A cloud may show a pending machine an address it has not got yet.
		{name: "pending with an address: Create waits for it to run", inProvider: true, address: "10.0.0.99", state: providers.StatePending, wantCreates: 1},
		{name: "create never happened: create with the same ID", inProvider: false, wantCreates: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			ctx := context.Background()
			if _, err := f.engine.Apply(ctx, testPlan(1, 0)); err != nil {
				t.Fatal(err)
			}
			// Simulate a run killed after writing the intent of a worker.
			st := f.backend.Snapshot()
			st.Machines = append(st.Machines, state.Machine{ID: "t-workers-dead01", Pool: "workers", Provider: "fake", Role: "worker", HostKey: "ssh-ed25519 OLD", Phase: state.PhaseIntent})
			if tt.inProvider {
				f.prov.machines["t-workers-dead01"] = providers.Machine{ID: "t-workers-dead01", Cluster: "t", Pool: "workers", Address: tt.address, State: tt.state}
			}
			if err := f.backend.Write(ctx, st); err != nil {
				t.Fatal(err)
			}
			before := f.prov.creates
			rep, err := f.engine.Apply(ctx, testPlan(1, 1))
			if err != nil {
				t.Fatalf("resume: %v", err)
			}
			if got := f.prov.creates - before; got != tt.wantCreates {
				t.Errorf("provider creates = %d, want %d", got, tt.wantCreates)
			}
			if rep.Created != 0 || f.prov.count() != 2 {
				t.Errorf("report %+v, provider machines %d: want no new ID and 2 machines", rep, f.prov.count())
			}
			m := f.backend.Snapshot().Machine("t-workers-dead01")
			if m == nil || m.Phase != state.PhaseJoined || m.Address == "" {
				t.Fatalf("resumed machine = %+v, want joined with an address", m)
			}
			// Adopted, it keeps the key it was made with; created again, it
			// gets the fresh key its Create installed.
			if fresh := m.HostKey != "ssh-ed25519 OLD"; fresh != (tt.wantCreates == 1) {
				t.Errorf("host key %q after resume, want fresh=%v", m.HostKey, tt.wantCreates == 1)
			}
		})
	}
}

func TestApplyDeletesOrphansAndForgetsVanished(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.engine.Apply(ctx, testPlan(1, 1)); err != nil {
		t.Fatal(err)
	}
	f.prov.machines["t-workers-orphan"] = providers.Machine{ID: "t-workers-orphan", Cluster: "t", Pool: "workers"}
	var worker string
	for _, m := range f.backend.Snapshot().Machines {
		if m.Role == "worker" {
			worker = m.ID
		}
	}
	delete(f.prov.machines, providers.MachineID(worker)) // someone deleted it by hand
	rep, err := f.engine.Apply(ctx, testPlan(1, 1))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Orphans != 1 || rep.Forgotten != 1 || rep.Created != 1 {
		t.Fatalf("report %+v: want 1 orphan deleted, 1 vanished forgotten and recreated", rep)
	}
	if _, ok := f.prov.machines["t-workers-orphan"]; ok {
		t.Fatal("orphan still exists")
	}
}

func TestApplyErrors(t *testing.T) {
	t.Parallel()
	t.Run("quota on the worker pool keeps the manager", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.prov.createErr["workers"] = &providers.Error{Kind: providers.ErrQuota, Cloud: "fake", Location: "zone-a", Pool: "workers", Code: "InstanceLimitExceeded"}
		rep, err := f.engine.Apply(context.Background(), testPlan(1, 2))
		if rep == nil || rep.Created != 1 {
			t.Errorf("report %+v: only the manager was created", rep)
		}
		if !errors.Is(err, providers.ErrQuota) {
			t.Fatalf("err = %v, want ErrQuota", err)
		}
		if !strings.Contains(err.Error(), `pool "workers"`) || !strings.Contains(err.Error(), "zone-a") {
			t.Errorf("error %q should name the pool and zone", err)
		}
		if got := phases(t, f.backend); got[state.PhaseJoined] != 1 || got[state.PhaseIntent] != 2 {
			t.Errorf("phases = %v, want the manager joined and 2 worker intents kept for the next run", got)
		}
	})
	t.Run("a failed manager fails its joiners", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.prepErr = func(name string) error {
			if strings.Contains(name, "managers") {
				return errors.New("apt-get: exit 100")
			}
			return nil
		}
		_, err := f.engine.Apply(context.Background(), testPlan(1, 2))
		var me *MachineError
		if !errors.As(err, &me) || !strings.Contains(err.Error(), "first manager") {
			t.Fatalf("err = %v, want machine errors naming the failed first manager", err)
		}
		if f.driver.count("join") != 0 {
			t.Errorf("workers joined a cluster that has no manager: %v", f.driver.calls)
		}
	})
	t.Run("a second apply on a locked state fails at once", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		if _, err := f.backend.Lock(context.Background(), state.LockInfo{Operation: "up", Who: "alice@host"}); err != nil {
			t.Fatal(err)
		}
		_, err := f.engine.Apply(context.Background(), testPlan(1, 0))
		if !errors.Is(err, state.ErrLocked) || !strings.Contains(err.Error(), "alice@host") {
			t.Fatalf("err = %v, want a lock error naming the holder", err)
		}
	})
}

func TestDestroyRemovesEverything(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.engine.Apply(ctx, testPlan(1, 2)); err != nil {
		t.Fatal(err)
	}
	f.prov.machines["t-workers-orphan"] = providers.Machine{ID: "t-workers-orphan", Cluster: "t", Pool: "workers"}
	rep, err := f.engine.Destroy(ctx, testPlan(1, 2))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Deleted != 4 || f.prov.count() != 0 {
		t.Fatalf("deleted %d, %d left; want 4 deleted, none left", rep.Deleted, f.prov.count())
	}
	if st := f.backend.Snapshot(); st != nil {
		t.Fatalf("state still exists with %d machines", len(st.Machines))
	}
}
