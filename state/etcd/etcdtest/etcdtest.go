// Package etcdtest owns the etcd servers that tests of the etcd state
// backend run against: a real etcd binary on loopback ports with a
// throwaway data directory, plaintext or TLS with client certificates, or
// the cluster named in PROVISION_ETCD_ENDPOINTS.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/provisionhq/provision/state/etcd"
)

// fallbackBinary is where Debian's etcd-server package installs etcd, for
// a PATH that lacks /usr/bin.
const fallbackBinary = "/usr/bin/etcd"

// startTimeout bounds the wait for a fresh etcd to report healthy.
const startTimeout = 30 * time.Second

// Server is a running etcd and what a client needs to reach it.
type Server struct {
	Endpoints []string
	// TLS is how to reach a server started with TLS; nil for plaintext.
	TLS *TLS
}

// shared are the servers of this test binary, plaintext and TLS: each
// started by the first test asking for it, stopped when the last test that
// asked has finished, so parallel tests share it and a package pays for
// one start of each.
var shared struct {
	mu    sync.Mutex
	users map[bool]int
	srv   map[bool]*server // by TLS
}

// Start returns the client endpoints of a plaintext etcd for t: the ones in
// PROVISION_ETCD_ENDPOINTS if set, else a local etcd server shared with
// the other tests of this binary, stopped in t.Cleanup once no test uses
// it. Tests give their keys a prefix of their own. With neither the
// variable nor an etcd binary, t fails: these tests never skip.
func Start(t testing.TB) []string {
	t.Helper()
	if eps := etcd.EndpointsFromEnv(); len(eps) > 0 {
		return eps
	}
	return startShared(t, false).Endpoints
}

// StartTLS returns an etcd for t that speaks TLS only and requires a
// client certificate signed by its CA (--client-cert-auth), shared with
// the other tests of this binary like Start's. It is always a local
// server, whatever PROVISION_ETCD_ENDPOINTS says: the test needs its CA.
func StartTLS(t testing.TB) *Server {
	t.Helper()
	return startShared(t, true)
}

// StartPrivate returns an etcd of t's own, with TLS or not, stopped in
// t.Cleanup: for a test that changes what the whole server does (enables
// authentication), which tests sharing a server must not see.
func StartPrivate(t testing.TB, withTLS bool) *Server {
	t.Helper()
	return startOwn(t, withTLS, loopback)
}

// StartTLSAt is StartPrivate with TLS, listening on ip rather than
// loopback, its certificate valid for ip too: for clients on other
// machines or in containers (a service in a cluster of local hosts).
func StartTLSAt(t testing.TB, ip net.IP) *Server {
	t.Helper()
	return startOwn(t, true, ip.String())
}

func startOwn(t testing.TB, withTLS bool, host string) *Server {
	t.Helper()
	srv := start(t, withTLS, host)
	t.Cleanup(func() {
		if err := srv.stop(); err != nil {
			t.Errorf("stop etcd: %v", err)
		}
	})
	return srv.public()
}

// loopback is where test servers listen unless told otherwise.
const loopback = "127.0.0.1"

func startShared(t testing.TB, withTLS bool) *Server {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv == nil {
		shared.srv, shared.users = map[bool]*server{}, map[bool]int{}
	}
	if shared.srv[withTLS] == nil {
		shared.srv[withTLS] = start(t, withTLS, loopback)
	}
	shared.users[withTLS]++
	srv := shared.srv[withTLS]
	t.Cleanup(func() {
		shared.mu.Lock()
		defer shared.mu.Unlock()
		if shared.users[withTLS]--; shared.users[withTLS] == 0 {
			if err := srv.stop(); err != nil {
				t.Errorf("stop etcd: %v", err)
			}
			delete(shared.srv, withTLS)
		}
	})
	return srv.public()
}

// start starts a server or fails t.
func start(t testing.TB, withTLS bool, host string) *server {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := startServer(t.Context(), bin, withTLS, host)
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	return srv
}

