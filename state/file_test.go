package state_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/provisionhq/provision/state"
	"github.com/provisionhq/provision/state/statetest"
)

// holdLockEnv makes the test binary a helper that holds the lock on the
// directory it names until killed or until stdin closes.
const holdLockEnv = "PROVISION_STATE_TEST_HOLD_LOCK"

func TestMain(m *testing.M) {
	if dir := os.Getenv(holdLockEnv); dir != "" {
		os.Exit(holdLock(dir))
	}
	os.Exit(m.Run())
}

func holdLock(dir string) int {
	info := state.LockInfo{Operation: "up", Who: "helper@subprocess", PID: os.Getpid(), Created: time.Now()}
	if _, err := state.NewFile(dir).Lock(context.Background(), info); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin) // parent gone or done: exit, never orphaned
	return 0
}

func newFile(t *testing.T) *state.File {
	return state.NewFile(filepath.Join(t.TempDir(), "cluster"))
}

func TestFileConformance(t *testing.T) {
	t.Parallel()
	statetest.Run(t, func(t *testing.T) state.Backend { return newFile(t) })
}

func TestFileModes(t *testing.T) {
	t.Parallel()
	f := newFile(t)
	writeN(t, f, 2)
	for _, tt := range []struct {
		name string
		want os.FileMode
	}{
		{"", 0o700 | os.ModeDir},
		{"state.json", 0o600},
		{"state.json.backup", 0o600},
	} {
		fi, err := os.Stat(filepath.Join(f.Dir(), tt.name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != tt.want {
			t.Errorf("%s: mode %v, want %v", filepath.Join(f.Dir(), tt.name), fi.Mode(), tt.want)
		}
	}
}

func TestFileBackupHoldsPreviousSerial(t *testing.T) {
	t.Parallel()
	f := newFile(t)
	writeN(t, f, 1)
	if _, err := os.Stat(filepath.Join(f.Dir(), "state.json.backup")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("first write made a backup (err %v); there was nothing to back up", err)
	}
	writeN(t, f, 2)
	var backup state.State
	data, err := os.ReadFile(filepath.Join(f.Dir(), "state.json.backup"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &backup); err != nil {
		t.Fatal(err)
	}
	if cur := read(t, f); backup.Serial != cur.Serial-1 || backup.Lineage != cur.Lineage {
		t.Errorf("backup serial %d lineage %q; current %d %q", backup.Serial, backup.Lineage, cur.Serial, cur.Lineage)
	}
}

func TestFileReadEdgeCases(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		files   map[string]string // written before Read
		wantErr error             // nil: Read succeeds
		wantMsg string
	}{
		{name: "leftover temp file ignored", files: map[string]string{"state.json.tmp-123": `{"version": 1, "ser`}},
		{name: "no machines field", files: map[string]string{"state.json": `{"version": 1, "serial": 3, "lineage": "l"}`}},
		{name: "newer version", files: map[string]string{"state.json": `{"version": 99, "serial": 3, "lineage": "l"}`},
			wantErr: state.ErrUnsupportedVersion, wantMsg: "upgrade provision"},
		{name: "no version", files: map[string]string{"state.json": `{"serial": 3}`}, wantErr: state.ErrUnsupportedVersion},
		{name: "truncated file is an error, not an empty state", files: map[string]string{"state.json": `{"version": 1, "ser`},
			wantMsg: "there is no backup"},
		{name: "truncated file names the command that restores its backup", files: map[string]string{"state.json": `{"version": 1, "ser`,
			"state.json.backup": `{"version": 1, "serial": 2, "lineage": "l"}`},
			wantMsg: "restore the previous version with: cp "},
		{name: "truncated file and a damaged backup", files: map[string]string{"state.json": `{"version": 1, "ser`,
			"state.json.backup": `{"vers`},
			wantMsg: "is damaged too"},
		{name: "unknown field", files: map[string]string{"state.json": `{"version": 1, "lineage": "l", "extra": 1}`},
			wantMsg: "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFile(t)
			os.MkdirAll(f.Dir(), 0o700)
			for name, body := range tt.files {
				if err := os.WriteFile(filepath.Join(f.Dir(), name), []byte(body), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s, err := f.Read(t.Context())
			if tt.wantErr == nil && tt.wantMsg == "" {
				if err != nil {
					t.Fatalf("Read: %v", err)
				}
				if s.Machines == nil || s.Lineage == "" {
					t.Errorf("Read gave %+v", s)
				}
				return
			}
			if err == nil {
				t.Fatalf("Read succeeded with %+v", s)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Read: %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Read: %q does not mention %q", err, tt.wantMsg)
			}
			// Write must refuse to clobber what it cannot read.
			if err := f.Write(t.Context(), &state.State{}); err == nil {
				t.Error("Write over an unreadable state succeeded")
			}
		})
	}
}

// TestFileLockSameProcess: flock locks belong to the open file, so two
// File values on one directory in one process exclude each other.
func TestFileLockSameProcess(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "c")
	a, b := state.NewFile(dir), state.NewFile(dir)
	id, err := a.Lock(t.Context(), state.NewLockInfo("up"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Lock(t.Context(), state.NewLockInfo("down")); !errors.Is(err, state.ErrLocked) {
		t.Fatalf("second File's Lock: got %v, want ErrLocked", err)
	}
	if err := b.Unlock(t.Context(), id); !errors.Is(err, state.ErrNotLocked) {
		t.Errorf("Unlock through a File that did not lock: got %v, want ErrNotLocked", err)
	}
	if err := b.Destroy(t.Context()); !errors.Is(err, state.ErrLocked) {
		t.Errorf("Destroy while another holds the lock: got %v, want ErrLocked", err)
	}
	if err := a.Unlock(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	id, err = b.Lock(t.Context(), state.NewLockInfo("down"))
	if err != nil {
		t.Fatalf("Lock after the other File unlocked: %v", err)
	}
	b.Unlock(t.Context(), id)
}

// TestFileLockOtherProcess: a lock held by another process is reported
// with its holder, and SIGKILL of that process releases it.
func TestFileLockOtherProcess(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "c")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdLockEnv+"="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("helper said %q, %v", line, err)
	}

	f := state.NewFile(dir)
	_, err = f.Lock(t.Context(), state.NewLockInfo("up"))
	var le *state.LockError
	if !errors.As(err, &le) || !errors.Is(err, state.ErrLocked) {
		t.Fatalf("Lock while another process holds it: got %v, want *LockError", err)
	}
	if le.Info.PID != cmd.Process.Pid || le.Info.Who != "helper@subprocess" || le.Info.Operation != "up" {
		t.Errorf("LockError names %+v, want the helper (pid %d)", le.Info, cmd.Process.Pid)
	}
	if want := fmt.Sprintf(`state is locked by helper@subprocess (pid %d, "up") since `, cmd.Process.Pid); !strings.HasPrefix(err.Error(), want) {
		t.Errorf("message %q, want prefix %q", err, want)
	}

	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no chance to unlock
		t.Fatal(err)
	}
	cmd.Wait()
	id, err := f.Lock(t.Context(), state.NewLockInfo("up"))
	if err != nil {
		t.Fatalf("Lock after the holder was killed: %v", err)
	}
	if err := f.Unlock(t.Context(), id); err != nil {
		t.Fatal(err)
	}
}

func TestFileDestroy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		extra    string // a caller's file kept in the dir, or ""
		leftover bool   // a crashed write's temp file
		locked   bool   // Destroy under the caller's lock
	}{
		{name: "empty dir removed"},
		{name: "temp files removed with the dir", leftover: true},
		{name: "under the caller's lock", locked: true},
		{name: "caller's files kept", extra: "id_ed25519"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFile(t)
			writeN(t, f, 2)
			if tt.extra != "" {
				os.WriteFile(filepath.Join(f.Dir(), tt.extra), []byte("key"), 0o600)
			}
			if tt.leftover {
				os.WriteFile(filepath.Join(f.Dir(), "state.json.tmp-42"), []byte("{"), 0o600)
			}
			if tt.locked {
				id, err := f.Lock(t.Context(), state.NewLockInfo("down"))
				if err != nil {
					t.Fatal(err)
				}
				defer func() {
					if err := f.Unlock(t.Context(), id); err != nil {
						t.Errorf("Unlock after Destroy: %v", err)
					}
				}()
			}
			if err := f.Destroy(t.Context()); err != nil {
				t.Fatalf("Destroy: %v", err)
			}
			entries, err := os.ReadDir(f.Dir())
			switch {
			case tt.extra == "" && !errors.Is(err, os.ErrNotExist):
				t.Errorf("dir still there: %v %v", entries, err)
			case tt.extra != "" && (len(entries) != 1 || entries[0].Name() != tt.extra):
				t.Errorf("dir holds %v, want only %s", entries, tt.extra)
			}
		})
	}
}

func writeN(t *testing.T, f *state.File, n int) {
	t.Helper()
	s := read(t, f)
	for i := range n {
		s.Machines = append(s.Machines, state.Machine{ID: fmt.Sprint("m", s.Serial, "-", i), Phase: state.PhaseIntent})
		if err := f.Write(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
}

func read(t *testing.T, b state.Backend) *state.State {
	t.Helper()
	s, err := b.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return s
}
