package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// argvWatch samples every process's argv (what ps shows anyone on the
// machine, node containers' processes included) until stopped.
type argvWatch struct {
	mu    sync.Mutex
	seen  map[string]bool
	stop  chan struct{}
	done  chan struct{}
	polls int
}

func watchArgv() *argvWatch {
	w := &argvWatch{seen: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
			for _, f := range dirs {
				if b, err := os.ReadFile(f); err == nil && len(b) > 0 {
					w.mu.Lock()
					w.seen[string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))] = true
					w.mu.Unlock()
				}
			}
			w.mu.Lock()
			w.polls++
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *argvWatch) finish() (argvs []string, polls int) {
	close(w.stop)
	<-w.done
	for a := range w.seen {
		argvs = append(argvs, a)
	}
	return argvs, w.polls
}

// TestSecretsSweep runs up, a scale-up, an autoscaler pass and down of a
// two-cloud swarm on cloudsim with sentinel secrets: the login private key,
// the clouds' secret key and password, and the swarm's join tokens. None
// may appear in any argv on the machine during the runs, in provision's log
// lines or JSON events (at debug level), or in any file of the state
// directory. (The etcd state and the Pulumi stack export are not swept yet.)
func TestSecretsSweep(t *testing.T) {
	requireDocker(t)
	group := fmt.Sprintf("secrets%d", time.Now().UnixNano()%1e6)
	sim := startCloudsim(t, group, "--pending", "500ms")
	c := newCluster(t, "secrets")
	awsSecret, osPassword := "SENTINELawsSecret0x5ecre7", "SENTINELosPassw0rd0x5ecre7"
	c.env = append(append([]string{}, sim.env...), "AWS_SECRET_ACCESS_KEY="+awsSecret, "OS_PASSWORD="+osPassword)
	c.group = group

	keyFile, keyPEM := loginKey(t)
	// Any line of the key's body is as good as the whole key to find.
	keyLines := strings.Split(strings.TrimSpace(string(keyPEM)), "\n")
	sentinels := map[string]string{"login private key": keyLines[2], "aws secret key": awsSecret, "openstack password": osPassword}

	write := func(workers int) {
		plan := fmt.Sprintf(`version: 1
cluster:
  name: %s
ssh:
  user: admin
  key: %s
state:
  path: %s
pools:
  - name: managers
    provider: aws
    role: manager
    count: 1
    settings: {instance_type: t3.medium, ami: ami-0d1e2b3c4a5f60718}
  - name: os-workers
    provider: openstack
    count: %d
    settings: {flavor: m1.small, image: debian-12}
    autoscale: {min: 1, max: 3}
`, c.name, keyFile, filepath.Join(c.dir, "state"), workers)
		if err := os.WriteFile(c.plan, []byte(plan), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	w := watchArgv()
	var logs strings.Builder
	// Each run at debug level, its progress as JSON events (-o json) or
	// plain lines (-o text).
	run := func(output string, args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		out, err := c.run(ctx, append([]string{"-o", output, "--log-level", "debug"}, args...)...)
		logs.WriteString(out)
		if err != nil {
			t.Fatalf("provision %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	write(1)
	run("json", "up", c.plan)
	write(2)
	run("text", "up", c.plan)
	c.converged(3)
	for _, role := range []string{"worker", "manager"} {
		tok := strings.TrimSpace(lastLine(c.must("ssh", c.plan, "managers", "--", "sudo", "docker", "swarm", "join-token", "-q", role)))
		if !strings.HasPrefix(tok, "SWMTKN-") {
			t.Fatalf("%s join token = %q", role, tok)
		}
		sentinels["swarm "+role+" join token"] = tok
	}
	// The autoscaler reads the swarm's demand over SSH and decides once.
	run("text", "autoscale", "--once", c.plan)
	stateFiles := map[string][]byte{}
	entries, err := os.ReadDir(filepath.Join(c.dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if b, err := os.ReadFile(filepath.Join(c.dir, "state", e.Name())); err == nil {
			stateFiles[e.Name()] = b
		}
	}
	run("json", "down", c.plan)
	argvs, polls := w.finish()
	t.Logf("searched %d argvs (%d samples of every process), %d bytes of logs and events, %d state files",
		len(argvs), polls, logs.Len(), len(stateFiles))
	if polls < 100 || len(stateFiles) == 0 || !strings.Contains(logs.String(), `"stage"`) {
		t.Fatalf("the sweep saw too little to mean anything: %d samples, %d state files", polls, len(stateFiles))
	}

	for what, secret := range sentinels {
		for _, a := range argvs {
			if strings.Contains(a, secret) {
				t.Errorf("%s in an argv: %.200s", what, a)
			}
		}
		if strings.Contains(logs.String(), secret) {
			t.Errorf("%s in provision's output", what)
		}
		for name, b := range stateFiles {
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s in state file %s", what, name)
			}
		}
	}
}

// loginKey writes a fresh ed25519 login key for a plan's ssh.key and
// returns its path and PEM.
func loginKey(t *testing.T) (string, []byte) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(block)
	file := filepath.Join(t.TempDir(), "login")
	if err := os.WriteFile(file, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return file, keyPEM
}
