// Package state owns what exists: the machines of one cluster, their
// provider IDs, addresses, pinned host keys and bootstrap progress, and the
// backends that store that document with locking.
package state

import (
	"context"
	"time"
)

// Version is the current state document version.
const Version = 1

// State is one cluster's document. Serial grows on every write; Lineage is
// fixed when the state is first created, so a saved plan can tell whether it
// still applies to the same state.
type State struct {
	Version  int       `json:"version"`
	Serial   uint64    `json:"serial"`
	Lineage  string    `json:"lineage"`
	Cluster  string    `json:"cluster"`
	Machines []Machine `json:"machines"`
	// Sizes is the machine count the autoscaler chose for each autoscaled
	// pool. It outlives the run that set it, so a later `provision up`
	// keeps the pools where demand put them instead of resetting them to
	// the plan's count.
	Sizes map[string]int `json:"sizes,omitempty"`
}

// Phase is how far a machine has come. Phases only move forward, so a rerun
// resumes from the recorded phase.
type Phase string

const (
	// PhaseIntent: the ID and host key are chosen and recorded; the provider
	// may or may not have the machine yet.
	PhaseIntent Phase = "intent"
	// PhaseCreated: the provider returned the machine with an address.
	PhaseCreated Phase = "created"
	// PhaseReady: the runtime is installed and configured.
	PhaseReady Phase = "ready"
	// PhaseJoined: the machine is a member of the cluster.
	PhaseJoined Phase = "joined"
	// PhaseRemoving: the machine is being drained and deleted.
	PhaseRemoving Phase = "removing"
)

// Machine is one machine of the cluster. It holds no secret: the host key is
// the public half only.
type Machine struct {
	ID             string `json:"id"`
	Pool           string `json:"pool"`
	Provider       string `json:"provider"`
	Role           string `json:"role"`
	ProviderID     string `json:"provider_id,omitempty"`
	Address        string `json:"address,omitempty"`
	Port           int    `json:"port,omitempty"`
	PrivateAddress string `json:"private_address,omitempty"`
	HostKey        string `json:"host_key"` // authorized_keys format, pinned
	// NextHostKey is the host key being rotated in (authorized_keys
	// format), recorded before the machine serves it: until the rotation
	// is confirmed, a connection accepts HostKey or NextHostKey and no
	// other, so a run killed at any point of the rotation still connects
	// and finishes it. Empty when no rotation is under way.
	NextHostKey string `json:"next_host_key,omitempty"`
	// FormerHostKeys are the keys earlier, interrupted creates of this
	// machine pinned (authorized_keys format, newest last). Their runs died
	// after the provider had the key (a cloud may hand their instance back
	// later, its user-data carrying that key), so first contact accepts
	// them too, until the rotation replaces whichever key the machine
	// serves with one it made itself.
	FormerHostKeys []string `json:"former_host_keys,omitempty"`
	// HostKeyRotated: HostKey was made on the machine after provision's
	// first verified connection, so the key its creation carried (in
	// user-data, which the cloud's metadata service keeps serving) opens
	// nothing any more. Never set for machines that keep keys of their own
	// (static hosts).
	HostKeyRotated bool      `json:"host_key_rotated,omitempty"`
	Phase          Phase     `json:"phase"`
	CreatedAt      time.Time `json:"created_at"`
}

// Machine returns the machine with that ID, or nil.
func (s *State) Machine(id string) *Machine {
	for i := range s.Machines {
		if s.Machines[i].ID == id {
			return &s.Machines[i]
		}
	}
	return nil
}

// Remove drops the machine with that ID.
func (s *State) Remove(id string) {
	out := s.Machines[:0]
	for _, m := range s.Machines {
		if m.ID != id {
			out = append(out, m)
		}
	}
	s.Machines = out
}

// LockInfo says who holds a lock, so a second apply can name the holder.
type LockInfo struct {
	ID        string    `json:"id"`
	Operation string    `json:"operation"` // "up", "down", "autoscale"
	Who       string    `json:"who"`       // user@host
	PID       int       `json:"pid"`
	Created   time.Time `json:"created"`
}

// Locker serializes applies on one state.
type Locker interface {
	// Lock takes the lock or fails at once with a *LockError naming the holder.
	Lock(ctx context.Context, info LockInfo) (id string, err error)
	Unlock(ctx context.Context, id string) error
}

// Backend stores one cluster's state document.
type Backend interface {
	Locker
	// Read returns the stored state; a missing state is an empty State with
	// a fresh lineage, not an error.
	Read(ctx context.Context) (*State, error)
	// Write stores s atomically, bumping s.Serial, and keeps the previous
	// version.
	Write(ctx context.Context, s *State) error
	// Destroy removes the state and everything kept with it (after `down`).
	Destroy(ctx context.Context) error
}
