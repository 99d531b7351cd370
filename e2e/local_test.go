// Package e2e runs the built provision binary as a user would, against real
// local machines (the docker provider) and a real Docker Swarm.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/provisionhq/provision/providers/docker/dockertest"
)

var bin string // the provision binary, built once by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "provision-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "provision")
	build := exec.Command("go", "build", "-o", bin, "../cmd/provision")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // static, as make build: it also runs in the autoscaler image
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build provision:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireDocker skips without a Docker engine, unless the environment says
// one must be there (CI sets PROVISION_REQUIRE_DOCKER=1): then it fails.
func requireDocker(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: skipped with -short")
	}
	dockertest.Require(t)
}

// cluster is one test cluster: a plan file in a temp dir, its state beside it.
type cluster struct {
	t     *testing.T
	name  string
	dir   string
	plan  string
	env   []string // extra environment for provision (cloudsim endpoints)
	group string   // docker label group of the machines' containers; name when empty
}

func newCluster(t *testing.T, prefix string) *cluster {
	dir := t.TempDir()
	c := &cluster{t: t, name: fmt.Sprintf("%s%d", prefix, time.Now().UnixNano()%1e6), dir: dir, plan: filepath.Join(dir, "plan.yaml")}
	t.Cleanup(func() {
		// Whatever happened, leave no container behind.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if out, err := c.run(ctx, "down", c.plan); err != nil {
			t.Logf("cleanup down: %v\n%s", err, out)
		}
	})
	return c
}

