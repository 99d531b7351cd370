package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/provisionhq/provision/internal/retry"
)

// SwarmPort is the Swarm cluster management port.
const SwarmPort = 2377

// Swarm is the Docker Swarm driver. It drives the docker CLI on the nodes
// and, for joins, the Engine API on the node's local socket, so the join
// token travels on stdin and never through argv.
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

// Init makes n the first manager; a no-op when it already manages a swarm.
func (s *Swarm) Init(ctx context.Context, n Node) error {
	state, control, err := s.localState(ctx, n)
	if err != nil {
		return fmt.Errorf("swarm init on %s: %w", n.Name, err)
	}
	switch {
	case state == "active" && control:
		s.logger.Info("swarm already initialized", "machine", n.Name)
		return s.label(ctx, n, n)
	case state == "active":
		return fmt.Errorf("swarm init on %s: %w: it is a worker of another swarm", n.Name, ErrSwarmState)
	case state != "inactive":
		return fmt.Errorf("swarm init on %s: %w: %q", n.Name, ErrSwarmState, state)
	}
	if err := n.Run.Run(ctx, "docker swarm init --advertise-addr "+ShellQuote(n.Address), nil, &bytes.Buffer{}); err != nil {
		return fmt.Errorf("swarm init on %s: %w", n.Name, err)
	}
	s.logger.Info("swarm initialized", "machine", n.Name, "advertise", n.Address)
	return s.label(ctx, n, n)
}

// Credential returns the join token for role ("manager" or "worker").
func (s *Swarm) Credential(ctx context.Context, mgr Node, role string) (Credential, error) {
	if role != "manager" && role != "worker" {
		return Credential{}, fmt.Errorf("swarm join token: role %q is neither manager nor worker", role)
	}
	var out bytes.Buffer
	if err := mgr.Run.Run(ctx, "docker swarm join-token -q "+role, nil, &out); err != nil {
		return Credential{}, fmt.Errorf("swarm %s join token from %s: %w", role, mgr.Name, err)
	}
	token := strings.TrimSpace(out.String())
	if token == "" {
		return Credential{}, fmt.Errorf("swarm %s join token from %s: empty", role, mgr.Name)
	}
	return NewCredential(token), nil
}

// joinRequest is the Engine API's SwarmJoinRequest (POST /swarm/join).
type joinRequest struct {
	ListenAddr    string
	AdvertiseAddr string
	RemoteAddrs   []string
	JoinToken     string
}

// joinCmd posts the request from stdin to the local engine and prints the
// response body, then the HTTP status on a line of its own (no -f: the
// body carries the engine's reason).
const joinCmd = `curl -sS --unix-socket /var/run/docker.sock -H 'Content-Type: application/json' --data-binary @- -w '\n%{http_code}' http://localhost/swarm/join`

// Join makes n a member through mgr; a no-op when n is already in a swarm.
func (s *Swarm) Join(ctx context.Context, n Node, mgr Node, cred Credential) error {
	state, _, err := s.localState(ctx, n)
	if err != nil {
		return fmt.Errorf("swarm join of %s: %w", n.Name, err)
	}
	switch state {
	case "active":
		s.logger.Info("already a swarm member", "machine", n.Name)
		return s.label(ctx, mgr, n)
	case "inactive":
	default:
		return fmt.Errorf("swarm join of %s: %w: %q", n.Name, ErrSwarmState, state)
	}
	body, err := json.Marshal(joinRequest{
		ListenAddr:    "0.0.0.0:" + strconv.Itoa(SwarmPort),
		AdvertiseAddr: n.Address,
		RemoteAddrs:   []string{net.JoinHostPort(mgr.Address, strconv.Itoa(SwarmPort))},
		JoinToken:     cred.Secret(),
	})
	if err != nil {
		return fmt.Errorf("swarm join of %s: %w", n.Name, err)
	}
	var out bytes.Buffer
	if err := n.Run.Run(ctx, joinCmd, bytes.NewReader(body), &out); err != nil {
		return fmt.Errorf("swarm join of %s via %s: %w", n.Name, mgr.Name, Redact(err, cred.Secret()))
	}
	status, msg := parseAPIResponse(out.String())
	if status != 200 {
		msg = strings.ReplaceAll(msg, cred.Secret(), "[redacted]")
		return fmt.Errorf("swarm join of %s via %s: engine API status %d: %s", n.Name, mgr.Name, status, msg)
	}
	s.logger.Info("joined swarm", "machine", n.Name, "manager", mgr.Name)
	return s.label(ctx, mgr, n)
}

