package state

import (
	"crypto/rand"
	"fmt"
	"maps"
)

// Clone returns a deep copy of s, so a backend never shares memory with its
// callers.
func (s *State) Clone() *State {
	if s == nil {
		return nil
	}
	c := *s
	c.Machines = make([]Machine, len(s.Machines))
	copy(c.Machines, s.Machines) // Machine holds only values
	c.Sizes = maps.Clone(s.Sizes)
	return &c
}

// Validate checks the invariants every backend enforces before a write.
func (s *State) Validate() error {
	if s.Version > Version {
		return fmt.Errorf("%w: version %d is newer than %d", ErrInvalid, s.Version, Version)
	}
	seen := make(map[string]bool, len(s.Machines))
	for i, m := range s.Machines {
		if m.ID == "" {
			return fmt.Errorf("%w: machine %d has no id", ErrInvalid, i)
		}
		if seen[m.ID] {
			return fmt.Errorf("%w: machine id %q appears twice", ErrInvalid, m.ID)
		}
		seen[m.ID] = true
		switch m.Phase {
		case PhaseIntent, PhaseCreated, PhaseReady, PhaseJoined, PhaseRemoving:
		default:
			return fmt.Errorf("%w: machine %q has unknown phase %q", ErrInvalid, m.ID, m.Phase)
		}
	}
	return nil
}

// NewLineage returns a fresh random lineage in UUID v4 form.
func NewLineage() string {
	var b [16]byte
	rand.Read(b[:])         // never fails (crypto/rand panics instead)
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Empty is what a backend's Read returns when nothing is stored yet.
func Empty() *State {
	return &State{Version: Version, Lineage: NewLineage(), Machines: []Machine{}}
}

// Next checks s against the stored document (nil if none) and returns the
// copy to store, with Serial bumped and Version set. Every backend's Write
// runs it, so they all refuse the same writes (ErrInvalid, ErrStale,
// ErrLineageMismatch). The caller's s is only updated, by Commit, once the
// write succeeded, so a failed write changes nothing.
//
// Refusing a serial that is behind the stored one is what makes "concurrent
// writers don't lose updates" hold even for a caller that forgot the lock.
func Next(stored, s *State) (*State, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	next := s.Clone()
	next.Version = Version
	if next.Lineage == "" {
		next.Lineage = NewLineage()
	}
	if stored != nil {
		if stored.Lineage != next.Lineage {
			return nil, fmt.Errorf("%w: stored %q, writing %q", ErrLineageMismatch, stored.Lineage, next.Lineage)
		}
		if stored.Serial != next.Serial {
			return nil, fmt.Errorf("%w: stored serial is %d, this state was read at %d", ErrStale, stored.Serial, next.Serial)
		}
	}
	next.Serial++
	return next, nil
}

// Commit copies what Next made and a backend stored back into the caller's
// state s.
func Commit(s, next *State) {
	s.Version, s.Serial, s.Lineage = next.Version, next.Serial, next.Lineage
}
