package apply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/provisionhq/provision/bootstrap/cluster"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/state"
)

// fakeHost is a machine as host key rotation sees it: the key file sshd
// reads, the key its listener serves (the file as of its last reload), a
// staged key, and whether copies of its user-data are on disk.
type fakeHost struct {
	file, served, staged string
	copies               bool
	reachable            bool
}

// fakeHosts are the machines of a rotation test, and the connector that
// dials them as bootstrap.Dial does: the machine's served key must be the
// pinned one or the one being rotated in, nothing else.
type fakeHosts struct {
	mu      sync.Mutex
	hosts   map[string]*fakeHost
	n       int
	stages  int
	kill    string // "after stage", "before install", …: the step a kill hits
	killed  int
	refused int // connections refused for a key neither pinned nor next
}

var errKilled = errors.New("killed")

type hostConn struct{ id string }

func (hostConn) Run(context.Context, string, io.Reader, io.Writer) error { return nil }
func (hostConn) Close() error                                            { return nil }

func (h *fakeHosts) Connect(_ context.Context, m state.Machine) (Conn, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	host, ok := h.hosts[m.ID]
	if !ok {
		// First contact: the machine serves the key its creation carried.
		host = &fakeHost{file: m.HostKey, served: m.HostKey, copies: true, reachable: true}
		h.hosts[m.ID] = host
	}
	if !host.reachable {
		return nil, fmt.Errorf("%s: connection refused", m.ID)
	}
	if host.served != m.HostKey && (m.NextHostKey == "" || host.served != m.NextHostKey) && !slices.Contains(m.FormerHostKeys, host.served) {
		h.refused++
		return nil, fmt.Errorf("%s: host key changed: pinned %q (next %q), offered %q", m.ID, m.HostKey, m.NextHostKey, host.served)
	}
	return hostConn{m.ID}, nil
}

func (h *fakeHosts) host(r cluster.Runner) *fakeHost { return h.hosts[r.(hostConn).id] }

// step runs a rotation step's effect, with the kill the test asks for
// before or after it.
func (h *fakeHosts) step(name string, effect func()) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.kill == "before "+name {
		h.killed++
		return errKilled
	}
	effect()
	if h.kill == "after "+name {
		h.killed++
		return errKilled
	}
	return nil
}

func (h *fakeHosts) Stage(_ context.Context, r cluster.Runner) (string, error) {
	var next string
	err := h.step("stage", func() {
		h.n++
		h.stages++
		next = fmt.Sprintf("ssh-ed25519 NEXT%d", h.n)
		h.host(r).staged = next
	})
	return next, err
}

func (h *fakeHosts) Install(_ context.Context, r cluster.Runner, next string) (bool, error) {
	ok := false
	err := h.step("install", func() {
		host := h.host(r)
		switch {
		case host.file == next:
			ok = true
		case host.staged == next:
			host.file, host.staged, ok = next, "", true
		}
	})
	return ok, err
}

func (h *fakeHosts) Reload(_ context.Context, r cluster.Runner) error {
	return h.step("reload", func() { h.host(r).served = h.host(r).file })
}

func (h *fakeHosts) Scrub(_ context.Context, r cluster.Runner) error {
	return h.step("scrub", func() { h.host(r).copies, h.host(r).staged = false, "" })
}

func newRotationFixture(t *testing.T) (*fixture, *fakeHosts) {
	f := newFixture(t)
	h := &fakeHosts{hosts: map[string]*fakeHost{}}
	f.engine.Connector = h
	f.engine.HostKeyRotator = h
	return f, h
}

// checkRotated asserts every machine in state is joined and serves the key
// state pins, a rotated one, with no rotation left under way and no
// user-data copy on its disk.
func checkRotated(t *testing.T, b *state.Memory, h *fakeHosts, want int) {
	t.Helper()
	st := b.Snapshot()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(st.Machines) != want {
		t.Fatalf("%d machines in state, want %d", len(st.Machines), want)
	}
	for _, m := range st.Machines {
		host := h.hosts[m.ID]
		switch {
		case m.Phase != state.PhaseJoined:
			t.Errorf("%s is %s, want joined", m.ID, m.Phase)
		case host == nil:
			t.Errorf("%s was never dialed", m.ID)
		case !m.HostKeyRotated || m.NextHostKey != "" || !strings.Contains(m.HostKey, "NEXT"):
			t.Errorf("%s: host key %q next %q rotated %v: want a rotated key pinned, none under way", m.ID, m.HostKey, m.NextHostKey, m.HostKeyRotated)
		case host.served != m.HostKey || host.file != m.HostKey:
			t.Errorf("%s serves %q (file %q), state pins %q", m.ID, host.served, host.file, m.HostKey)
		case host.copies || host.staged != "":
			t.Errorf("%s still has user-data copies (%v) or a staged key (%q)", m.ID, host.copies, host.staged)
		}
	}
}