// label sets n's labels on its swarm node, from mgr. A node that just
// joined may not be listed by the manager for a moment: retry to the
// deadline.
func (s *Swarm) label(ctx context.Context, mgr, n Node) error {
	if len(n.Labels) == 0 {
		return nil
	}
	cmd := "docker node update"
	for _, k := range slices.Sorted(maps.Keys(n.Labels)) {
		cmd += " --label-add " + ShellQuote(k+"="+n.Labels[k])
	}
	cmd += " " + ShellQuote(n.Name)
	err := retry.Do(ctx, retry.Policy{Initial: 500 * time.Millisecond, Max: 2 * time.Second}, func(ctx context.Context) (bool, error) {
		err := mgr.Run.Run(ctx, cmd, nil, &bytes.Buffer{})
		return err == nil || ctx.Err() != nil, err
	})
	if err != nil {
		return fmt.Errorf("label swarm node %s: %w", n.Name, err)
	}
	return nil
}

// parseAPIResponse splits joinCmd's output into status and the engine's
// error message (the body's "message", or the raw body).
func parseAPIResponse(out string) (int, string) {
	out = strings.TrimRight(out, "\n")
	body, code := "", out
	if i := strings.LastIndexByte(out, '\n'); i >= 0 {
		body, code = out[:i], out[i+1:]
	}
	status, _ := strconv.Atoi(strings.TrimSpace(code))
	var e struct{ Message string }
	if json.Unmarshal([]byte(body), &e) == nil && e.Message != "" {
		return status, e.Message
	}
	return status, strings.TrimSpace(body)
}

// Remove drains n, demotes it if it manages, has it leave when reachable,
// waits for it to show as down and removes it from the member list. A node
// the swarm does not know is already removed.
func (s *Swarm) Remove(ctx context.Context, mgr Node, n Node) error {
	if n.Name == mgr.Name {
		return fmt.Errorf("swarm remove %s: cannot remove the manager used for the removal; use another manager", n.Name)
	}
	entries, err := s.entries(ctx, mgr, n.Name)
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
		wasManager = wasManager || e.ManagerStatus != ""
		if !strings.EqualFold(e.Availability, "drain") {
			if err := mgr.Run.Run(ctx, "docker node update --availability drain "+ShellQuote(e.ID), nil, &bytes.Buffer{}); err != nil {
				return fmt.Errorf("swarm remove %s: drain: %w", n.Name, err)
			}
		}
	}
	s.logger.Info("swarm node draining", "machine", n.Name)
	if err := s.waitDrained(ctx, mgr, n.Name, ids); err != nil {
		return err
	}
	if wasManager {
		for _, e := range entries {
			if e.ManagerStatus == "" {
				continue
			}
			if err := mgr.Run.Run(ctx, "docker node demote "+ShellQuote(e.ID), nil, &bytes.Buffer{}); err != nil {
				return fmt.Errorf("swarm remove %s: demote: %w", n.Name, err)
			}
		}
	}
	s.leave(ctx, n, wasManager)
	if err := s.waitDown(ctx, mgr, n.Name); err != nil {
		return err
	}
	rm := "docker node rm --force"
	for _, id := range ids {
		rm += " " + ShellQuote(id)
	}
	if err := mgr.Run.Run(ctx, rm, nil, &bytes.Buffer{}); err != nil {
		// Gone meanwhile (a concurrent remove) is success too.
		if left, lerr := s.entries(ctx, mgr, n.Name); lerr == nil && len(left) == 0 {
			return nil
		}
		return fmt.Errorf("swarm remove %s: %w", n.Name, err)
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
	state, _, err := s.localState(ctx, n)
	if err != nil || state == "inactive" {
		if err != nil {
			s.logger.Warn("swarm leave skipped: node state unknown", "machine", n.Name, "err", err)
		}
		return
	}
	cmd := "docker swarm leave"
	if force {
		cmd += " --force"
	}
	if err := n.Run.Run(ctx, cmd, nil, &bytes.Buffer{}); err != nil {
		s.logger.Warn("swarm leave failed; removing from the manager anyway", "machine", n.Name, "err", err)
	}
}