func binary() (string, error) {
	if p, err := exec.LookPath("etcd"); err == nil {
		return p, nil
	}
	if _, err := os.Stat(fallbackBinary); err == nil {
		return fallbackBinary, nil
	}
	return "", fmt.Errorf("no etcd binary in PATH or at %s: install etcd-server "+
		"(apt-get install etcd-server, or scripts/install-deps.sh), or set %s to the endpoints of a running etcd",
		fallbackBinary, etcd.EnvEndpoints)
}

type server struct {
	cmd      *exec.Cmd
	dir      string // data directory, log and certificates, removed by stop
	endpoint string
	tls      *TLS          // nil for plaintext
	exited   chan struct{} // closed when cmd has exited
}

func (s *server) public() *Server {
	return &Server{Endpoints: []string{s.endpoint}, TLS: s.tls}
}

// startServer runs etcd and waits until it is healthy. The ports are
// picked free just before etcd binds them, so another process may win one
// in between: then etcd exits at once and a new pair is tried.
func startServer(ctx context.Context, bin string, withTLS bool, host string) (*server, error) {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	var errs []error
	for range 3 {
		srv, err := launch(bin, withTLS, host)
		if err != nil {
			return nil, err
		}
		err = srv.waitHealthy(ctx)
		if err == nil {
			return srv, nil
		}
		errs = append(errs, fmt.Errorf("%w\n%s", err, srv.logTail()))
		srv.stop()
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func launch(bin string, withTLS bool, host string) (*server, error) {
	ports, err := freePorts(host, 2)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "provision-etcdtest-")
	if err != nil {
		return nil, err
	}
	scheme := "http"
	var certs *TLS
	var tlsArgs []string
	if withTLS {
		scheme = "https"
		if certs, tlsArgs, err = writeCerts(filepath.Join(dir, "tls"), net.ParseIP(host)); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("make test certificates: %w", err)
		}
	}
	client := fmt.Sprintf("%s://%s:%d", scheme, host, ports[0])
	peer := fmt.Sprintf("http://%s:%d", host, ports[1])
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	args := append([]string{
		"--name", "test",
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "test=" + peer,
		// A single member elects itself after one election timeout, and the
		// shortest lease etcd grants is 1.5 election timeouts: keep both
		// short so that tests of 1-2 s leases mean what they say.
		"--heartbeat-interval", "50", "--election-timeout", "500",
		"--logger", "zap", "--log-level", "warn",
	}, tlsArgs...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH="+runtime.GOARCH)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	srv := &server{cmd: cmd, dir: dir, endpoint: client, tls: certs, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(srv.exited)
	}()
	return srv, nil
}

// freePorts returns n ports of host that were free a moment ago.
func freePorts(host string, n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, err
		}
		defer l.Close() // held until all are picked, so they differ
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitHealthy polls /health until etcd reports a leader and a working
// store, the process exits, or ctx ends.
func (s *server) waitHealthy(ctx context.Context) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.healthy(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd at %s not healthy: %w", s.endpoint, ctx.Err())
		case <-s.exited:
			return fmt.Errorf("etcd exited: %v", s.cmd.ProcessState)
		case <-tick.C:
		}
	}
}

func (s *server) healthy(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.endpoint+"/health", nil)
	if err != nil {
		return false
	}
	hc := http.DefaultClient
	if s.tls != nil {
		hc = &http.Client{Transport: &http.Transport{TLSClientConfig: s.tls.Config()}}
		defer hc.CloseIdleConnections()
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	return resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"health":"true"`)
}

// stop asks etcd to exit, kills it if it takes too long, and removes its
// directory.
func (s *server) stop() error {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	return os.RemoveAll(s.dir)
}

func (s *server) logTail() string {
	data, err := os.ReadFile(filepath.Join(s.dir, "etcd.log"))
	if err != nil {
		return "(no etcd log: " + err.Error() + ")"
	}
	if len(data) > 4<<10 {
		data = data[len(data)-4<<10:]
	}
	return "etcd log:\n" + string(data)
}