func TestHostKeyRotatedOnFirstContact(t *testing.T) {
	t.Parallel()
	f, h := newRotationFixture(t)
	ctx := t.Context()
	if _, err := f.engine.Apply(ctx, testPlan(1, 2)); err != nil {
		t.Fatal(err)
	}
	checkRotated(t, f.backend, h, 3)
	if h.stages != 3 || h.refused != 0 {
		t.Fatalf("%d keys staged, %d connections refused; want 3 and 0", h.stages, h.refused)
	}
	// The user-data key opens nothing any more: the engine's connector
	// refuses the machine when only that key is pinned.
	for _, m := range f.backend.Snapshot().Machines {
		old := m
		old.HostKey, old.NextHostKey = "ssh-ed25519 KEY-FROM-USER-DATA", ""
		if _, err := h.Connect(ctx, old); err == nil {
			t.Errorf("%s accepted a key other than the rotated one", m.ID)
		}
	}
	// A second run rotates nothing again.
	if _, err := f.engine.Apply(ctx, testPlan(1, 2)); err != nil {
		t.Fatal(err)
	}
	if h.stages != 3 {
		t.Fatalf("a second apply staged %d more keys", h.stages-3)
	}
}

// TestHostKeyRotationResumesAfterKill: a run killed at each point of the
// rotation leaves a state the next run connects with (the machine serves
// the pinned key or the one being rotated in, never a third), and the next
// run finishes the rotation.
func TestHostKeyRotationResumesAfterKill(t *testing.T) {
	t.Parallel()
	for _, kill := range []string{
		"after stage",    // staged on the machine, not recorded in state
		"before install", // recorded in state (NextHostKey), not installed
		"after install",  // the key file is the new one, sshd not reloaded
		"after reload",   // sshd serves the new key; old copies still there
		"after scrub",    // copies gone; the rotation not yet confirmed in state
	} {
		t.Run(kill, func(t *testing.T) {
			t.Parallel()
			f, h := newRotationFixture(t)
			ctx := t.Context()
			h.kill = kill
			if _, err := f.engine.Apply(ctx, testPlan(1, 2)); !errors.Is(err, errKilled) {
				t.Fatalf("killed apply: err = %v, want the kill", err)
			}
			st := f.backend.Snapshot()
			h.mu.Lock()
			if h.killed != 3 {
				t.Errorf("%d machines hit the kill, want 3", h.killed)
			}
			for _, m := range st.Machines {
				host := h.hosts[m.ID]
				if m.HostKeyRotated || m.Phase != state.PhaseCreated {
					t.Errorf("%s after the kill: phase %s rotated %v, want created, not rotated", m.ID, m.Phase, m.HostKeyRotated)
				}
				for what, key := range map[string]string{"serves": host.served, "has in its key file": host.file} {
					if key != m.HostKey && key != m.NextHostKey {
						t.Errorf("%s %s %q, state pins %q and next %q: the next run could not connect", m.ID, what, key, m.HostKey, m.NextHostKey)
					}
				}
			}
			h.kill = ""
			h.mu.Unlock()
			rep, err := f.engine.Apply(ctx, testPlan(1, 2))
			if err != nil {
				t.Fatalf("resumed apply: %v", err)
			}
			if rep.Resumed != 3 {
				t.Errorf("resumed %d machines, want 3", rep.Resumed)
			}
			checkRotated(t, f.backend, h, 3)
			if h.refused != 0 {
				t.Errorf("%d connections refused", h.refused)
			}
			// A key recorded before the kill is installed as it is; only a
			// key the state never heard of is staged again.
			wantStages := 3
			if kill == "after stage" {
				wantStages = 6
			}
			if h.stages != wantStages {
				t.Errorf("%d keys staged, want %d", h.stages, wantStages)
			}
		})
	}
}

// TestHostKeyRotationRestagesALostKey: a recorded next key the machine no
// longer holds (its staging lost) is replaced by a new one.
func TestHostKeyRotationRestagesALostKey(t *testing.T) {
	t.Parallel()
	f, h := newRotationFixture(t)
	ctx := t.Context()
	h.kill = "before install"
	if _, err := f.engine.Apply(ctx, testPlan(1, 0)); !errors.Is(err, errKilled) {
		t.Fatalf("err = %v, want the kill", err)
	}
	h.mu.Lock()
	for _, host := range h.hosts {
		host.staged = ""
	}
	h.kill = ""
	h.mu.Unlock()
	if _, err := f.engine.Apply(ctx, testPlan(1, 0)); err != nil {
		t.Fatal(err)
	}
	checkRotated(t, f.backend, h, 1)
	if h.stages != 2 {
		t.Fatalf("%d keys staged, want 2", h.stages)
	}
}

