package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAutoscaleSpotFailover: cloudsim's AWS has no spot capacity, so the
// autoscaler's first choice, a spot pool, is refused with EC2's capacity
// error; the same pass fails over to the on-demand pool, and the log says
// why.
func TestAutoscaleSpotFailover(t *testing.T) {
	requireDocker(t)
	group := fmt.Sprintf("sim%d", time.Now().UnixNano()%1e6)
	sim := startCloudsim(t, group, "--no-spot-capacity", "aws", "--pending", "1s")
	c := newCluster(t, "spot")
	c.env, c.group = sim.env, group
	// A long scan interval: a failover that waited for the next pass
	// instead of running in the same one would show as a gap this long.
	const scan = 30 * time.Second
	plan := fmt.Sprintf(`version: 1
cluster:
  name: %s
ssh:
  user: admin
state:
  path: %s
autoscale:
  expander: priority
  scan_interval: %s
  scale_down: {disabled: true}
pools:
%s  - name: spot-workers
    provider: aws
    spot: true
    settings: *aws
    setup: *setup
    autoscale: {min: 0, max: 3, priority: 10, cpu: 2, memory: 4GiB}
  - name: ondemand-workers
    provider: aws
    settings: *aws
    setup: *setup
    autoscale: {min: 0, max: 3, priority: 1, cpu: 2, memory: 4GiB}
`, c.name, filepath.Join(c.dir, "state"), scan, awsManager)
	if err := os.WriteFile(c.plan, []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}
	c.must("up", c.plan)
	c.converged(1)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log, stop := c.autoscale(ctx, "--listen", "off")
	defer stop()

	// One 1.5-CPU replica fits the manager; the second goes pending.
	created := time.Now()
	c.must("ssh", c.plan, "managers", "--", "docker", "service", "create", "--detach", "--name", "hog",
		"--replicas", "2", "--reserve-cpu", "1.5", "--no-resolve-image", "provision-sleeper:local")
	waitFor(t, 4*time.Minute, "both hog tasks running", log, func() bool {
		out, err := c.run(ctx, "ssh", c.plan, "managers", "--", "docker", "service", "ps", "hog",
			"--filter", "desired-state=running", "--format", "'{{.CurrentState}}'")
		return err == nil && strings.Count(out, "Running") == 2
	})

	backoff, ok := log.first("autoscaler backs off pool", created)
	if !ok || !strings.Contains(backoff.text, "pool=spot-workers") || !strings.Contains(backoff.text, "capacity") {
		t.Errorf("no backoff of spot-workers for its capacity in the log:\n%s", log)
	}
	var failover timedLine
	for _, l := range log.all() {
		if l.at.After(backoff.at) && strings.Contains(l.text, "autoscaler scaling up") && strings.Contains(l.text, "ondemand-workers:1") {
			failover = l
			break
		}
	}
	if failover.text == "" || !strings.Contains(failover.text, "pool spot-workers backed off until") {
		t.Errorf("the failover decision does not say why pool ondemand-workers was used:\n%s", log)
	} else if gap := failover.at.Sub(backoff.at); gap >= scan/2 {
		t.Errorf("failover came %s after the backoff: not in the same pass (scan interval %s)", gap, scan)
	}
	t.Logf("backoff: %s", backoff.text)
	t.Logf("failover: %s", failover.text)

	pools := map[string]int{}
	for _, m := range c.status().Machines {
		pools[m.Pool]++
	}
	if pools["ondemand-workers"] != 1 || pools["spot-workers"] != 0 {
		t.Errorf("machines by pool %v: want one on-demand worker and no spot worker", pools)
	}
	if calls := sim.calls(t, "aws"); calls["RunInstances"] < 3 {
		t.Errorf("aws calls %v: want the manager's, the refused spot and the on-demand RunInstances", calls)
	}
}
