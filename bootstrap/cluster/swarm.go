package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"strconv"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/provisionhq/provision/internal/retry"
)

// SwarmPort is the Swarm cluster management port.
const SwarmPort = 2377

// DockerSocket is where the Docker engine listens on a node.
const DockerSocket = "/var/run/docker.sock"

// SocketDialer is a Runner that can also open unix sockets on its node (an
// SSH client's direct-streamlocal channel, as bootstrap.Client.DialUnix):
// the Swarm driver speaks the Engine API through the node's Docker socket,
// so nothing but the engine has to be installed there.
type SocketDialer interface {
	DialUnix(ctx context.Context, path string) (net.Conn, error)
}

// Swarm is the Docker Swarm driver. It speaks the Docker Engine API (the
// official client) on each node's socket, reached through the node's
// SocketDialer; join tokens travel in request bodies, never in argv.
type Swarm struct {
	logger *slog.Logger
	// DrainTimeout bounds the wait for a draining node's tasks to stop;
	// after it removal goes on (the scheduler moves what is left).
	DrainTimeout time.Duration
	// DownTimeout bounds the wait for a node that left to show as down.
	DownTimeout time.Duration
	// Poll is the first poll interval of both waits (it backs off to 4×).
	Poll time.Duration
}

var _ Driver = (*Swarm)(nil)

// NewSwarm returns a Swarm driver with a 2 min drain and 1 min down timeout.
func NewSwarm(logger *slog.Logger) *Swarm {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Swarm{logger: logger, DrainTimeout: 2 * time.Minute, DownTimeout: time.Minute, Poll: time.Second}
}

// ErrSwarmState: a node is in a swarm state the driver will not act on
// (pending, error, locked, or a worker asked to init).
var ErrSwarmState = errors.New("unexpected swarm state")

// ErrNoSocket: the node's connection cannot open unix sockets, so its
// engine cannot be reached.
var ErrNoSocket = errors.New("connection cannot open the Docker socket")

