// Package cluster owns the cluster join drivers: how to initialize the first
// control node, hand out join credentials, join a node, and drain and remove
// it. Drivers reach nodes through a Runner (run a command) and its optional
// extras checked by type assertion (SocketDialer: open a unix socket on the
// node), and never see SSH.
package cluster

import (
	"context"
	"io"
)

// Runner runs a shell command on a node. stdin may be nil; secrets are passed
// on stdin, never in cmd. A non-zero exit is an error.
type Runner interface {
	Run(ctx context.Context, cmd string, stdin io.Reader, stdout io.Writer) error
}

// Node is one machine as a driver sees it.
type Node struct {
	Name    string // provision's machine ID; also the cluster node's hostname
	Address string // the address other nodes reach it on
	Role    string // "manager" or "worker"
	Run     Runner // nil when the node is unreachable (it is being removed)
	// Labels are set on the cluster node when it joins, so placement
	// constraints (node.labels.tier==gpu) can target a pool.
	Labels map[string]string
	// Taints are set on a Kubernetes node when it registers, so no pod
	// lands before them (Swarm has none).
	Taints []Taint
	// PublicAddress is where provision reaches the node when that is not
	// Address (a cloud's public IP); certificates must name it too.
	PublicAddress string
}

// Taint is a Kubernetes node taint.
type Taint struct{ Key, Value, Effect string }

// Credential is a join secret. It is never printed or logged.
type Credential struct{ secret string }

// NewCredential wraps a secret.
func NewCredential(s string) Credential { return Credential{secret: s} }

// Secret returns the secret for passing on stdin.
func (c Credential) Secret() string { return c.secret }

// String keeps the secret out of any output.
func (Credential) String() string { return "[redacted]" }

// Member is a node as the cluster sees it.
type Member struct {
	Name         string
	Role         string // manager or worker
	Status       string // e.g. "ready", "down"
	Availability string // e.g. "active", "drain"
	Leader       bool
}

// Driver is one cluster kind. Every method is idempotent: a rerun after a
// crash skips what is already done.
type Driver interface {
	// Init makes n the first control node (no-op when it already is).
	Init(ctx context.Context, n Node) error
	// Credential returns the secret a node of that role needs to join.
	Credential(ctx context.Context, mgr Node, role string) (Credential, error)
	// Join makes n a member (no-op when it already is).
	Join(ctx context.Context, n Node, mgr Node, cred Credential) error
	// Remove drains n, has it leave when reachable, and removes it from the
	// cluster's member list.
	Remove(ctx context.Context, mgr Node, n Node) error
	// Members lists the cluster's nodes as seen from mgr.
	Members(ctx context.Context, mgr Node) ([]Member, error)
}
