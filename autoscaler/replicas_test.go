package autoscaler_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/provisionhq/provision/autoscaler"
	"github.com/provisionhq/provision/plans"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/state"
	"github.com/provisionhq/provision/state/etcd"
	"github.com/provisionhq/provision/state/etcd/etcdtest"
)

// The replica test runs this test binary twice more as autoscaler replicas
// (see TestMain), so killing the leader is a real SIGKILL of a process whose
// lease then has to expire.
const replicaEnv = "PROVISION_TEST_REPLICA"

func TestMain(m *testing.M) {
	if id := os.Getenv(replicaEnv); id != "" {
		os.Exit(runReplica(id))
	}
	os.Exit(m.Run())
}

const leaseTTL = 2 * time.Second

// replicaPlan has one autoscaled pool whose machine holds two of the test's
// 1-CPU tasks.
func replicaPlan(cluster string) *plans.Plan {
	return &plans.Plan{Cluster: plans.Cluster{Name: cluster}, Pools: []plans.Pool{
		{Name: "workers", Provider: "fake", Role: providers.RoleWorker,
			Autoscale: &plans.PoolAutoscale{Min: 0, Max: 10, MilliCPU: 2000, MemoryBytes: 4 << 30}},
	}}
}

// etcdDemand is a Source whose pending tasks are a count the test writes to
// an etcd key, shared by both replicas. The cluster shows no nodes, so every
// machine the autoscaler adds stays "being created": a replica that decides
// again for the same demand has double-counted.
type etcdDemand struct {
	cli *clientv3.Client
	key string
}

func (d etcdDemand) Snapshot(ctx context.Context) (autoscaler.Snapshot, error) {
	resp, err := d.cli.Get(ctx, d.key)
	if err != nil {
		return autoscaler.Snapshot{}, err
	}
	n := 0
	if len(resp.Kvs) == 1 {
		n, _ = strconv.Atoi(string(resp.Kvs[0].Value))
	}
	var s autoscaler.Snapshot
	for i := range n {
		s.Pending = append(s.Pending, autoscaler.Task{ID: fmt.Sprint("task-", i), Requests: autoscaler.Resources{MilliCPU: 1000, MemoryBytes: 1 << 30}})
	}
	return s, nil
}

func (d etcdDemand) Watch(ctx context.Context, changed func()) error {
	for wr := range d.cli.Watch(ctx, d.key) {
		if wr.Err() == nil {
			changed()
		}
	}
	return ctx.Err()
}

func (etcdDemand) Drain(context.Context, string) error { return nil }

// stateActuator adds machines to the shared state as a successful engine
// run leaves them (joined), and reports each change on stdout.
type stateActuator struct {
	id string
	b  state.Backend
}

func (a stateActuator) Resize(ctx context.Context, _ *plans.Plan, sizes map[string]int, _ []string) error {
	lock, err := state.LockWait(ctx, a.b, state.NewLockInfo("autoscale"))
	if err != nil {
		return err
	}
	defer a.b.Unlock(context.WithoutCancel(ctx), lock)
	st, err := a.b.Read(ctx)
	if err != nil {
		return err
	}
	for pool, n := range sizes {
		have := 0
		for _, m := range st.Machines {
			if m.Pool == pool {
				have++
			}
		}
		for i := have; i < n; i++ {
			st.Machines = append(st.Machines, state.Machine{ID: fmt.Sprintf("%s-%s-%d", pool, a.id, i), Pool: pool, Provider: "fake", Role: "worker", Phase: state.PhaseJoined})
		}
	}
	if err := a.b.Write(ctx, st); err != nil {
		return err
	}
	fmt.Printf("ACT %s %v\n", a.id, sizes)
	return nil
}

