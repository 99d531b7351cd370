// Package statetest owns the conformance suite every state.Backend passes
// (file, memory, etcd): the Backend contract as a table of behaviours,
// tested once.
package statetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisionhq/provision/state"
)

// Run runs the suite. newBackend returns a fresh, empty backend for each
// case; cases run in parallel, so backends must not share storage.
func Run(t *testing.T, newBackend func(t *testing.T) state.Backend) {
	t.Helper()
	cases := []struct {
		name string
		test func(t *testing.T, b state.Backend)
	}{
		{"EmptyRead", testEmptyRead},
		{"RoundTrip", testRoundTrip},
		{"SerialIncreases", testSerialIncreases},
		{"LineageStable", testLineageStable},
		{"StaleWriteRefused", testStaleWrite},
		{"OtherLineageRefused", testOtherLineage},
		{"InvalidRefused", testInvalid},
		{"SecondLockFails", testSecondLock},
		{"UnlockThenLock", testUnlockThenLock},
		{"UnlockWrongID", testUnlockWrongID},
		{"LockWaitTimesOut", testLockWaitTimesOut},
		{"Destroy", testDestroy},
		{"ConcurrentWriters", testConcurrentWriters},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.test(t, newBackend(t))
		})
	}
}

func machine(id string) state.Machine {
	return state.Machine{
		ID:         id,
		Pool:       "workers",
		Provider:   "docker",
		Role:       "worker",
		ProviderID: "pid-" + id,
		Address:    "10.0.0.1",
		Port:       22,
		HostKey:    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOq test",
		Phase:      state.PhaseJoined,
		CreatedAt:  time.Date(2026, 11, 24, 13, 0, 0, 0, time.UTC),
	}
}

func read(t *testing.T, b state.Backend) *state.State {
	t.Helper()
	s, err := b.Read(t.Context())
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return s
}

func write(t *testing.T, b state.Backend, s *state.State) {
	t.Helper()
	if err := b.Write(t.Context(), s); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

func lockInfo(op string) state.LockInfo {
	return state.LockInfo{Operation: op, Who: "alice@" + op + "-host", PID: 4242, Created: time.Date(2026, 11, 24, 13, 0, 0, 0, time.UTC)}
}

func testEmptyRead(t *testing.T, b state.Backend) {
	s := read(t, b)
	if s.Lineage == "" {
		t.Error("empty state has no lineage")
	}
	if len(s.Machines) != 0 {
		t.Errorf("empty state has %d machines", len(s.Machines))
	}
	if s.Version != state.Version || s.Serial != 0 {
		t.Errorf("empty state version %d serial %d, want %d and 0", s.Version, s.Serial, state.Version)
	}
}

func testRoundTrip(t *testing.T, b state.Backend) {
	s := read(t, b)
	s.Cluster = "prod"
	s.Machines = append(s.Machines, machine("m1"), machine("m2"))
	s.Machines[1].Phase = state.PhaseIntent
	s.Machines[1].Address = ""
	s.Sizes = map[string]int{"workers": 2}
	write(t, b, s)
	if s.Serial != 1 {
		t.Errorf("Write set serial %d, want 1", s.Serial)
	}
	got := read(t, b)
	if diff := compare(s, got); diff != "" {
		t.Errorf("read after write differs: %s", diff)
	}
	// The backend must not share memory with the caller.
	got.Machines[0].ID = "changed"
	got.Sizes["workers"] = 9
	if again := read(t, b); again.Machines[0].ID != "m1" || again.Sizes["workers"] != 2 {
		t.Error("mutating a read state changed the stored state")
	}
}

func testSerialIncreases(t *testing.T, b state.Backend) {
	s := read(t, b)
	var last uint64
	for i := range 3 {
		s.Machines = append(s.Machines, machine(fmt.Sprint("m", i)))
		write(t, b, s)
		if got := read(t, b).Serial; got <= last || got != s.Serial {
			t.Fatalf("write %d: stored serial %d, in hand %d, previous %d", i, got, s.Serial, last)
		}
		last = s.Serial
	}
}

func testLineageStable(t *testing.T, b state.Backend) {
	s := read(t, b)
	lineage := s.Lineage
	for range 3 {
		write(t, b, s)
		if got := read(t, b).Lineage; got != lineage {
			t.Fatalf("lineage moved from %q to %q", lineage, got)
		}
	}
}

func testStaleWrite(t *testing.T, b state.Backend) {
	s := read(t, b)
	write(t, b, s)
	old := read(t, b)
	write(t, b, s) // someone else writes after old was read
	old.Machines = append(old.Machines, machine("late"))
	err := b.Write(t.Context(), old)
	if !errors.Is(err, state.ErrStale) {
		t.Fatalf("write of a stale state: got %v, want ErrStale", err)
	}
	if got := read(t, b); got.Machine("late") != nil || got.Serial != s.Serial {
		t.Error("a refused write changed the stored state")
	}
	if old.Serial != 1 {
		t.Errorf("a refused write changed the caller's serial to %d", old.Serial)
	}
}

func testOtherLineage(t *testing.T, b state.Backend) {
	write(t, b, read(t, b))
	other := &state.State{Lineage: state.NewLineage(), Serial: 1}
	if err := b.Write(t.Context(), other); !errors.Is(err, state.ErrLineageMismatch) {
		t.Fatalf("write of another lineage: got %v, want ErrLineageMismatch", err)
	}
}

func testInvalid(t *testing.T, b state.Backend) {
	tests := []struct {
		name     string
		machines []state.Machine
	}{
		{"duplicate id", []state.Machine{machine("a"), machine("a")}},
		{"empty id", []state.Machine{machine("")}},
		{"unknown phase", []state.Machine{func() state.Machine { m := machine("a"); m.Phase = "bogus"; return m }()}},
	}
	for _, tt := range tests {
		s := read(t, b)
		s.Machines = tt.machines
		if err := b.Write(t.Context(), s); !errors.Is(err, state.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", tt.name, err)
		}
	}
}

func testSecondLock(t *testing.T, b state.Backend) {
	ctx := t.Context()
	first := lockInfo("up")
	id, err := b.Lock(ctx, first)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	t.Cleanup(func() { b.Unlock(context.WithoutCancel(ctx), id) })

	_, err = b.Lock(ctx, lockInfo("down"))
	if !errors.Is(err, state.ErrLocked) {
		t.Fatalf("second Lock: got %v, want ErrLocked", err)
	}
	var le *state.LockError
	if !errors.As(err, &le) {
		t.Fatalf("second Lock: %T is not a *LockError", err)
	}
	if le.Info.Who != first.Who || le.Info.PID != first.PID || le.Info.Operation != "up" || le.Info.ID != id {
		t.Errorf("LockError names %+v, want the first holder %+v with id %q", le.Info, first, id)
	}
	for _, want := range []string{first.Who, "pid 4242", `"up"`, "2026-11-24T13:00:00Z"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not mention %q", err, want)
		}
	}
}