// Engine is an Engine API client for n's Docker socket. The API version is
// negotiated on the first request. Close it after use.
//
// The socket is opened once first: the client reports any failure to dial
// as "Cannot connect to the Docker daemon", dropping the cause (a login
// user not in the docker group, sshd refusing socket forwarding), which is
// what the operator needs to read.
func Engine(ctx context.Context, n Node) (*client.Client, error) {
	if n.Run == nil {
		return nil, fmt.Errorf("%s: node is unreachable", n.Name)
	}
	d, ok := n.Run.(SocketDialer)
	if !ok {
		return nil, fmt.Errorf("%s: %w (%T)", n.Name, ErrNoSocket, n.Run)
	}
	probe, err := d.DialUnix(ctx, DockerSocket)
	if err != nil {
		return nil, err
	}
	probe.Close()
	c, err := client.New(
		client.WithHost("unix://"+DockerSocket),
		client.WithDialContext(func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialUnix(ctx, DockerSocket)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("%s: docker client: %w", n.Name, err)
	}
	return c, nil
}

// localState is the node's own view of its swarm membership.
func localState(ctx context.Context, c *client.Client) (swarm.Info, error) {
	res, err := c.Info(ctx, client.InfoOptions{})
	if err != nil {
		return swarm.Info{}, err
	}
	return res.Info.Swarm, nil
}

// Init makes n the first manager; a no-op when it already manages a swarm.
func (s *Swarm) Init(ctx context.Context, n Node) error {
	c, err := Engine(ctx, n)
	if err != nil {
		return fmt.Errorf("swarm init on %s: %w", n.Name, err)
	}
	defer c.Close()
	info, err := localState(ctx, c)
	if err != nil {
		return fmt.Errorf("swarm init on %s: %w", n.Name, err)
	}
	switch {
	case info.LocalNodeState == swarm.LocalNodeStateActive && info.ControlAvailable:
		s.logger.Info("swarm already initialized", "machine", n.Name)
		return s.label(ctx, c, n, info.NodeID)
	case info.LocalNodeState == swarm.LocalNodeStateActive:
		return fmt.Errorf("swarm init on %s: %w: it is a worker of another swarm", n.Name, ErrSwarmState)
	case info.LocalNodeState != swarm.LocalNodeStateInactive:
		return fmt.Errorf("swarm init on %s: %w: %q", n.Name, ErrSwarmState, info.LocalNodeState)
	}
	res, err := c.SwarmInit(ctx, client.SwarmInitOptions{
		ListenAddr:    "0.0.0.0:" + strconv.Itoa(SwarmPort),
		AdvertiseAddr: n.Address,
	})
	if err != nil {
		return fmt.Errorf("swarm init on %s: %w", n.Name, err)
	}
	s.logger.Info("swarm initialized", "machine", n.Name, "advertise", n.Address)
	return s.label(ctx, c, n, res.NodeID)
}

// Credential returns the join token for role ("manager" or "worker").
func (s *Swarm) Credential(ctx context.Context, mgr Node, role string) (Credential, error) {
	if role != "manager" && role != "worker" {
		return Credential{}, fmt.Errorf("swarm join token: role %q is neither manager nor worker", role)
	}
	c, err := Engine(ctx, mgr)
	if err != nil {
		return Credential{}, fmt.Errorf("swarm %s join token: %w", role, err)
	}
	defer c.Close()
	res, err := c.SwarmInspect(ctx, client.SwarmInspectOptions{})
	if err != nil {
		return Credential{}, fmt.Errorf("swarm %s join token from %s: %w", role, mgr.Name, err)
	}
	token := res.Swarm.JoinTokens.Worker
	if role == "manager" {
		token = res.Swarm.JoinTokens.Manager
	}
	if token == "" {
		return Credential{}, fmt.Errorf("swarm %s join token from %s: empty", role, mgr.Name)
	}
	return NewCredential(token), nil
}

// Join makes n a member through mgr; a no-op when n is already in a swarm.
// A manager joins as one: the token decides the role.
func (s *Swarm) Join(ctx context.Context, n Node, mgr Node, cred Credential) error {
	c, err := Engine(ctx, n)
	if err != nil {
		return fmt.Errorf("swarm join of %s: %w", n.Name, err)
	}
	defer c.Close()
	info, err := localState(ctx, c)
	if err != nil {
		return fmt.Errorf("swarm join of %s: %w", n.Name, err)
	}
	switch info.LocalNodeState {
	case swarm.LocalNodeStateActive:
		s.logger.Info("already a swarm member", "machine", n.Name)
		return s.labelVia(ctx, mgr, n, info.NodeID)
	case swarm.LocalNodeStateInactive:
	default:
		return fmt.Errorf("swarm join of %s: %w: %q", n.Name, ErrSwarmState, info.LocalNodeState)
	}
	_, err = c.SwarmJoin(ctx, client.SwarmJoinOptions{
		ListenAddr:    "0.0.0.0:" + strconv.Itoa(SwarmPort),
		AdvertiseAddr: n.Address,
		RemoteAddrs:   []string{net.JoinHostPort(mgr.Address, strconv.Itoa(SwarmPort))},
		JoinToken:     cred.Secret(),
	})
	if err != nil {
		return fmt.Errorf("swarm join of %s via %s: %w", n.Name, mgr.Name, Redact(err, cred.Secret()))
	}
	s.logger.Info("joined swarm", "machine", n.Name, "manager", mgr.Name)
	if info, err = localState(ctx, c); err != nil {
		return fmt.Errorf("swarm join of %s: %w", n.Name, err)
	}
	return s.labelVia(ctx, mgr, n, info.NodeID)
}

// labelVia labels n's swarm node through mgr's engine.
func (s *Swarm) labelVia(ctx context.Context, mgr, n Node, id string) error {
	if len(n.Labels) == 0 {
		return nil
	}
	c, err := Engine(ctx, mgr)
	if err != nil {
		return fmt.Errorf("label swarm node %s: %w", n.Name, err)
	}
	defer c.Close()
	return s.label(ctx, c, n, id)
}

// label adds n's labels to swarm node id, through a manager's engine. A node
// that just joined may not be known to the manager for a moment: retry to
// the deadline.
func (s *Swarm) label(ctx context.Context, mgr *client.Client, n Node, id string) error {
	if len(n.Labels) == 0 {
		return nil
	}
	err := retry.Do(ctx, retry.Policy{Initial: 500 * time.Millisecond, Max: 2 * time.Second}, func(ctx context.Context) (bool, error) {
		err := updateNode(ctx, mgr, id, func(spec *swarm.NodeSpec) bool {
			if spec.Labels == nil {
				spec.Labels = map[string]string{}
			}
			before := maps.Clone(spec.Labels)
			maps.Copy(spec.Labels, n.Labels)
			return !maps.Equal(before, spec.Labels)
		})
		return err == nil || ctx.Err() != nil, err
	})
	if err != nil {
		return fmt.Errorf("label swarm node %s: %w", n.Name, err)
	}
	return nil
}

// updateNode reads node id, lets change edit its spec (false: nothing to
// do) and writes it back at the version read. Swarm replaces the whole
// spec and refuses a stale version; it says so only in its message text,
// so a refusal is told apart by reading the node again: a moved version is
// a lost race, retried, anything else the engine's error.
func updateNode(ctx context.Context, c *client.Client, id string, change func(*swarm.NodeSpec) bool) error {
	for {
		res, err := c.NodeInspect(ctx, id, client.NodeInspectOptions{})
		if err != nil {
			return err
		}
		spec := res.Node.Spec
		if !change(&spec) {
			return nil
		}
		_, err = c.NodeUpdate(ctx, id, client.NodeUpdateOptions{Version: res.Node.Version, Spec: spec})
		if err == nil {
			return nil
		}
		again, ierr := c.NodeInspect(ctx, id, client.NodeInspectOptions{})
		if ierr != nil || again.Node.Version.Index == res.Node.Version.Index {
			return err
		}
	}
}

// Remove drains n, demotes it if it manages, has it leave when reachable,
// waits for it to show as down and removes it from the member list. A node
// the swarm does not know is already removed.
func (s *Swarm) Remove(ctx context.Context, mgr Node, n Node) error {
	if n.Name == mgr.Name {
		return fmt.Errorf("swarm remove %s: cannot remove the manager used for the removal; use another manager", n.Name)
	}
	c, err := Engine(ctx, mgr)
	if err != nil {
		return fmt.Errorf("swarm remove %s: %w", n.Name, err)
	}
	defer c.Close()
	entries, err := entries(ctx, c, n.Name)
	if err != nil {
		return fmt.Errorf("swarm remove %s: %w", n.Name, err)
	}
	if len(entries) == 0 {
		s.logger.Info("not a swarm member, nothing to remove", "machine", n.Name)
		s.leave(ctx, n, false)
		return nil
	}
	var ids []string
	wasManager := false
	for _, e := range entries {
		ids = append(ids, e.ID)
		wasManager = wasManager || e.ManagerStatus != nil
		err := updateNode(ctx, c, e.ID, func(spec *swarm.NodeSpec) bool {
			if spec.Availability == swarm.NodeAvailabilityDrain {
				return false
			}
			spec.Availability = swarm.NodeAvailabilityDrain
			return true
		})
		if err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("swarm remove %s: drain: %w", n.Name, err)
		}
	}
	s.logger.Info("swarm node draining", "machine", n.Name)
	if err := s.waitDrained(ctx, c, n.Name, ids); err != nil {
		return err
	}
	for _, e := range entries {
		if e.ManagerStatus == nil {
			continue
		}
		err := updateNode(ctx, c, e.ID, func(spec *swarm.NodeSpec) bool {
			if spec.Role == swarm.NodeRoleWorker {
				return false
			}
			spec.Role = swarm.NodeRoleWorker
			return true
		})
		if err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("swarm remove %s: demote: %w", n.Name, err)
		}
	}
	s.leave(ctx, n, wasManager)
	if err := s.waitDown(ctx, c, n.Name); err != nil {
		return err
	}
	for _, id := range ids {
		// Gone meanwhile (a concurrent remove) is success too.
		if _, err := c.NodeRemove(ctx, id, client.NodeRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("swarm remove %s: %w", n.Name, err)
		}
	}
	s.logger.Info("swarm node removed", "machine", n.Name)
	return nil
}

