package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/provisionhq/provision/bootstrap"
)

// stateMachine is what these tests read of a machine in state.json.
type stateMachine struct {
	ID          string `json:"id"`
	Pool        string `json:"pool"`
	Address     string `json:"address"`
	Port        int    `json:"port"`
	HostKey     string `json:"host_key"`
	NextHostKey string `json:"next_host_key"`
	Rotated     bool   `json:"host_key_rotated"`
	Phase       string `json:"phase"`
}

func (c *cluster) stateFile() string { return filepath.Join(c.dir, "state", "state.json") }

func readMachines(path string) ([]stateMachine, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Machines []stateMachine `json:"machines"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	return doc.Machines, nil
}

// firstKeys keeps, per machine, the first host key state pinned: the key
// the machine's creation carried (its user-data, or the file the docker
// provider copies in). The engine writes it before the provider's create
// call, seconds before the first SSH connection, so a poll every 20 ms sees
// it. The state file is replaced by rename, so every read is whole.
type firstKeys struct {
	mu   sync.Mutex
	keys map[string]string
	stop chan struct{}
	done chan struct{}
}

func watchFirstKeys(path string) *firstKeys {
	w := &firstKeys{keys: map[string]string{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if ms, err := readMachines(path); err == nil {
				w.mu.Lock()
				for _, m := range ms {
					if _, ok := w.keys[m.ID]; !ok && m.HostKey != "" {
						w.keys[m.ID] = m.HostKey
					}
				}
				w.mu.Unlock()
			}
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

func (w *firstKeys) close() map[string]string {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.keys
}

// upKilledDuringRotation runs `up` and kills it with SIGKILL when it logs
// the rotation step marker for the first time, checks that a rotation is
// under way in state, and returns how many.
func upKilledDuringRotation(t *testing.T, c *cluster, marker string) int {
	t.Helper()
	cmd := exec.Command(bin, "--progress", "plain", "--log-level", "debug", "up", c.plan)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), c.env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	seen, finished := make(chan struct{}), make(chan struct{})
	var log bytes.Buffer
	go func() {
		defer close(finished)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		once := false
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if !once && strings.Contains(sc.Text(), marker) {
				once = true
				_ = cmd.Process.Signal(syscall.SIGKILL)
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
		_ = cmd.Process.Kill()
		t.Fatalf("up never logged %q", marker)
	}
	<-finished
	_ = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("up was not killed during rotation (%v); its output:\n%s", cmd.ProcessState, lastLines(log.String(), 40))
	}
	ms, err := readMachines(c.stateFile())
	if err != nil {
		t.Fatal(err)
	}
	pending, rotated := 0, 0
	for _, m := range ms {
		if m.NextHostKey != "" {
			pending++
		}
		if m.Rotated {
			rotated++
		}
	}
	t.Logf("up killed %s after its start at %q: of %d machines, %d with a rotation under way, %d rotated",
		time.Since(start).Round(100*time.Millisecond), marker, len(ms), pending, rotated)
	if pending == 0 {
		t.Fatalf("no rotation under way in state after the kill; log:\n%s", lastLines(log.String(), 40))
	}
	return pending
}

// resumeUp runs `up` after a kill and checks that it finished every
// rotation the kill interrupted (pending) over the connection the pinned
// or the next key allowed.
func resumeUp(t *testing.T, c *cluster, pending int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := c.run(ctx, "--log-level", "debug", "up", c.plan)
	if err != nil {
		t.Fatalf("resumed up: %v\n%s", err, lastLines(out, 60))
	}
	var lines []string
	finished := 0
	for _, l := range strings.Split(out, "\n") {
		// Plain lines: time, machine, stage or level, text.
		if f := strings.Fields(l); len(f) > 3 && (f[2] == "info" && strings.Contains(l, "host key") || f[2] == "ssh" && f[3] == "done") {
			lines = append(lines, l)
		}
		if strings.Contains(l, "finishing an interrupted host key rotation") {
			finished++
		}
	}
	t.Logf("resumed up in %s: %s\n%s", time.Since(start).Round(100*time.Millisecond), lastLine(out), strings.Join(lines, "\n"))
	if finished != pending {
		t.Fatalf("the resumed up finished %d interrupted rotations, want %d", finished, pending)
	}
}

// checkHostKeysRotated checks every machine of c after `up`: its key is
// rotated and pinned, no rotation is left under way, the key its creation
// carried (first) is refused, the machine serves exactly the pinned key and
// keeps no staged key, and `provision ssh` reaches it.
func checkHostKeysRotated(t *testing.T, c *cluster, first map[string]string, user string, want int) {
	t.Helper()
	ms, err := readMachines(c.stateFile())
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != want {
		t.Fatalf("%d machines in state, want %d", len(ms), want)
	}
	signer, err := bootstrap.LoadSigner(filepath.Join(c.dir, "state", "id_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := bootstrap.Config{Signers: []ssh.Signer{signer}, Keepalive: -1}
	for _, m := range ms {
		old := first[m.ID]
		switch {
		case old == "":
			t.Fatalf("%s: its first pinned key was never seen in state", m.ID)
		case !m.Rotated || m.NextHostKey != "" || m.HostKey == old:
			t.Fatalf("%s: host key rotated=%v next=%q, pinned the first key again=%v", m.ID, m.Rotated, m.NextHostKey, m.HostKey == old)
		}
		tg := bootstrap.Target{Name: m.ID, Address: m.Address, Port: m.Port, User: user, HostKey: old}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		start := time.Now()
		conn, err := bootstrap.Dial(ctx, tg, cfg)
		cancel()
		if err == nil {
			conn.Close()
			t.Fatalf("%s: a connection pinning the key from its creation was accepted", m.ID)
		}
		if !errors.Is(err, bootstrap.ErrHostKeyChanged) {
			t.Fatalf("%s: dial with the old key: %v, want a host key error", m.ID, err)
		}
		refused := time.Since(start)

		tg.HostKey = m.HostKey
		ctx, cancel = context.WithTimeout(t.Context(), 30*time.Second)
		conn, err = bootstrap.Dial(ctx, tg, cfg)
		if err != nil {
			cancel()
			t.Fatalf("%s: dial with the pinned key: %v", m.ID, err)
		}
		var out bytes.Buffer
		err = conn.Run(ctx, "cat /etc/ssh/ssh_host_ed25519_key.pub; ls /etc/ssh | grep -c provision || true", nil, &out)
		conn.Close()
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", m.ID, err)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], m.HostKey) || lines[1] != "0" {
			t.Fatalf("%s: key file and leftovers on the machine:\n%s\nwant the pinned %s and no provision file in /etc/ssh", m.ID, out.String(), m.HostKey)
		}
		c.must("ssh", c.plan, m.ID, "--", "true")
		t.Logf("%s (%s): old key refused in %s; pinned key served; provision ssh ok", m.ID, m.Pool, refused.Round(time.Millisecond))
	}
}

// TestHostKeyRotationLocal: on the docker provider (examples/local.yaml's
// shape), every machine's host key is rotated on first contact; an `up`
// killed during the rotation is finished by the next.
func TestHostKeyRotationLocal(t *testing.T) {
	requireDocker(t)
	c := newCluster(t, "hk")
	c.write(1, 2)
	w := watchFirstKeys(c.stateFile())
	pending := upKilledDuringRotation(t, c, "host key rotation: next key staged on the machine and recorded")
	resumeUp(t, c, pending)
	first := w.close()
	c.converged(3)
	checkHostKeysRotated(t, c, first, "root", 3)
	if out := c.must("up", c.plan); !strings.Contains(out, "No changes") {
		t.Fatalf("an up after the rotation should change nothing:\n%s", out)
	}
}

// TestHostKeyRotationMulticloud: on cloudsim's three clouds, each pool one
// batch of 3 (one RunInstances, one bulkInsert, one Nova multi-create, so
// every machine's user-data is readable from its two siblings), the key
// from user-data opens no machine after `up`; an `up` killed during the
// rotation is finished by the next.
func TestHostKeyRotationMulticloud(t *testing.T) {
	requireDocker(t)
	group := fmt.Sprintf("hk%d", time.Now().UnixNano()%1e6)
	sim := startCloudsim(t, group, "--pending", "1s")
	c := newCluster(t, "hkmc")
	c.env, c.group = sim.env, group
	plan := fmt.Sprintf(`version: 1
cluster:
  name: %s
state:
  path: %s
ssh:
  user: admin
pools:
  - name: managers
    provider: aws
    role: manager
    count: 3
    settings:
      instance_type: t3.medium
      ami: ami-0d1e2b3c4a5f60718
  - name: gcp-workers
    provider: gcp
    count: 3
    settings:
      zone: us-central1-a
      machine_type: e2-standard-2
      image: projects/debian-cloud/global/images/family/debian-12
  - name: os-workers
    provider: openstack
    count: 3
    settings:
      flavor: m1.small
      image: debian-12
`, c.name, filepath.Join(c.dir, "state"))
	if err := os.WriteFile(c.plan, []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}
	w := watchFirstKeys(c.stateFile())
	// Killed once a machine serves its new key but state still pins the
	// old one: the next run gets in with the next key.
	pending := upKilledDuringRotation(t, c, "host key rotation: sshd reloaded")
	resumeUp(t, c, pending)
	first := w.close()
	c.converged(9)
	if gcp := sim.calls(t, "gcp"); gcp["instances.insert"] != 0 {
		t.Fatalf("gcp calls %v: the pool of 3 must be one bulkInsert", gcp)
	}
	checkHostKeysRotated(t, c, first, "admin", 9)
}