func (c *cluster) write(managers, workers int) {
	c.t.Helper()
	plan := fmt.Sprintf(`version: 1
cluster:
  name: %s
ssh:
  user: root
state:
  path: %s
pools:
  - name: managers
    provider: docker
    role: manager
    count: %d
  - name: workers
    provider: docker
    count: %d
`, c.name, filepath.Join(c.dir, "state"), managers, workers)
	if err := os.WriteFile(c.plan, []byte(plan), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, append([]string{"--progress", "plain"}, args...)...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), c.env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (c *cluster) must(args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	out, err := c.run(ctx, args...)
	if err != nil {
		c.t.Fatalf("provision %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// containers lists this cluster's containers by the provider's labels.
func (c *cluster) containers() []string {
	c.t.Helper()
	group := c.group
	if group == "" {
		group = c.name
	}
	names, err := dockertest.ContainerNames(c.t.Context(), "provision.cluster="+group)
	if err != nil {
		c.t.Fatalf("docker ps: %v", err)
	}
	return names
}

type status struct {
	Healthy bool `json:"healthy"`
	// Error says why the cluster's view of the machines is unknown.
	Error    string `json:"cluster_error"`
	Machines []struct {
		ID      string `json:"id"`
		Pool    string `json:"pool"`
		Role    string `json:"role"`
		Phase   string `json:"phase"`
		Cluster string `json:"cluster_status"`
	} `json:"machines"`
}

func (c *cluster) status() status {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, _ := c.run(ctx, "status", "-o", "json", c.plan)
	var s status
	if err := json.Unmarshal([]byte(lastLine(out)), &s); err != nil {
		c.t.Fatalf("status output: %v\n%s", err, out)
	}
	return s
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// swarmNodes returns `docker node ls` as the manager sees it: hostname → status.
func (c *cluster) swarmNodes() map[string]string {
	c.t.Helper()
	out := c.must("ssh", c.plan, "managers", "--", "docker", "node", "ls", "--format", "'{{.Hostname}} {{.Status}}'")
	nodes := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			nodes[f[0]] = f[1]
		}
	}
	return nodes
}

// machinesConverged asserts provision reports want healthy machines and
// there is one container for each, and returns the status.
func (c *cluster) machinesConverged(want int) status {
	c.t.Helper()
	s := c.status()
	if !s.Healthy || len(s.Machines) != want {
		c.t.Fatalf("status: healthy=%v with %d machines, want healthy with %d: %+v (cluster error: %q)", s.Healthy, len(s.Machines), want, s.Machines, s.Error)
	}
	if got := c.containers(); len(got) != want {
		c.t.Fatalf("%d containers %v, want %d (leaked or duplicated)", len(got), got, want)
	}
	return s
}

// converged asserts the cluster matches the plan: one container per machine,
// every machine joined and Ready in the swarm, nothing extra.
func (c *cluster) converged(want int) {
	c.t.Helper()
	s := c.machinesConverged(want)
	nodes := c.swarmNodes()
	if len(nodes) != want {
		c.t.Fatalf("swarm has %d nodes %v, want %d", len(nodes), nodes, want)
	}
	for _, m := range s.Machines {
		if nodes[m.ID] != "Ready" {
			c.t.Fatalf("swarm node %s is %q, want Ready (nodes: %v)", m.ID, nodes[m.ID], nodes)
		}
	}
}

// TestLocalSwarmLifecycle is the core issue's acceptance run: up, idempotent
// re-up, scale up and down with drain, host key pinning, and down.
func TestLocalSwarmLifecycle(t *testing.T) {
	requireDocker(t)
	c := newCluster(t, "e2e")
	c.write(1, 2)

	start := time.Now()
	out := c.must("up", c.plan)
	first := time.Since(start)
	t.Logf("first up: %s\n%s", first, out)
	c.converged(3)

	start = time.Now()
	out = c.must("up", c.plan)
	second := time.Since(start)
	t.Logf("second up: %s (%.1f%% of the first)\n%s", second, 100*second.Seconds()/first.Seconds(), out)
	if !strings.Contains(out, "No changes") {
		t.Fatalf("second up should say it changed nothing:\n%s", out)
	}
	if second > first/4 {
		t.Fatalf("second up took %s, more than a quarter of the first (%s)", second, first)
	}

	c.write(1, 4)
	out = c.must("plan", c.plan)
	if !strings.Contains(out, "Plan: 2 to create, 0 to delete") {
		t.Fatalf("plan for 2 → 4 workers:\n%s", out)
	}
	c.must("up", c.plan)
	c.converged(5)

	c.write(1, 1)
	out = c.must("plan", c.plan)
	if !strings.Contains(out, "0 to create, 3 to delete") {
		t.Fatalf("plan for 4 → 1 workers:\n%s", out)
	}
	out = c.must("up", c.plan)
	if strings.Count(out, "drain    done") != 3 {
		t.Fatalf("each removed worker must be drained before deletion:\n%s", out)
	}
	c.converged(2)

	// A changed host key is refused, naming both fingerprints.
	stateFile := filepath.Join(c.dir, "state", "state.json")
	orig, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(orig, &doc); err != nil {
		t.Fatal(err)
	}
	ms := doc["machines"].([]any)
	ms[0].(map[string]any)["host_key"] = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
	tampered, _ := json.Marshal(doc)
	if err := os.WriteFile(stateFile, tampered, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	out, err = c.run(ctx, "ssh", c.plan, ms[0].(map[string]any)["id"].(string), "--", "true")
	cancel()
	if err == nil || !strings.Contains(strings.ToLower(out), "host key") {
		t.Fatalf("ssh with a changed host key: err=%v, want a host key error:\n%s", err, out)
	}
	if err := os.WriteFile(stateFile, orig, 0o600); err != nil {
		t.Fatal(err)
	}

	c.must("down", c.plan)
	if got := c.containers(); len(got) != 0 {
		t.Fatalf("down left containers: %v", got)
	}
	if nets, _ := dockertest.Networks(t.Context(), "provision.cluster="+c.name); len(nets) != 0 {
		t.Fatalf("down left a network: %s", nets)
	}
	if _, err := os.Stat(filepath.Join(c.dir, "state")); !os.IsNotExist(err) {
		t.Fatalf("down left the state directory: %v", err)
	}
}

// TestKillDuringUp kills `up` with SIGKILL at several points of the pipeline,
// checks that a concurrent up fails at once on the lock, and that the next up
// converges with no leaked or duplicated machine.
func TestKillDuringUp(t *testing.T) {
	requireDocker(t)
	c := newCluster(t, "kill")
	points := []struct {
		workers int
		marker  string // kill when a progress line contains this
		sig     syscall.Signal
	}{
		{1, "create   start", syscall.SIGKILL}, // intents written, create in flight
		{2, "runtime  start", syscall.SIGKILL}, // machines exist, bootstrap running
		{3, "join     start", syscall.SIGKILL}, // runtime done, joins in flight
		{4, "runtime  start", syscall.SIGINT},  // Ctrl-C: a clean stop
	}
	for i, p := range points {
		c.write(1, p.workers)
		cmd := exec.Command(bin, "--progress", "plain", "up", c.plan)
		cmd.Dir = c.dir
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		seen := make(chan struct{})
		finished := make(chan struct{}) // the reader hit EOF: the process is gone
		var log bytes.Buffer
		go func() {
			defer close(finished)
			sc := bufio.NewScanner(stdout)
			once := false
			for sc.Scan() {
				log.WriteString(sc.Text() + "\n")
				if !once && strings.Contains(sc.Text(), p.marker) {
					once = true
					close(seen)
				}
			}
			if !once {
				close(seen)
			}
		}()
		select {
		case <-seen:
		case <-time.After(10 * time.Minute):
			t.Fatalf("point %d: never saw %q", i, p.marker)
		}
		if i == 0 {
			// A second up while one runs fails at once, naming the holder.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			start := time.Now()
			out, err := c.run(ctx, "up", c.plan)
			cancel()
			if err == nil || !strings.Contains(out, "locked") || time.Since(start) > 10*time.Second {
				t.Fatalf("concurrent up: err=%v after %s, want a fast lock error:\n%s", err, time.Since(start), out)
			}
		}
		_ = cmd.Process.Signal(p.sig)
		select {
		case <-finished:
		case <-time.After(time.Minute):
			t.Fatalf("up did not stop within a minute of %v", p.sig)
		}
		err = cmd.Wait()
		t.Logf("%v sent to up at %q; its output:\n%s", p.sig, p.marker, log.String())
		if p.sig == syscall.SIGINT {
			// Ctrl-C stops at once with a word on how to resume.
			if code := cmd.ProcessState.ExitCode(); code != 130 || !strings.Contains(log.String(), "run the same command again to resume") {
				t.Fatalf("up after Ctrl-C: exit %d (%v), want 130 and a resume hint", code, err)
			}
		}

		out := c.must("up", c.plan)
		t.Logf("resumed:\n%s", out)
		c.converged(1 + p.workers)
	}
}
