package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// sleeperSetup makes a tiny local image on each machine: no registry is
// reachable, so Swarm tasks need an image every node already has.
const sleeperSetup = `[ -n "$(docker images -q provision-sleeper:local)" ] || tar -ch -C / usr/bin/sleep lib64/ld-linux-x86-64.so.2 lib/x86_64-linux-gnu/libc.so.6 | docker import -c 'CMD ["/usr/bin/sleep","infinity"]' - provision-sleeper:local`

// awsManager is a plan's first pool, one aws manager, with anchors for
// the pools after it: &aws (its settings) and &setup (sleeperSetup).
var awsManager = fmt.Sprintf(`  - name: managers
    provider: aws
    role: manager
    count: 1
    settings: &aws
      instance_type: t3.medium
      ami: ami-0d1e2b3c4a5f60718
    setup: &setup
      - %q
`, sleeperSetup)

func (c *cluster) writeAutoscaled() {
	c.t.Helper()
	plan := fmt.Sprintf(`version: 1
cluster:
  name: %s
state:
  path: %s
autoscale:
  scan_interval: 2s
  cooldown: 5s
  scale_down:
    unneeded_time: 10s
    drain_timeout: 1m
pools:
  - name: managers
    provider: docker
    role: manager
    count: 1
    setup: &setup
      - %q
  - name: workers
    provider: docker
    autoscale: {min: 1, max: 3}
    setup: *setup
`, c.name, filepath.Join(c.dir, "state"), sleeperSetup)
	if err := os.WriteFile(c.plan, []byte(plan), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// logWatch collects a process's log lines with the time each arrived.
type logWatch struct {
	mu    sync.Mutex
	lines []timedLine
	done  chan struct{}
}

type timedLine struct {
	at   time.Time
	text string
}

func watchLog(r io.Reader) *logWatch {
	w := &logWatch{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			w.mu.Lock()
			w.lines = append(w.lines, timedLine{time.Now(), sc.Text()})
			w.mu.Unlock()
		}
	}()
	return w
}

// first returns the first line containing s that arrived after since.
func (w *logWatch) first(s string, since time.Time) (timedLine, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.lines {
		if !l.at.Before(since) && strings.Contains(l.text, s) {
			return l, true
		}
	}
	return timedLine{}, false
}

func (w *logWatch) all() []timedLine {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]timedLine(nil), w.lines...)
}

func (w *logWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	for _, l := range w.lines {
		b.WriteString(l.text + "\n")
	}
	return b.String()
}

// autoscale starts `provision autoscale` on the cluster's plan; stop
// interrupts it (as Ctrl-C would) and checks it exits cleanly.
func (c *cluster) autoscale(ctx context.Context, args ...string) (*logWatch, func()) {
	c.t.Helper()
	cmd := exec.CommandContext(ctx, bin, append([]string{"autoscale", c.plan}, args...)...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), c.env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	log := watchLog(stderr)
	stopped := false
	return log, func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGINT)
		<-log.done
		if err := cmd.Wait(); err != nil {
			c.t.Errorf("autoscaler exited with %v after SIGINT\n%s", err, log)
		}
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitFor(t *testing.T, limit time.Duration, what string, log fmt.Stringer, ok func() bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if ok() {
			return time.Now()
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("%s: not within %v\nautoscaler log:\n%s", what, limit, log)
	return time.Time{}
}

func httpGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAutoscaleSwarm is issue 4's acceptance run on the local provider: a
// Swarm service whose reservations exceed the cluster makes the autoscaler
// add workers, its tasks then run, and removing it shrinks the pool back to
// min through drain.
func TestAutoscaleSwarm(t *testing.T) {
	requireDocker(t)
	c := newCluster(t, "as")
	c.writeAutoscaled()
	c.must("up", c.plan)
	c.converged(2)

	addr := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log, stop := c.autoscale(ctx, "--listen", addr)
	defer stop()
	waitFor(t, 30*time.Second, "autoscaler healthy", log, func() bool {
		code, _ := httpGet("http://" + addr + "/healthz")
		return code == http.StatusOK
	})

	// Every node offers the host's CPUs (2 here); three 1.5-CPU replicas
	// fit on the two nodes twice, so one task goes pending.
	created := time.Now()
	c.must("ssh", c.plan, "managers", "--", "docker", "service", "create", "--detach", "--name", "hog",
		"--replicas", "3", "--reserve-cpu", "1.5", "--no-resolve-image", "provision-sleeper:local")

	var up timedLine
	waitFor(t, 60*time.Second, "scale-up decision", log, func() bool {
		var ok bool
		up, ok = log.first("autoscaler scaling up", created)
		return ok
	})
	reaction := up.at.Sub(created)
	t.Logf("scale-up decided %v after the service was created: %s", reaction.Round(100*time.Millisecond), up.text)
	if reaction > 15*time.Second {
		t.Errorf("autoscaler reacted in %v, want within 15s of the tasks going pending", reaction)
	}

	running := waitFor(t, 4*time.Minute, "all 3 hog tasks running", log, func() bool {
		out, err := c.run(ctx, "ssh", c.plan, "managers", "--", "docker", "service", "ps", "hog",
			"--filter", "desired-state=running", "--format", "'{{.CurrentState}}'")
		return err == nil && strings.Count(out, "Running") == 3
	})
	t.Logf("hog tasks all running %v after the service was created", running.Sub(created).Round(time.Second))
	c.converged(3)

	removed := time.Now()
	c.must("ssh", c.plan, "managers", "--", "docker", "service", "rm", "hog")
	gone := waitFor(t, 4*time.Minute, "pool back to min", log, func() bool {
		_, ok := log.first("autoscaler scaling down", removed)
		return ok && len(c.status().Machines) == 2
	})
	t.Logf("workers back to min %v after the service was removed (unneeded time 10s)", gone.Sub(removed).Round(time.Second))
	down, _ := log.first("autoscaler scaling down", removed)
	t.Logf("decision: %s", down.text)
	if early := down.at.Sub(removed); early < 10*time.Second {
		t.Errorf("a worker was chosen for removal %v after the service went, before the 10s unneeded time", early)
	}
	c.converged(2)

	code, metrics := httpGet("http://" + addr + "/metrics")
	for _, want := range []string{
		`provision_autoscaler_decisions_total{action="scale_up",result="ok"} 1`,
		`provision_autoscaler_decisions_total{action="scale_down",result="ok"} 1`,
		`provision_autoscaler_pool_size{pool="workers",state="current"}`,
		`provision_autoscaler_pending_tasks 0`,
	} {
		if code != http.StatusOK || !strings.Contains(metrics, want) {
			t.Errorf("/metrics (%d) lacks %q", code, want)
		}
	}
	stop()
}