func testUnlockThenLock(t *testing.T, b state.Backend) {
	ctx := t.Context()
	id, err := b.Lock(ctx, lockInfo("up"))
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	if err := b.Unlock(ctx, id); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	id2, err := b.Lock(ctx, lockInfo("down"))
	if err != nil {
		t.Fatalf("Lock after Unlock: %v", err)
	}
	if err := b.Unlock(ctx, id2); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	if err := b.Unlock(ctx, id2); !errors.Is(err, state.ErrNotLocked) {
		t.Errorf("second Unlock: got %v, want ErrNotLocked", err)
	}
}

func testUnlockWrongID(t *testing.T, b state.Backend) {
	ctx := t.Context()
	id, err := b.Lock(ctx, lockInfo("up"))
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	if err := b.Unlock(ctx, "not-"+id); !errors.Is(err, state.ErrNotLocked) {
		t.Errorf("Unlock with a wrong id: got %v, want ErrNotLocked", err)
	}
	if _, err := b.Lock(ctx, lockInfo("down")); !errors.Is(err, state.ErrLocked) {
		t.Errorf("a wrong-id Unlock released the lock: Lock got %v", err)
	}
	if err := b.Unlock(ctx, id); err != nil {
		t.Errorf("Unlock: %v", err)
	}
}

func testLockWaitTimesOut(t *testing.T, b state.Backend) {
	id, err := b.Lock(t.Context(), lockInfo("up"))
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	defer b.Unlock(t.Context(), id)
	// Long enough for one attempt to answer on a loaded machine.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_, err = state.LockWait(ctx, b, lockInfo("autoscale"))
	if !errors.Is(err, state.ErrLocked) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("LockWait on a held lock: got %v, want ErrLocked and DeadlineExceeded", err)
	}
}

func testDestroy(t *testing.T, b state.Backend) {
	s := read(t, b)
	s.Machines = append(s.Machines, machine("m1"))
	write(t, b, s)
	if err := b.Destroy(t.Context()); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	got := read(t, b)
	if len(got.Machines) != 0 || got.Serial != 0 || got.Lineage == "" || got.Lineage == s.Lineage {
		t.Errorf("after Destroy: %d machines, serial %d, lineage %q (old %q); want a fresh empty state",
			len(got.Machines), got.Serial, got.Lineage, s.Lineage)
	}
	write(t, b, got) // usable again
}

// testConcurrentWriters: writers that each lock, read, add a machine, write
// and unlock must all be seen at the end.
func testConcurrentWriters(t *testing.T, b state.Backend) {
	const writers = 8
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			errs <- addUnderLock(ctx, b, fmt.Sprint("w", i))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	got := read(t, b)
	if len(got.Machines) != writers || got.Serial != writers {
		t.Errorf("after %d locked writers: %d machines, serial %d", writers, len(got.Machines), got.Serial)
	}
}

func addUnderLock(ctx context.Context, b state.Backend, id string) error {
	lid, err := state.LockWait(ctx, b, lockInfo("up"))
	if err != nil {
		return err
	}
	defer b.Unlock(ctx, lid)
	s, err := b.Read(ctx)
	if err != nil {
		return err
	}
	s.Machines = append(s.Machines, machine(id))
	return b.Write(ctx, s)
}

// compare reports how two states differ, or "".
func compare(want, got *state.State) string {
	if want.Version != got.Version || want.Serial != got.Serial || want.Lineage != got.Lineage || want.Cluster != got.Cluster {
		return fmt.Sprintf("header %d/%d/%q/%q, want %d/%d/%q/%q",
			got.Version, got.Serial, got.Lineage, got.Cluster, want.Version, want.Serial, want.Lineage, want.Cluster)
	}
	if !maps.Equal(want.Sizes, got.Sizes) {
		return fmt.Sprintf("pool sizes %v, want %v", got.Sizes, want.Sizes)
	}
	if len(want.Machines) != len(got.Machines) {
		return fmt.Sprintf("%d machines, want %d", len(got.Machines), len(want.Machines))
	}
	for i := range want.Machines {
		w, g := want.Machines[i], got.Machines[i]
		if !w.CreatedAt.Equal(g.CreatedAt) {
			return fmt.Sprintf("machine %d created %v, want %v", i, g.CreatedAt, w.CreatedAt)
		}
		w.CreatedAt, g.CreatedAt = time.Time{}, time.Time{}
		if !reflect.DeepEqual(w, g) {
			return fmt.Sprintf("machine %d is %+v, want %+v", i, g, w)
		}
	}
	return ""
}