// leave has a reachable node leave its swarm. It is best effort: the
// forced removal on the manager is what counts, and the machine is usually
// deleted next; a failure is logged, not returned.
func (s *Swarm) leave(ctx context.Context, n Node, force bool) {
	if n.Run == nil {
		return
	}
	c, err := Engine(ctx, n)
	if err != nil {
		s.logger.Warn("swarm leave skipped: engine unreachable", "machine", n.Name, "err", err)
		return
	}
	defer c.Close()
	info, err := localState(ctx, c)
	if err != nil {
		s.logger.Warn("swarm leave skipped: node state unknown", "machine", n.Name, "err", err)
		return
	}
	if info.LocalNodeState == swarm.LocalNodeStateInactive {
		return
	}
	if _, err := c.SwarmLeave(ctx, client.SwarmLeaveOptions{Force: force}); err != nil {
		s.logger.Warn("swarm leave failed; removing from the manager anyway", "machine", n.Name, "err", err)
	}
}

// waitDrained polls until no task meant to run is left on the node. Past
// DrainTimeout removal goes on with a warning; only ctx ending is an error.
func (s *Swarm) waitDrained(ctx context.Context, c *client.Client, name string, ids []string) error {
	f := client.Filters{}.Add("desired-state", "running").Add("node", ids...)
	return s.wait(ctx, s.DrainTimeout, name, "drain", func(ctx context.Context) (bool, error) {
		res, err := c.TaskList(ctx, client.TaskListOptions{Filters: f})
		if err != nil {
			return false, err
		}
		return len(res.Items) == 0, nil
	})
}

