package state_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/provisionhq/provision/state"
)

func TestLockErrorMessage(t *testing.T) {
	t.Parallel()
	since := time.Date(2026, 11, 24, 13, 0, 0, 0, time.UTC)
	const tail = "; wait for it to finish, or if that process is gone the lock is released automatically"
	tests := []struct {
		name string
		info state.LockInfo
		want string
	}{
		{"full", state.LockInfo{Who: "root@host", PID: 1234, Operation: "up", Created: since},
			`state is locked by root@host (pid 1234, "up") since 2026-11-24T13:00:00Z` + tail},
		{"local time shown in UTC", state.LockInfo{Who: "root@host", PID: 1, Operation: "down", Created: since.In(time.FixedZone("X", 3600))},
			`state is locked by root@host (pid 1, "down") since 2026-11-24T13:00:00Z` + tail},
		{"unknown holder", state.LockInfo{}, "state is locked by another process (holder unknown)" + tail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := error(&state.LockError{Info: tt.info})
			if err.Error() != tt.want {
				t.Errorf("got  %s\nwant %s", err, tt.want)
			}
			if !errors.Is(err, state.ErrLocked) || errors.Is(err, state.ErrNotLocked) {
				t.Error("LockError must match ErrLocked and only it")
			}
		})
	}
}

func TestNewLockInfo(t *testing.T) {
	t.Parallel()
	info := state.NewLockInfo("up")
	if info.ID == "" || info.Who == "" || info.PID == 0 || info.Created.IsZero() || info.Operation != "up" {
		t.Errorf("NewLockInfo: %+v", info)
	}
}

func TestCancelledContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	backends := map[string]state.Backend{"file": newFile(t), "memory": state.NewMemory(nil)}
	for name, b := range backends {
		if _, err := b.Read(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("%s Read: %v", name, err)
		}
		if err := b.Write(ctx, &state.State{}); !errors.Is(err, context.Canceled) {
			t.Errorf("%s Write: %v", name, err)
		}
		if _, err := b.Lock(ctx, state.NewLockInfo("up")); !errors.Is(err, context.Canceled) {
			t.Errorf("%s Lock: %v", name, err)
		}
		// Unlock must work after an interrupt cancelled the apply's context.
		id, err := b.Lock(t.Context(), state.NewLockInfo("up"))
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Unlock(ctx, id); err != nil {
			t.Errorf("%s Unlock with a cancelled ctx: %v", name, err)
		}
	}
}
