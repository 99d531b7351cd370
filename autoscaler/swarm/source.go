// Package swarm owns the autoscaler's demand source for Docker Swarm: it reads
// a manager's Engine API (over its unix socket, locally or forwarded through
// SSH) and turns Swarm's view — tasks the scheduler left pending with "no
// suitable node", ready nodes and what is reserved on them — into the
// autoscaler's Snapshot; it tells the loop when that may have changed, and it
// drains a node before the engine removes its machine. It speaks through the
// official Engine API client (github.com/moby/moby/client) and its types.
package swarm

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/provisionhq/provision/autoscaler"
)

// DefaultPollInterval is how often Watch lists tasks and Drain checks a
// draining node. Swarm emits no task events, so a task going pending is seen
// by polling; a second matches the loop's "react in about a second".
const DefaultPollInterval = time.Second

// Options configure a Source.
type Options struct {
	Logger *slog.Logger
	// PollInterval is Watch's task poll and Drain's check interval;
	// DefaultPollInterval when zero.
	PollInterval time.Duration
	// APIVersion pins the Engine API version ("1.41"); empty negotiates it
	// once with the engine: the highest version both it and the client
	// speak.
	APIVersion string
}

// Source is a Swarm manager as the autoscaler's demand source. It is safe for
// concurrent use.
type Source struct {
	api    *engine
	logger *slog.Logger
	poll   time.Duration
}

var _ autoscaler.Source = (*Source)(nil)

// New returns a Source that reaches a manager's Engine API through dial,
// called for every new connection: UnixDialer("/var/run/docker.sock") when
// the autoscaler runs on a manager with the socket mounted, or an SSH
// client's DialUnix (bootstrap.Client) from a workstation. dial must honour
// ctx. The source makes no call until first used.
func New(dial func(ctx context.Context) (net.Conn, error), opts Options) *Source {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	poll := opts.PollInterval
	if poll <= 0 {
		poll = DefaultPollInterval
	}
	return &Source{api: newEngine(dial, opts.APIVersion), logger: logger, poll: poll}
}

// UnixDialer dials the unix socket at path, usually /var/run/docker.sock.
func UnixDialer(path string) func(ctx context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
}

// Close drops idle connections. The dial function's own resources (an SSH
// client) stay the caller's.
func (s *Source) Close() error {
	s.api.close()
	return nil
}

// Snapshot reads pending tasks, nodes and services now, in three requests.
//
// Pending are the tasks Swarm wants running (DesiredState running) that sit
// in state pending because the scheduler found "no suitable node" (lack of
// resources, constraints, ports, drained nodes: a new node may cure any of
// them); tasks not yet looked at by the scheduler are not pending here. A
// task's Requests are its reservations, its NodeSelector its constraints
// (see constraintSelector). A pending task already bound to a node — a
// global service's, whose node lacks room — can only ever run on that node,
// so its selector pins it there (node.hostname): it is counted, and the
// decision reports it, but no new machine is bought for it.
//
// Nodes are those ready and active (not paused or drained); Allocated sums
// the reservations of tasks Swarm wants running and has placed there
// (assigned through running), which is what its scheduler counts. Tasks
// lists the ones a scale-down would move: global services' tasks are
// counted in Allocated but not listed, as every other node already runs its
// own copy.
func (s *Source) Snapshot(ctx context.Context) (autoscaler.Snapshot, error) {
	tasks, err := s.listTasks(ctx, client.Filters{}.Add("desired-state", "running"))
	if err != nil {
		return autoscaler.Snapshot{}, err
	}
	nodes, err := s.listNodes(ctx)
	if err != nil {
		return autoscaler.Snapshot{}, err
	}
	services, err := s.listServices(ctx)
	if err != nil {
		return autoscaler.Snapshot{}, err
	}
	return build(tasks, nodes, services), nil
}

// listTasks lists tasks matching f.
func (s *Source) listTasks(ctx context.Context, f client.Filters) ([]swarm.Task, error) {
	if err := s.api.ready(ctx); err != nil {
		return nil, fmt.Errorf("list swarm tasks: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	res, err := s.api.api.TaskList(ctx, client.TaskListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list swarm tasks: %w", s.api.explain(err))
	}
	return res.Items, nil
}

func (s *Source) listNodes(ctx context.Context) ([]swarm.Node, error) {
	if err := s.api.ready(ctx); err != nil {
		return nil, fmt.Errorf("list swarm nodes: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	res, err := s.api.api.NodeList(ctx, client.NodeListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list swarm nodes: %w", s.api.explain(err))
	}
	return res.Items, nil
}

func (s *Source) listServices(ctx context.Context) ([]swarm.Service, error) {
	if err := s.api.ready(ctx); err != nil {
		return nil, fmt.Errorf("list swarm services: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	res, err := s.api.api.ServiceList(ctx, client.ServiceListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list swarm services: %w", s.api.explain(err))
	}
	return res.Items, nil
}

func build(tasks []swarm.Task, nodes []swarm.Node, services []swarm.Service) autoscaler.Snapshot {
	isGlobal := make(map[string]bool, len(services))
	for i := range services {
		isGlobal[services[i].ID] = global(&services[i])
	}
	hostnames := make(map[string]string, len(nodes))
	ready := make(map[string]*autoscaler.Node, len(nodes))
	for i := range nodes {
		n := &nodes[i]
		hostnames[n.ID] = n.Description.Hostname
		if !usable(n) {
			continue
		}
		ready[n.ID] = &autoscaler.Node{
			Name:        n.Description.Hostname,
			Allocatable: allocatable(n.Description.Resources),
			Labels:      nodeLabels(n),
			Manager:     n.Spec.Role == swarm.NodeRoleManager,
		}
	}
	var snap autoscaler.Snapshot
	for i := range tasks {
		t := &tasks[i]
		switch {
		case pending(t):
			at := toTask(t)
			if t.NodeID != "" {
				at.NodeSelector = pinned(at.NodeSelector, t.NodeID, hostnames[t.NodeID])
			}
			snap.Pending = append(snap.Pending, at)
		case placed(t):
			n, ok := ready[t.NodeID]
			if !ok {
				continue
			}
			at := toTask(t)
			n.Allocated = n.Allocated.Add(at.Requests)
			if !isGlobal[t.ServiceID] {
				n.Tasks = append(n.Tasks, at)
			}
		}
	}
	slices.SortFunc(snap.Pending, func(a, b autoscaler.Task) int { return strings.Compare(a.ID, b.ID) })
	for _, n := range ready {
		slices.SortFunc(n.Tasks, func(a, b autoscaler.Task) int { return strings.Compare(a.ID, b.ID) })
		snap.Nodes = append(snap.Nodes, *n)
	}
	slices.SortFunc(snap.Nodes, func(a, b autoscaler.Node) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Labels[LabelID], b.Labels[LabelID])
	})
	return snap
}

// pinned adds the node a task is bound to to its selector: by hostname, as
// the decision log shows it, or by ID when the node is gone from the list.
func pinned(sel map[string]string, nodeID, hostname string) map[string]string {
	if sel == nil {
		sel = map[string]string{}
	}
	if hostname != "" {
		require(sel, LabelHostname, hostname, LabelHostname+"=="+hostname)
	} else {
		require(sel, LabelID, nodeID, LabelID+"=="+nodeID)
	}
	return sel
}