// waitDown polls until every entry for the node shows as down (or is gone).
func (s *Swarm) waitDown(ctx context.Context, c *client.Client, name string) error {
	return s.wait(ctx, s.DownTimeout, name, "down", func(ctx context.Context) (bool, error) {
		list, err := entries(ctx, c, name)
		if err != nil {
			return false, err
		}
		for _, e := range list {
			if e.Status.State != swarm.NodeStateDown {
				return false, nil
			}
		}
		return true, nil
	})
}

func (s *Swarm) wait(ctx context.Context, limit time.Duration, name, what string, f retry.Func) error {
	wctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	err := retry.Do(wctx, retry.Policy{Initial: s.Poll, Max: 4 * s.Poll}, f)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("swarm remove %s: wait for %s: %w", name, what, ctx.Err())
	default:
		s.logger.Warn("swarm node wait timed out, removing anyway", "machine", name, "waiting_for", what, "limit", limit, "err", err)
		return nil
	}
}

// Members lists the swarm's nodes as mgr sees them.
func (s *Swarm) Members(ctx context.Context, mgr Node) ([]Member, error) {
	c, err := Engine(ctx, mgr)
	if err != nil {
		return nil, fmt.Errorf("swarm members: %w", err)
	}
	defer c.Close()
	res, err := c.NodeList(ctx, client.NodeListOptions{})
	if err != nil {
		return nil, fmt.Errorf("swarm members from %s: %w", mgr.Name, err)
	}
	members := make([]Member, 0, len(res.Items))
	for _, e := range res.Items {
		role := "worker"
		if e.ManagerStatus != nil {
			role = "manager"
		}
		members = append(members, Member{
			Name:         e.Description.Hostname,
			Role:         role,
			Status:       string(e.Status.State),
			Availability: string(e.Spec.Availability),
			Leader:       e.ManagerStatus != nil && e.ManagerStatus.Leader,
		})
	}
	return members, nil
}

// entries are the nodes named name; a node that rejoined can have an old,
// down entry besides its current one.
func entries(ctx context.Context, c *client.Client, name string) ([]swarm.Node, error) {
	res, err := c.NodeList(ctx, client.NodeListOptions{})
	if err != nil {
		return nil, err
	}
	var mine []swarm.Node
	for _, e := range res.Items {
		if e.Description.Hostname == name {
			mine = append(mine, e)
		}
	}
	return mine, nil
}
