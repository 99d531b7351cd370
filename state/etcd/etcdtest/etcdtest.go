// Package etcdtest owns the etcd server that tests of the etcd state backend
// run against: a real etcd binary on loopback ports with a throwaway data
// directory, or the cluster named in PROVISION_ETCD_ENDPOINTS.
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

// shared is the one server of this test binary: started by the first Start,
// stopped when the last test that called Start has finished, so parallel
// tests share it and a package pays for one start.
var shared struct {
	mu    sync.Mutex
	users int
	srv   *server
}

// Start returns the client endpoints of an etcd for t: the ones in
// PROVISION_ETCD_ENDPOINTS if set, else a local etcd server shared with
// the other tests of this binary, stopped in t.Cleanup once no test uses
// it. Tests give their keys a prefix of their own. With neither the
// variable nor an etcd binary, t fails: these tests never skip.
func Start(t testing.TB) []string {
	t.Helper()
	if eps := etcd.EndpointsFromEnv(); len(eps) > 0 {
		return eps
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv == nil {
		bin, err := binary()
		if err != nil {
			t.Fatal(err)
		}
		srv, err := startServer(t.Context(), bin)
		if err != nil {
			t.Fatalf("start etcd: %v", err)
		}
		shared.srv = srv
	}
	shared.users++
	srv := shared.srv
	t.Cleanup(func() {
		shared.mu.Lock()
		defer shared.mu.Unlock()
		if shared.users--; shared.users == 0 {
			if err := srv.stop(); err != nil {
				t.Errorf("stop etcd: %v", err)
			}
			shared.srv = nil
		}
	})
	return []string{srv.endpoint}
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
	dir      string // data directory and log, removed by stop
	endpoint string
	exited   chan struct{} // closed when cmd has exited
}

// startServer runs etcd and waits until it is healthy. The ports are
// picked free just before etcd binds them, so another process may win one
// in between: then etcd exits at once and a new pair is tried.
func startServer(ctx context.Context, bin string) (*server, error) {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	var errs []error
	for range 3 {
		srv, err := launch(bin)
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

func launch(bin string) (*server, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "provision-etcdtest-")
	if err != nil {
		return nil, err
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(bin,
		"--name", "test",
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "test="+peer,
		// A single member elects itself after one election timeout, and the
		// shortest lease etcd grants is 1.5 election timeouts: keep both
		// short so that tests of 1-2 s leases mean what they say.
		"--heartbeat-interval", "50", "--election-timeout", "500",
		"--logger", "zap", "--log-level", "warn",
	)
	cmd.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH="+runtime.GOARCH)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	srv := &server{cmd: cmd, dir: dir, endpoint: client, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(srv.exited)
	}()
	return srv, nil
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
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
	resp, err := http.DefaultClient.Do(req)
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
