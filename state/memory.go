package state

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
)

// Memory is a Backend held in memory, for embedders that keep the document
// elsewhere (a Pulumi resource's outputs): seed it with NewMemory, run the
// engine, then store Snapshot. Locking behaves as in File, within this
// process.
type Memory struct {
	mu       sync.Mutex
	stored   *State // nil: nothing stored yet
	previous *State // the version before the last Write
	lock     *LockInfo
}

var _ Backend = (*Memory)(nil)

// NewMemory returns a backend holding a copy of initial (nil for none).
// A seed built in code with Version 0 is taken as the current version.
func NewMemory(initial *State) *Memory {
	s := initial.Clone()
	if s != nil && s.Version == 0 {
		s.Version = Version
	}
	return &Memory{stored: s}
}

// Snapshot returns a deep copy of the stored state, or nil if none.
func (m *Memory) Snapshot() *State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stored.Clone()
}

// Previous returns a deep copy of the version before the last Write, or nil.
func (m *Memory) Previous() *State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.previous.Clone()
}

func (m *Memory) Read(ctx context.Context) (*State, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stored == nil {
		return Empty(), nil
	}
	if m.stored.Version != Version {
		// A seed saved by another provision version: the same checks and
		// migrations as a file, via the same JSON form.
		raw, err := json.Marshal(m.stored)
		if err != nil {
			return nil, fmt.Errorf("read state: %w", err)
		}
		s, err := Decode(raw)
		if err != nil {
			return nil, fmt.Errorf("read state: %w", err)
		}
		return s, nil
	}
	return m.stored.Clone(), nil
}

func (m *Memory) Write(ctx context.Context, s *State) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	next, err := Next(m.stored, s)
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	m.previous, m.stored = m.stored, next
	Commit(s, next)
	return nil
}

// Lock fails at once with a *LockError if the lock is held.
func (m *Memory) Lock(ctx context.Context, info LockInfo) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("lock state: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lock != nil {
		return "", &LockError{Info: *m.lock}
	}
	if info.ID == "" {
		info.ID = NewLineage()
	}
	m.lock = &info
	return info.ID, nil
}

// Unlock releases the lock taken with id; like File's, it ignores ctx.
func (m *Memory) Unlock(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lock == nil || m.lock.ID != id {
		return fmt.Errorf("unlock state: id %q: %w", id, ErrNotLocked)
	}
	m.lock = nil
	return nil
}

// Destroy forgets the stored state and its previous version.
func (m *Memory) Destroy(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("destroy state: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stored, m.previous = nil, nil
	return nil
}
