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

	"github.com/provisionhq/provision/state/etcd/etcdtest"
)

// TestTwoHostsOneApply: two operators run `up` of the same plan at the same
// moment from two machines (two working directories and homes, one shared
// etcd state). Exactly one applies; the other stops at once, naming the
// holder of the lock, and changes nothing. A later `up` from the second
// host finds nothing to do.
func TestTwoHostsOneApply(t *testing.T) {
	requireDocker(t)
	endpoints := etcdtest.Start(t)
	c := newCluster(t, "twohosts")
	keyFile, _ := loginKey(t)
	plan := fmt.Sprintf(`version: 1
cluster:
  name: %s
ssh:
  user: root
  key: %s
state:
  backend: etcd
  endpoints: [%s]
  prefix: /e2e/%s
pools:
  - name: managers
    provider: docker
    role: manager
    count: 1
  - name: workers
    provider: docker
    count: 1
`, c.name, keyFile, strings.Join(endpoints, ", "), c.name)
	if err := os.WriteFile(c.plan, []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}

	type result struct {
		host string
		out  string
		err  error
		took time.Duration
	}
	results := make(chan result, 2)
	start := make(chan struct{})
	for _, host := range []string{"host-a", "host-b"} {
		dir := t.TempDir() // its own working directory and home
		planCopy := filepath.Join(dir, "plan.yaml")
		if err := os.WriteFile(planCopy, []byte(plan), 0o644); err != nil {
			t.Fatal(err)
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "--progress", "plain", "up", planCopy)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "HOME="+dir)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			<-start
			began := time.Now()
			err := cmd.Run()
			results <- result{host: host, out: out.String(), err: err, took: time.Since(began)}
		}()
	}
	close(start)
	var ok, refused []result
	for range 2 {
		r := <-results
		if r.err == nil {
			ok = append(ok, r)
		} else {
			refused = append(refused, r)
		}
	}
	if len(ok) != 1 || len(refused) != 1 {
		t.Fatalf("%d runs applied and %d were refused, want one of each:\n%v", len(ok), len(refused), append(ok, refused...))
	}
	t.Logf("%s applied in %v; %s was refused in %v:\n%s", ok[0].host, ok[0].took.Round(time.Millisecond), refused[0].host, refused[0].took.Round(time.Millisecond), refused[0].out)
	if !strings.Contains(refused[0].out, "state is locked by") || !strings.Contains(refused[0].out, `"up"`) || refused[0].took > 30*time.Second {
		t.Fatalf("the refused run should stop at once naming the lock's holder; it took %v:\n%s", refused[0].took, refused[0].out)
	}
	if strings.Contains(refused[0].out, "create   start") {
		t.Fatalf("the refused run started work:\n%s", refused[0].out)
	}
	c.converged(2)
	if out := c.must("up", c.plan); !strings.Contains(out, "No changes") {
		t.Fatalf("a later up from the other host should find nothing to do:\n%s", out)
	}
}
