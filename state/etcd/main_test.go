package etcd_test

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/provisionhq/provision/state"
	"github.com/provisionhq/provision/state/etcd"
	"github.com/provisionhq/provision/state/etcd/etcdtest"
	"github.com/provisionhq/provision/state/etcd/transport"
)

// The test binary doubles as a process that holds the lock or leads until
// it is killed, so tests can see what a crash does. The helper connects to
// the endpoints in PROVISION_ETCD_ENDPOINTS, under the prefix in prefixEnv.
const (
	helperEnv = "PROVISION_ETCD_TEST_HELPER" // "lock" or "lead"
	prefixEnv = "PROVISION_ETCD_TEST_PREFIX"
	// The helper's TLS files, when the test runs over TLS.
	caEnv, certEnv, keyEnv = "PROVISION_ETCD_TEST_CA", "PROVISION_ETCD_TEST_CERT", "PROVISION_ETCD_TEST_KEY"
	// testTTL is the lease TTL of the crash tests: short to keep them fast,
	// long enough that a loaded machine still renews in time. margin covers
	// etcd's expiry sweep (every 500 ms) and scheduling on that machine.
	testTTL = 2 * time.Second
	margin  = 1500 * time.Millisecond
	cluster = "c"
)

// parallel is how many tests run at once unless -parallel says otherwise.
// They spend their time waiting for leases to expire and candidates to
// take over, not on the CPU, and the suite runs twice (plaintext and
// TLS): with the default of GOMAXPROCS (2 here) it takes 14 s, with 8 6 s.
const parallel = 8

func TestMain(m *testing.M) {
	if role := os.Getenv(helperEnv); role != "" {
		os.Exit(helper(role))
	}
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		flag.Set("test.parallel", strconv.Itoa(parallel))
	}
	os.Exit(m.Run())
}

// helper takes the lock or leadership, says "ready", and holds it until
// stdin closes (the parent is gone) or it is killed.
func helper(role string) int {
	ctx := context.Background()
	cfg := etcd.Config{Endpoints: etcd.EndpointsFromEnv(), Prefix: os.Getenv(prefixEnv), Cluster: cluster, LockTTL: testTTL}
	var err error
	if ca := os.Getenv(caEnv); ca != "" {
		cfg.TLS, err = transport.Files{CA: ca, Cert: os.Getenv(certEnv), Key: os.Getenv(keyEnv)}.Load()
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
	}
	b, err := etcd.New(ctx, cfg)
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
		etcd.EnvEndpoints+"="+strings.Join(e.srv.Endpoints, ","))
	if c := e.srv.TLS; c != nil {
		cmd.Env = append(cmd.Env, caEnv+"="+c.CAFile, certEnv+"="+c.CertFile, keyEnv+"="+c.KeyFile)
	}
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

// mode is how the tests reach etcd: the suite runs over each of modes.
type mode struct {
	name string
	tls  bool // the TLS etcd, with a client certificate
}

var (
	plaintext = mode{"plaintext", false}
	modes     = []mode{plaintext, {"tls", true}}
)

// server returns the shared etcd of mode m, held until t has finished.
func (m mode) server(t *testing.T) *etcdtest.Server {
	if m.tls {
		return etcdtest.StartTLS(t)
	}
	return &etcdtest.Server{Endpoints: etcdtest.Start(t)}
}

// eachMode runs test as parallel subtests, one per mode, each holding its
// etcd for its own parallel subtests.
func eachMode(t *testing.T, test func(t *testing.T, m mode)) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			m.server(t)
			test(t, m)
		})
	}
}

// env is one test's corner of etcd: its own key prefix, and a raw client
// to look under the backend.
type env struct {
	srv    *etcdtest.Server
	prefix string
	raw    *clientv3.Client
}

func newEnv(t *testing.T, m mode) *env {
	t.Helper()
	e := &env{srv: m.server(t), prefix: "/provision-test/" + state.NewLineage()}
	rawCfg := clientv3.Config{Endpoints: e.srv.Endpoints, DialTimeout: 5 * time.Second}
	if e.srv.TLS != nil {
		rawCfg.TLS = e.srv.TLS.Config()
	}
	raw, err := clientv3.New(rawCfg)
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
// Over TLS it reads the certificates from their files, as provision does.
func (e *env) backend(t *testing.T) *etcd.Backend {
	t.Helper()
	cfg := etcd.Config{Endpoints: e.srv.Endpoints, Prefix: e.prefix, Cluster: cluster, LockTTL: testTTL}
	if c := e.srv.TLS; c != nil {
		var err error
		if cfg.TLS, err = (transport.Files{CA: c.CAFile, Cert: c.CertFile, Key: c.KeyFile}).Load(); err != nil {
			t.Fatal(err)
		}
	}
	b, err := etcd.New(t.Context(), cfg)
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