// runReplica is one autoscaler replica: etcd state, etcd election, the
// real loop.
func runReplica(id string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	eps := strings.Split(os.Getenv("PROVISION_TEST_ETCD"), ",")
	cluster := os.Getenv("PROVISION_TEST_CLUSTER")
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	b, err := etcd.New(ctx, etcd.Config{Endpoints: eps, Cluster: cluster, Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer b.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cli.Close()
	loop := &autoscaler.Loop{
		Plan: replicaPlan(cluster), Source: etcdDemand{cli, "/test/" + cluster + "/pending"}, State: b,
		Actuator: stateActuator{id, b}, ScanInterval: 500 * time.Millisecond, NoScaleDown: true, Log: log,
	}
	m := autoscaler.NewMetrics()
	el := &announcer{Elector: etcd.NewElector(b, leaseTTL), id: id}
	if err := autoscaler.Lead(ctx, el, id, loop, m, log); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// announcer prints LEAD when its replica starts leading.
type announcer struct {
	*etcd.Elector
	id string
}

func (a *announcer) Campaign(ctx context.Context, identity string) (context.Context, func(), error) {
	lead, resign, err := a.Elector.Campaign(ctx, identity)
	if err == nil {
		fmt.Printf("LEAD %s\n", a.id)
	}
	return lead, resign, err
}

// replica is a running replica process and what it printed.
type replica struct {
	id   string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  []event
	done chan struct{}
}

type event struct {
	at   time.Time
	line string
}

func startReplica(t *testing.T, id string, eps []string, cluster string) *replica {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), replicaEnv+"="+id, "PROVISION_TEST_ETCD="+strings.Join(eps, ","), "PROVISION_TEST_CLUSTER="+cluster)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := os.Create(t.TempDir() + "/" + id + ".log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &replica{id: id, cmd: cmd, done: make(chan struct{})}
	go r.read(stdout)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-r.done
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(stderr.Name())
			t.Logf("replica %s log:\n%s", id, b)
		}
	})
	return r
}

func (r *replica) read(stdout io.Reader) {
	defer close(r.done)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		r.mu.Lock()
		r.out = append(r.out, event{time.Now(), sc.Text()})
		r.mu.Unlock()
	}
}

func (r *replica) events(prefix string) []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event
	for _, e := range r.out {
		if strings.HasPrefix(e.line, prefix) {
			out = append(out, e)
		}
	}
	return out
}

func waitUntil(t *testing.T, limit time.Duration, what string, ok func() bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if ok() {
			return time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v", what, limit)
	return time.Time{}
}

// TestTwoReplicas: two autoscaler processes on one etcd; exactly one leads
// and acts; SIGKILL of the leader hands over within the lease TTL; the new
// leader does not repeat the old one's decision, and acts on new demand
// exactly once.
func TestTwoReplicas(t *testing.T) {
	eps := etcdtest.Start(t)
	cluster := fmt.Sprintf("replicas%d", time.Now().UnixNano()%1e6)
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	demand := "/test/" + cluster + "/pending"
	setDemand := func(n int) {
		if _, err := cli.Put(t.Context(), demand, strconv.Itoa(n)); err != nil {
			t.Fatal(err)
		}
	}
	acts := func(rs ...*replica) []event {
		var all []event
		for _, r := range rs {
			all = append(all, r.events("ACT")...)
		}
		return all
	}

	setDemand(4) // two machines' worth
	r1 := startReplica(t, "r1", eps, cluster)
	r2 := startReplica(t, "r2", eps, cluster)
	waitUntil(t, 20*time.Second, "a replica acts on the demand", func() bool { return len(acts(r1, r2)) > 0 })
	time.Sleep(3 * leaseTTL) // time for a wrong second decision to show
	leaders := len(r1.events("LEAD")) + len(r2.events("LEAD"))
	if got := acts(r1, r2); leaders != 1 || len(got) != 1 {
		t.Fatalf("%d replicas led and %d decisions were acted on (%v), want exactly one each", leaders, len(got), got)
	}
	leader, standby := r1, r2
	if len(r2.events("LEAD")) == 1 {
		leader, standby = r2, r1
	}
	if got := acts(leader)[0].line; !strings.Contains(got, "workers:2") {
		t.Errorf("leader acted %q, want workers sized to 2 for 4 one-CPU tasks on two-CPU machines", got)
	}

	killed := time.Now()
	if err := leader.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	took := waitUntil(t, leaseTTL+5*time.Second, "the standby replica takes over", func() bool { return len(standby.events("LEAD")) == 1 }).Sub(killed)
	t.Logf("handover %v after SIGKILL of the leader (lease TTL %v)", took.Round(10*time.Millisecond), leaseTTL)
	// The lease is granted in whole seconds and etcd checks expiry at most
	// every 500 ms: allow that rounding, no more.
	if took > leaseTTL+time.Second {
		t.Errorf("handover took %v, want within the lease TTL %v (+1s of etcd's expiry granularity)", took, leaseTTL)
	}
	time.Sleep(3 * leaseTTL)
	if got := acts(standby); len(got) != 0 {
		t.Fatalf("the new leader repeated the old leader's decision: %v", got)
	}

	setDemand(6) // one machine's worth more
	waitUntil(t, 20*time.Second, "the new leader acts on new demand", func() bool { return len(acts(standby)) > 0 })
	time.Sleep(2 * leaseTTL)
	if got := acts(standby); len(got) != 1 || !strings.Contains(got[0].line, "workers:3") {
		t.Errorf("new leader acted %v, want one decision sizing workers to 3", got)
	}
}
