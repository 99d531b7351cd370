package etcd_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/provisionhq/provision/state"
	"github.com/provisionhq/provision/state/etcd"
	"github.com/provisionhq/provision/state/etcd/etcdtest"
)

// The test binary doubles as a process that holds the lock or leads until
// it is killed, so tests can see what a crash does. The helper connects to
// the endpoints in PROVISION_ETCD_ENDPOINTS, under the prefix in prefixEnv.
const (
	helperEnv = "PROVISION_ETCD_TEST_HELPER" // "lock" or "lead"
	prefixEnv = "PROVISION_ETCD_TEST_PREFIX"
	// testTTL is the lease TTL of the crash tests: short to keep them fast,
	// long enough that a loaded machine still renews in time. margin covers
	// etcd's expiry sweep (every 500 ms) and scheduling on that machine.
	testTTL = 2 * time.Second
	margin  = 1500 * time.Millisecond
	cluster = "c"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(helperEnv); role != "" {
		os.Exit(helper(role))
	}
	os.Exit(m.Run())
}

// helper takes the lock or leadership, says "ready", and holds it until
// stdin closes (the parent is gone) or it is killed.
func helper(role string) int {
	ctx := context.Background()
	b, err := etcd.New(ctx, etcd.Config{
		Endpoints: etcd.EndpointsFromEnv(), Prefix: os.Getenv(prefixEnv), Cluster: cluster, LockTTL: testTTL,
	})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	switch role {
	case "lock":
		_, err = b.Lock(ctx, state.LockInfo{Operation: "up", Who: "helper@subprocess", PID: os.Getpid(), Created: time.Now()})
	case "lead":
		_, _, err = etcd.NewElector(b, testTTL).Campaign(ctx, "helper")
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// startHelper runs the helper in role and waits for it to be ready.
func startHelper(t *testing.T, e *env, role string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+role, prefixEnv+"="+e.prefix,
		etcd.EnvEndpoints+"="+strings.Join(e.endpoints, ","))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		lines <- strings.TrimSpace(line)
	}()
	select {
	case line := <-lines:
		if line != "ready" {
			t.Fatalf("%s helper: %q", role, line)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("%s helper not ready after 15s", role)
	}
	return cmd
}

// env is one test's corner of etcd: its own key prefix, and a raw client
// to look under the backend.
type env struct {
	endpoints []string
	prefix    string
	raw       *clientv3.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{endpoints: etcdtest.Start(t), prefix: "/provision-test/" + state.NewLineage()}
	raw, err := clientv3.New(clientv3.Config{Endpoints: e.endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e.raw = raw
	t.Cleanup(func() {
		// Matters only on a shared etcd (PROVISION_ETCD_ENDPOINTS).
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 5*time.Second)
		defer cancel()
		raw.Delete(ctx, e.prefix+"/", clientv3.WithPrefix())
		raw.Close()
	})
	return e
}

// backend returns a new Backend, with its own connection, on e's prefix.
func (e *env) backend(t *testing.T) *etcd.Backend {
	t.Helper()
	b, err := etcd.New(t.Context(), etcd.Config{
		Endpoints: e.endpoints, Prefix: e.prefix, Cluster: cluster, LockTTL: testTTL,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// key is the full etcd key of name under the test cluster.
func (e *env) key(name string) string { return e.prefix + "/" + cluster + "/" + name }

// within waits up to d for ch to be closed or to deliver, and says how
// long that took.
func within[T any](t *testing.T, ch <-chan T, d time.Duration, what string) (T, time.Duration) {
	t.Helper()
	start := time.Now()
	select {
	case v := <-ch:
		return v, time.Since(start)
	case <-time.After(d):
		t.Fatalf("%s: not within %v", what, d)
		var zero T
		return zero, 0
	}
}
