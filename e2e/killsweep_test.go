package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/provisionhq/provision/providers/docker/dockertest"
)

// killInstants are when the sweep kills `up`, from the process start: every
// 0.1 s through the first 1.5 s (plan, lock, the provider's Create calls,
// the first SSH dials), then coarser through bootstrap and join.
var killInstants = func() []time.Duration {
	var d []time.Duration
	for ms := 100; ms <= 1500; ms += 100 {
		d = append(d, time.Duration(ms)*time.Millisecond)
	}
	return append(d, 2*time.Second, 3*time.Second, 4*time.Second, 6*time.Second, 8*time.Second)
}()

// fresh is how many of the first instants kill an `up` of a cluster that
// does not exist yet (its network, first manager and swarm init are in
// flight); the others kill a scale up or down of a running cluster.
const fresh = 3

// sweep is one provider setup of the kill-anywhere sweep.
type sweep struct {
	c *cluster
	// step writes the plan for iteration i and returns how many machines
	// it asks for.
	step func(i int) int
}

// TestKillAnywhere kills `up` with SIGKILL at 20 instants of its first
// seconds, on the docker provider and on cloudsim's three clouds, each
// followed by a plain `up`: every rerun converges with exactly the planned
// machines, all Ready in the swarm, and `down` leaves nothing. Runs alternate
// between growing and shrinking the cluster, so kills land in creates,
// bootstraps, joins, drains and deletes.
func TestKillAnywhere(t *testing.T) {
	requireDocker(t)
	t.Run("docker", func(t *testing.T) {
		c := newCluster(t, "sweep")
		runSweep(t, sweep{c: c, step: func(i int) int {
			workers := 1 + 2*(i%2) // 1, 3, 1, 3, ...
			c.write(1, workers)
			return 1 + workers
		}})
		if nets, _ := dockertest.Networks(t.Context(), "provision.cluster="+c.name); len(nets) != 0 {
			t.Fatalf("down left a network: %s", nets)
		}
	})
	t.Run("cloudsim", func(t *testing.T) {
		group := fmt.Sprintf("sweep%d", time.Now().UnixNano()%1e6)
		// EC2's reads are eventually consistent (its docs say so); Nova's
		// and GCE's lists show a server once its create is accepted.
		sim := startCloudsim(t, group, "--pending", "500ms", "--invisible", "aws=1s")
		c := newCluster(t, "sweepsim")
		c.env, c.group = sim.env, group
		clouds := []string{"aws", "gcp", "openstack"}
		counts := map[string]int{}
		runSweep(t, sweep{c: c, step: func(i int) int {
			// Each run grows or shrinks one cloud's pool by a batch of 2.
			cloud := clouds[i%len(clouds)]
			if i < fresh {
				counts = map[string]int{"aws": 0, "gcp": 0, "openstack": 0}
			}
			counts[cloud] = 2 - counts[cloud]
			writeCloudPlan(t, c, counts)
			return 1 + counts["aws"] + counts["gcp"] + counts["openstack"]
		}})
	})
}

func runSweep(t *testing.T, s sweep) {
	c := s.c
	var summary []string
	t.Cleanup(func() { t.Logf("kills:\n  %s", strings.Join(summary, "\n  ")) })
	for i, at := range killInstants {
		if i < fresh && i > 0 {
			c.must("down", c.plan)
			if left := c.containers(); len(left) != 0 {
				t.Fatalf("instant %v: down left %v", at, left)
			}
		}
		want := s.step(i)
		last := killUpAt(t, c, at)
		summary = append(summary, fmt.Sprintf("%-6v %s", at, last))
		start := time.Now()
		out := c.must("up", c.plan)
		t.Logf("killed at %v (%s); resumed in %v:\n%s", at, last, time.Since(start).Round(100*time.Millisecond), out)
		c.converged(want)
	}
	c.must("down", c.plan)
	deadline := time.Now().Add(time.Minute) // cloud hosts go with their instances
	for len(c.containers()) > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Second)
	}
	if left := c.containers(); len(left) != 0 {
		t.Fatalf("down left %v", left)
	}
	if _, err := os.Stat(filepath.Join(c.dir, "state", "state.json")); !os.IsNotExist(err) {
		t.Fatalf("down left state: %v", err)
	}
}

// killUpAt starts `up`, sends SIGKILL after d and returns the last line it
// printed (where the kill landed), or how it ended if it finished first.
func killUpAt(t *testing.T, c *cluster, d time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--progress", "plain", "up", c.plan)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), c.env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return fmt.Sprintf("finished first (%v): %s", err, lastLine(out.String()))
	case <-time.After(d):
	}
	_ = cmd.Process.Kill()
	<-done
	if strings.TrimSpace(out.String()) == "" {
		return "(nothing printed)"
	}
	return lastLine(out.String())
}

// writeCloudPlan writes a plan with the manager on aws and a worker pool per
// cloud of the given sizes, on cloudsim's catalog.
func writeCloudPlan(t *testing.T, c *cluster, counts map[string]int) {
	t.Helper()
	plan := fmt.Sprintf(`version: 1
cluster:
  name: %s
ssh:
  user: admin
state:
  path: %s
pools:
  - name: managers
    provider: aws
    role: manager
    count: 1
    settings: {instance_type: t3.medium, ami: ami-0d1e2b3c4a5f60718}
  - name: aws-workers
    provider: aws
    count: %d
    settings: {instance_type: t3.medium, ami: ami-0d1e2b3c4a5f60718}
  - name: gcp-workers
    provider: gcp
    count: %d
    settings: {zone: us-central1-a, machine_type: e2-standard-2, image: projects/debian-cloud/global/images/family/debian-12}
  - name: os-workers
    provider: openstack
    count: %d
    settings: {flavor: m1.small, image: debian-12}
`, c.name, filepath.Join(c.dir, "state"), counts["aws"], counts["gcp"], counts["openstack"])
	if err := os.WriteFile(c.plan, []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}
}
