package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cloudsimProc is a running cloudsim with docker-backed instances.
type cloudsimProc struct {
	env  []string          // KEY=VALUE pairs that point provision at it
	urls map[string]string // cloud → base URL
}

func startCloudsim(t *testing.T, group string, args ...string) *cloudsimProc {
	t.Helper()
	dir := t.TempDir()
	simBin := filepath.Join(dir, "cloudsim")
	build := exec.Command("go", "build", "-o", simBin, "../cmd/cloudsim")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build cloudsim: %v\n%s", err, out)
	}
	envFile := filepath.Join(dir, "env.sh")
	cmd := exec.Command(simBin, append([]string{"--aws", "127.0.0.1:0", "--gcp", "127.0.0.1:0", "--openstack", "127.0.0.1:0",
		"--backing", "docker", "--group", group, "--env-file", envFile}, args...)...)
	logFile, err := os.Create(filepath.Join(dir, "cloudsim.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// SIGTERM: cloudsim removes every instance host before it exits.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			_ = cmd.Process.Kill()
			<-done
		}
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			t.Logf("cloudsim log:\n%s", b)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(envFile); err == nil && len(b) > 0 {
			p := &cloudsimProc{urls: map[string]string{}}
			sc := bufio.NewScanner(strings.NewReader(string(b)))
			for sc.Scan() {
				p.env = append(p.env, strings.Fields(strings.TrimPrefix(sc.Text(), "export "))...)
			}
			for _, kv := range p.env {
				k, v, _ := strings.Cut(kv, "=")
				switch k {
				case "AWS_ENDPOINT_URL":
					p.urls["aws"] = v
				case "PROVISION_GCP_ENDPOINT":
					p.urls["gcp"] = v
				case "OS_AUTH_URL":
					p.urls["openstack"] = strings.TrimSuffix(v, "/identity/v3")
				}
			}
			return p
		}
		if time.Now().After(deadline) {
			t.Fatal("cloudsim did not start within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *cloudsimProc) calls(t *testing.T, cloud string) map[string]int {
	t.Helper()
	resp, err := http.Get(p.urls[cloud] + "/_sim/calls")
	if err != nil {
		t.Fatalf("cloudsim %s counters: %v", cloud, err)
	}
	defer resp.Body.Close()
	var counts map[string]int
	if err := json.NewDecoder(resp.Body).Decode(&counts); err != nil {
		t.Fatal(err)
	}
	return counts
}

// writeMulticloud makes examples/multicloud.yaml c's plan: named for c,
// with its state in c's directory.
func (c *cluster) writeMulticloud() {
	c.t.Helper()
	plan, err := os.ReadFile("../examples/multicloud.yaml")
	if err != nil {
		c.t.Fatal(err)
	}
	text := strings.Replace(string(plan), "name: multi\n", fmt.Sprintf("name: %s\nstate:\n  path: %s\n", c.name, filepath.Join(c.dir, "state")), 1)
	if err := os.WriteFile(c.plan, []byte(text), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// TestMulticloudDemo runs examples/multicloud.yaml against cloudsim with 30%
// of API calls throttled and new IDs invisible for 2 s: one Swarm across
// three emulated clouds, bootstrapped over verified SSH as a non-root user;
// down deletes every instance.
func TestMulticloudDemo(t *testing.T) {
	requireDocker(t)
	group := fmt.Sprintf("sim%d", time.Now().UnixNano()%1e6)
	sim := startCloudsim(t, group, "--throttle", "0.3", "--invisible", "2s", "--pending", "1s")
	c := newCluster(t, "multi")
	c.env, c.group = sim.env, group
	c.writeMulticloud()

	out := c.must("up", c.plan)
	t.Logf("up:\n%s", out)
	c.converged(5)
	// Batch calls: the GCE pool of 2 is one bulkInsert (retried only when
	// throttled, with the same requestId), never per-machine inserts.
	gcp := sim.calls(t, "gcp")
	if gcp["instances.bulkInsert"] < 1 || gcp["instances.insert"] != 0 {
		t.Fatalf("gcp calls %v: want bulkInsert and no per-machine insert", gcp)
	}
	t.Logf("cloudsim calls: aws %v, gcp %v, openstack %v", sim.calls(t, "aws"), gcp, sim.calls(t, "openstack"))
	out = c.must("up", c.plan)
	if !strings.Contains(out, "No changes") {
		t.Fatalf("second up on cloudsim should change nothing:\n%s", out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if out, err := c.run(ctx, "down", c.plan); err != nil {
		t.Fatalf("down: %v\n%s", err, out)
	}
	// Terminated instances lose their hosts; allow the clouds a moment.
	deadline := time.Now().Add(time.Minute)
	for len(c.containers()) > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Second)
	}
	if left := c.containers(); len(left) != 0 {
		t.Fatalf("down left instances running in cloudsim: %v", left)
	}
}
