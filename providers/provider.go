// Package providers owns the contract between the apply engine and the places
// machines come from: the Provider interface, machine specs, typed errors and
// the registry of providers by name.
package providers

import (
	"context"

	"github.com/provisionhq/provision/providers/hostkey"
)

// Provider creates, finds and deletes machines. It is batch by design: the
// engine hands it every machine of a pool at once and a provider must not need
// one API call per machine where its cloud has a batch call.
type Provider interface {
	// Create makes the machines and returns them once each has an address.
	// It is idempotent per spec.ID: a spec whose machine already exists
	// returns that machine instead of creating a second one.
	Create(ctx context.Context, specs []MachineSpec) ([]Machine, error)
	// List finds machines by the tags the provider put on them at creation.
	List(ctx context.Context, sel Selector) ([]Machine, error)
	// Delete removes machines. A machine that is already gone is a success.
	Delete(ctx context.Context, ids []MachineID) error
}

// MachineID is provision's own stable machine ID, chosen before any API call
// and used as the idempotency token and as a tag on the machine.
type MachineID string

// Role is a machine's role in the cluster.
type Role string

const (
	RoleManager Role = "manager"
	RoleWorker  Role = "worker"
)

// MachineSpec is everything a provider needs to create one machine.
type MachineSpec struct {
	ID       MachineID
	Cluster  string
	Pool     string
	Role     Role
	Settings Settings          // the pool's provider settings from the plan
	Labels   map[string]string // the pool's user labels

	// SSHUser is the login user; AuthorizedKeys are the public keys
	// (authorized_keys format) that may log in as that user.
	SSHUser        string
	AuthorizedKeys []string
	// HostKey is the SSH host key provision generated for this machine; the
	// provider installs it so the first connection is already verified.
	HostKey hostkey.Key
	// Spot asks for the cloud's interruptible capacity (EC2 spot, GCE SPOT
	// provisioning): cheaper, reclaimable, and refused with a capacity
	// error when the cloud has none to spare. Only providers registered
	// with Entry.Spot receive it.
	Spot bool
}

// Machine is a machine as its provider sees it.
type Machine struct {
	ID         MachineID
	ProviderID string // the cloud's own ID (instance ID, container ID)
	Cluster    string
	Pool       string
	// Address is what SSH dials (an IP or host name); Port is 22 when zero.
	Address string
	Port    int
	// PrivateAddress is the address other cluster nodes use; Address when empty.
	PrivateAddress string
	State          MachineState
	// HostKey is the machine's public host key (authorized_keys format) when
	// the provider knows it better than the spec did (static hosts keep
	// their own keys); empty means the spec's HostKey was installed.
	HostKey string
}

// HostKeyKeeper is an optional extra of a Provider, checked by type
// assertion: a provider whose machines keep host keys of their own, which
// provision only pins (the static provider: the user's own hosts). The
// engine never rotates such a machine's key; every other provider's
// machines get a fresh one on first contact (see plans/apply).
type HostKeyKeeper interface {
	// KeepsHostKeys reports whether the provider's machines keep their own
	// host keys.
	KeepsHostKeys() bool
}

// MachineState is the coarse lifecycle state of a machine in its provider.
type MachineState string

const (
	StatePending    MachineState = "pending"
	StateRunning    MachineState = "running"
	StateStopping   MachineState = "stopping"
	StateTerminated MachineState = "terminated"
)

// Selector picks machines by the tags provision puts on them.
type Selector struct {
	Cluster string // required
	Pool    string // optional: every pool when empty
}