// waitDrained polls until no task meant to run is left on the node. Past
// DrainTimeout removal goes on with a warning; only ctx ending is an error.
func (s *Swarm) waitDrained(ctx context.Context, mgr Node, name string, ids []string) error {
	cmd := "docker node ps --filter desired-state=running --format '{{.ID}}'"
	for _, id := range ids {
		cmd += " " + ShellQuote(id)
	}
	return s.wait(ctx, s.DrainTimeout, name, "drain", func(ctx context.Context) (bool, error) {
		var out bytes.Buffer
		if err := mgr.Run.Run(ctx, cmd, nil, &out); err != nil {
			return false, err
		}
		return strings.TrimSpace(out.String()) == "", nil
	})
}

// waitDown polls until every entry for the node shows as down (or is gone).
func (s *Swarm) waitDown(ctx context.Context, mgr Node, name string) error {
	return s.wait(ctx, s.DownTimeout, name, "down", func(ctx context.Context) (bool, error) {
		entries, err := s.entries(ctx, mgr, name)
		if err != nil {
			return false, err
		}
		for _, e := range entries {
			if !strings.EqualFold(e.Status, "down") {
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
	entries, err := s.nodeList(ctx, mgr)
	if err != nil {
		return nil, fmt.Errorf("swarm members from %s: %w", mgr.Name, err)
	}
	members := make([]Member, 0, len(entries))
	for _, e := range entries {
		role := "worker"
		if e.ManagerStatus != "" {
			role = "manager"
		}
		members = append(members, Member{
			Name:         e.Hostname,
			Role:         role,
			Status:       strings.ToLower(e.Status),
			Availability: strings.ToLower(e.Availability),
			Leader:       e.ManagerStatus == "Leader",
		})
	}
	return members, nil
}

// nodeEntry is one line of `docker node ls --format '{{json .}}'`.
type nodeEntry struct {
	ID            string
	Hostname      string
	Status        string // Ready, Down, Unknown, Disconnected
	Availability  string // Active, Pause, Drain
	ManagerStatus string // Leader, Reachable, Unreachable; empty for workers
}

func (s *Swarm) nodeList(ctx context.Context, mgr Node) ([]nodeEntry, error) {
	var out bytes.Buffer
	if err := mgr.Run.Run(ctx, "docker node ls --format '{{json .}}'", nil, &out); err != nil {
		return nil, err
	}
	return parseNodeList(out.Bytes())
}

// entries are the nodes named name; a node that rejoined can have an old,
// down entry besides its current one.
func (s *Swarm) entries(ctx context.Context, mgr Node, name string) ([]nodeEntry, error) {
	all, err := s.nodeList(ctx, mgr)
	if err != nil {
		return nil, err
	}
	var mine []nodeEntry
	for _, e := range all {
		if e.Hostname == name {
			mine = append(mine, e)
		}
	}
	return mine, nil
}

func parseNodeList(out []byte) ([]nodeEntry, error) {
	var entries []nodeEntry
	sc := bufio.NewScanner(bytes.NewReader(out))
	for line := 1; sc.Scan(); line++ {
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		var e nodeEntry
		if err := json.Unmarshal(text, &e); err != nil {
			return nil, fmt.Errorf("docker node ls line %d: %w", line, err)
		}
		entries = append(entries, e)
	}
	return entries, sc.Err()
}

// localState is the node's own view: LocalNodeState (inactive, pending,
// active, error, locked) and whether it can manage.
func (s *Swarm) localState(ctx context.Context, n Node) (state string, control bool, err error) {
	if n.Run == nil {
		return "", false, errors.New("node is unreachable")
	}
	var out bytes.Buffer
	if err := n.Run.Run(ctx, "docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}'", nil, &out); err != nil {
		return "", false, err
	}
	fields := strings.Fields(out.String())
	if len(fields) == 0 {
		return "", false, errors.New("docker info printed no swarm state")
	}
	return fields[0], len(fields) > 1 && fields[1] == "true", nil
}
