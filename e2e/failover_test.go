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

// TestAutoscaleFailover: pool A on cloudsim's AWS is out of quota, so the
// pending demand is met from pool B on cloudsim's GCP, and the log says why.
func TestAutoscaleFailover(t *testing.T) {
	requireDocker(t)
	group := fmt.Sprintf("sim%d", time.Now().UnixNano()%1e6)
	// The manager takes the only instance AWS allows.
	sim := startCloudsim(t, group, "--quota", "aws=1", "--pending", "1s")
	c := newCluster(t, "fo")
	c.env, c.group = sim.env, group
	plan := fmt.Sprintf(`version: 1
cluster:
  name: %s
ssh:
  user: admin
state:
  path: %s
autoscale:
  expander: priority
  scan_interval: 2s
  scale_down: {disabled: true}
pools:
%s  - name: aws-workers
    provider: aws
    settings: *aws
    setup: *setup
    autoscale: {min: 0, max: 3, priority: 10, cpu: 2, memory: 4GiB}
  - name: gcp-workers
    provider: gcp
    settings:
      zone: us-central1-a
      machine_type: e2-standard-2
      image: projects/debian-cloud/global/images/family/debian-12
    setup: *setup
    autoscale: {min: 0, max: 3, priority: 1, cpu: 2, memory: 4GiB}
`, c.name, filepath.Join(c.dir, "state"), awsManager)
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
	if !ok || !strings.Contains(backoff.text, "pool=aws-workers") || !strings.Contains(backoff.text, "quota") {
		t.Errorf("no backoff of aws-workers for its quota in the log:\n%s", log)
	}
	var failover timedLine
	for _, l := range log.all() {
		if l.at.After(backoff.at) && strings.Contains(l.text, "autoscaler scaling up") && strings.Contains(l.text, "gcp-workers:1") {
			failover = l
			break
		}
	}
	if failover.text == "" || !strings.Contains(failover.text, "pool aws-workers backed off until") {
		t.Errorf("the failover decision does not say why pool gcp-workers was used:\n%s", log)
	}
	t.Logf("backoff: %s", backoff.text)
	t.Logf("failover: %s", failover.text)

	machines := map[string]int{}
	for _, m := range c.status().Machines {
		machines[strings.Split(strings.TrimPrefix(m.ID, c.name+"-"), "-")[0]]++
	}
	if machines["gcp"] != 1 || machines["aws"] != 0 {
		t.Errorf("machines by pool prefix %v: want one gcp worker and no aws worker", machines)
	}
	if calls := sim.calls(t, "aws"); calls["RunInstances"] < 2 {
		t.Errorf("aws calls %v: want the worker's RunInstances refused after the manager's", calls)
	}
}