// keeper is a provider whose machines keep their own host keys, as static
// hosts do.
type keeper struct{ *fakeProvider }

func (keeper) KeepsHostKeys() bool { return true }

var _ providers.HostKeyKeeper = keeper{}

func TestHostKeyKeptByAKeeperProvider(t *testing.T) {
	t.Parallel()
	f, h := newRotationFixture(t)
	reg := providers.NewRegistry()
	reg.Register("fake", providers.Entry{New: func(context.Context, providers.Env) (providers.Provider, error) { return keeper{f.prov}, nil }})
	f.engine.Providers = reg
	if _, err := f.engine.Apply(t.Context(), testPlan(1, 1)); err != nil {
		t.Fatal(err)
	}
	if h.stages != 0 {
		t.Fatalf("%d host keys staged on machines that keep their own", h.stages)
	}
	for _, m := range f.backend.Snapshot().Machines {
		if m.HostKeyRotated || m.NextHostKey != "" || m.Phase != state.PhaseJoined {
			t.Errorf("%s: %+v, want joined with its own key", m.ID, m)
		}
	}
}

// TestHostKeyRotatedOnJoinedMachines: machines joined before rotation
// existed get theirs on the next run, beside its other work; one that does
// not answer is a warning, not a failed run.
func TestHostKeyRotatedOnJoinedMachines(t *testing.T) {
	t.Parallel()
	f, h := newRotationFixture(t)
	ctx := t.Context()
	f.engine.HostKeyRotator = nil // an older provision
	if _, err := f.engine.Apply(ctx, testPlan(1, 2)); err != nil {
		t.Fatal(err)
	}
	st := f.backend.Snapshot()
	var down string
	h.mu.Lock()
	for _, m := range st.Machines {
		if m.HostKeyRotated {
			t.Fatalf("%s rotated without a rotator", m.ID)
		}
		if m.Role == "worker" && down == "" {
			down = m.ID
			h.hosts[m.ID].reachable = false
		}
	}
	h.mu.Unlock()
	f.engine.HostKeyRotator = h
	rep, err := f.engine.Apply(ctx, testPlan(1, 2))
	if err != nil {
		t.Fatalf("apply with an unreachable joined machine: %v", err)
	}
	if rep.Unchanged != 3 || len(rep.Failed) != 0 {
		t.Fatalf("report %+v: want 3 unchanged, none failed", rep)
	}
	if h.stages != 2 {
		t.Fatalf("%d keys staged, want 2 (the unreachable machine keeps its key)", h.stages)
	}
	h.mu.Lock()
	h.hosts[down].reachable = true
	h.mu.Unlock()
	if _, err := f.engine.Apply(ctx, testPlan(1, 2)); err != nil {
		t.Fatal(err)
	}
	checkRotated(t, f.backend, h, 3)
}

// TestCreateAfterADeadRunAcceptsItsKey: a run died in its provider's
// create, after the cloud had the machines with that run's host keys. The
// next run pins fresh keys, and the provider hands back the dead run's
// machines (an idempotent create, instances List did not show yet): first
// contact accepts the dead run's key, the rotation replaces it, and no
// earlier key is accepted afterwards.
func TestCreateAfterADeadRunAcceptsItsKey(t *testing.T) {
	t.Parallel()
	f, h := newRotationFixture(t)
	ctx := t.Context()
	f.prov.createErr["workers"] = errors.New("killed in the middle of the create")
	if _, err := f.engine.Apply(ctx, testPlan(1, 2)); err == nil {
		t.Fatal("apply with a failing create succeeded")
	}
	dead := map[string]string{}
	h.mu.Lock()
	for _, m := range f.backend.Snapshot().Machines {
		if m.Phase == state.PhaseIntent {
			dead[m.ID] = m.HostKey
			h.hosts[m.ID] = &fakeHost{file: m.HostKey, served: m.HostKey, copies: true, reachable: true}
		}
	}
	h.mu.Unlock()
	if len(dead) != 2 {
		t.Fatalf("%d intents left by the failed create, want 2", len(dead))
	}
	delete(f.prov.createErr, "workers")
	if _, err := f.engine.Apply(ctx, testPlan(1, 2)); err != nil {
		t.Fatalf("apply after the dead run: %v", err)
	}
	checkRotated(t, f.backend, h, 3)
	for _, m := range f.backend.Snapshot().Machines {
		if len(m.FormerHostKeys) != 0 {
			t.Errorf("%s keeps former keys %v after its rotation", m.ID, m.FormerHostKeys)
		}
		if old, ok := dead[m.ID]; ok {
			stale := m
			stale.HostKey, stale.NextHostKey = old, ""
			if _, err := h.Connect(ctx, stale); err == nil {
				t.Errorf("%s still accepts the dead run's key", m.ID)
			}
		}
	}
}
