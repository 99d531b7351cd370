// Package session owns the wiring between a loaded plan and the engine: which
// state backend, which login keys, how machines are dialled, which cluster
// driver. Every front end (the CLI, the autoscaler, the Pulumi provider)
// builds its engine here, so they all act on machines the same way.
package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/provisionhq/provision/bootstrap"
	"github.com/provisionhq/provision/bootstrap/cluster"
	"github.com/provisionhq/provision/plans"
	"github.com/provisionhq/provision/plans/apply"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/builtin"
	"github.com/provisionhq/provision/state"
	"github.com/provisionhq/provision/state/etcd"
)

// Session is a loaded plan with everything needed to act on it.
type Session struct {
	Plan     *plans.Plan
	Registry *providers.Registry
	// Dir is the cluster's local directory: the file state, the managed
	// login key, provider files.
	Dir     string
	Backend state.Backend
	Log     *slog.Logger
	// Signer, when set, is the login key, overriding the plan's ssh.key and
	// the managed key (the Pulumi provider holds its key as a secret, never
	// on disk).
	Signer ssh.Signer
	// Etcd is the state backend when the plan's state is on etcd (nil
	// otherwise), for leader election on the same cluster.
	Etcd *etcd.Backend
}

// Load reads and validates the plan at path and opens its state: a file
// (default) or etcd. Close releases the backend.
func Load(ctx context.Context, path string, log *slog.Logger) (*Session, error) {
	reg := builtin.Registry()
	p, err := plans.Load(path, plans.Options{Providers: reg})
	if err != nil {
		return nil, err
	}
	dir := p.State.Path
	if dir == "" {
		dir = filepath.Join(".provision", p.Cluster.Name)
	}
	s := &Session{Plan: p, Registry: reg, Dir: dir, Log: log}
	switch p.State.Backend {
	case "etcd":
		eps := etcd.EndpointsFromEnv()
		if len(eps) == 0 {
			eps = p.State.Endpoints
		}
		b, err := etcd.New(ctx, etcd.Config{Endpoints: eps, Cluster: p.Cluster.Name, Prefix: p.State.Prefix, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("open state on etcd: %w", err)
		}
		s.Backend, s.Etcd = b, b
	default:
		s.Backend = state.NewFile(dir)
	}
	return s, nil
}

// Close releases the state backend's connections.
func (s *Session) Close() error {
	if s.Etcd != nil {
		return s.Etcd.Close()
	}
	return nil
}

// ManagedKeyPath is where provision keeps the cluster's login key when the
// plan names none.
func (s *Session) ManagedKeyPath() string { return filepath.Join(s.Dir, "id_ed25519") }

// ProviderDir is where providers may keep files (see providers.Env).
func (s *Session) ProviderDir() string { return filepath.Join(s.Dir, "providers") }

// signers returns the keys provision logs in with, and their public halves
// to install on new machines.
func (s *Session) signers() ([]ssh.Signer, []string, bool, error) {
	switch {
	case s.Signer != nil:
		return []ssh.Signer{s.Signer}, []string{Authorized(s.Signer)}, false, nil
	case s.Plan.SSH.Agent:
		if os.Getenv("SSH_AUTH_SOCK") == "" {
			return nil, nil, false, errors.New("ssh.agent is true but SSH_AUTH_SOCK is not set: start ssh-agent and ssh-add your key")
		}
		keys, err := bootstrap.AgentPublicKeys()
		if err != nil {
			return nil, nil, false, err
		}
		return nil, keys, true, nil
	case s.Plan.SSH.Key != "":
		sg, err := bootstrap.LoadSigner(s.Plan.SSH.Key)
		if err != nil {
			return nil, nil, false, fmt.Errorf("ssh.key: %w", err)
		}
		return []ssh.Signer{sg}, []string{Authorized(sg)}, false, nil
	default:
		sg, err := bootstrap.GenerateUserKey(s.ManagedKeyPath())
		if err != nil {
			return nil, nil, false, fmt.Errorf("cluster login key: %w", err)
		}
		return []ssh.Signer{sg}, []string{Authorized(sg)}, false, nil
	}
}

// Authorized is sg's public key in authorized_keys form.
func Authorized(sg ssh.Signer) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sg.PublicKey())))
}

// sshConfig is how every command dials machines.
func (s *Session) sshConfig() (bootstrap.Config, []string, error) {
	sgs, pubs, agent, err := s.signers()
	if err != nil {
		return bootstrap.Config{}, nil, err
	}
	cfg := bootstrap.Config{Signers: sgs, Agent: agent, Logger: s.Log}
	if b := s.Plan.SSH.Bastion; b != nil {
		cfg.Bastion = &bootstrap.Target{Name: "bastion", Address: b.Host, Port: b.Port, User: b.User, HostKey: b.HostKey}
		cfg.BastionSigners = sgs
		if b.Key != "" {
			bs, err := bootstrap.LoadSigner(b.Key)
			if err != nil {
				return cfg, nil, fmt.Errorf("ssh.bastion.key: %w", err)
			}
			cfg.BastionSigners = []ssh.Signer{bs}
		}
	}
	return cfg, pubs, nil
}

// Connector dials machines with the plan's SSH settings and pinned host keys.
type Connector struct {
	user string
	port int
	cfg  bootstrap.Config
}

func (c *Connector) target(m state.Machine) bootstrap.Target {
	port := m.Port
	if port == 0 {
		port = c.port
	}
	return bootstrap.Target{Name: m.ID, Address: m.Address, Port: port, User: c.user, HostKey: m.HostKey}
}

// Connect implements apply.Connector.
func (c *Connector) Connect(ctx context.Context, m state.Machine) (apply.Conn, error) {
	return c.Dial(ctx, m)
}

// Dial opens an SSH client to m, checking its pinned host key.
func (c *Connector) Dial(ctx context.Context, m state.Machine) (*bootstrap.Client, error) {
	return bootstrap.Dial(ctx, c.target(m), c.cfg)
}

// Connector is how every front end reaches machines; it also returns the
// public keys new machines must authorize.
func (s *Session) Connector() (*Connector, []string, error) {
	cfg, pubs, err := s.sshConfig()
	if err != nil {
		return nil, nil, err
	}
	return &Connector{user: s.Plan.SSH.User, port: s.Plan.SSH.Port, cfg: cfg}, pubs, nil
}

// Driver is the cluster driver for the plan's cluster kind.
func (s *Session) Driver() cluster.Driver { return cluster.NewSwarm(s.Log) }

// Engine returns an engine that applies the plan; op names the run in the
// state lock ("up", "autoscale", "pulumi").
func (s *Session) Engine(op string, events func(apply.Event)) (*apply.Engine, error) {
	conn, pubs, err := s.Connector()
	if err != nil {
		return nil, err
	}
	return &apply.Engine{
		Providers: s.Registry,
		Backend:   s.Backend,
		Connector: conn,
		Prepare: func(ctx context.Context, m state.Machine, r cluster.Runner) error {
			h := &bootstrap.Host{Name: m.ID, Run: r, User: s.Plan.SSH.User, Logger: s.Log}
			if pool := s.Plan.Pool(m.Pool); pool != nil {
				h.Setup = pool.Setup
			}
			return bootstrap.Prepare(ctx, h)
		},
		Driver:         s.Driver(),
		HostKeys:       bootstrap.GenerateHostKey,
		AuthorizedKeys: pubs,
		ProviderDir:    s.ProviderDir(),
		Logger:         s.Log,
		Events:         events,
		Operation:      op,
	}, nil
}

// Destroyer returns an engine for Destroy, which needs no login key: machines
// are deleted through their providers.
func (s *Session) Destroyer(events func(apply.Event)) *apply.Engine {
	return &apply.Engine{Providers: s.Registry, Backend: s.Backend, Logger: s.Log, Events: events,
		ProviderDir: s.ProviderDir(), Operation: "down"}
}

// Members asks the primary manager who is in the cluster.
func (s *Session) Members(ctx context.Context, st *state.State) (map[string]cluster.Member, error) {
	id := plans.PrimaryManager(st)
	if id == "" {
		return nil, errors.New("no joined manager")
	}
	c, _, err := s.Connector()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	m := *st.Machine(id)
	conn, err := c.Connect(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("connect to manager %s: %w", id, err)
	}
	defer conn.Close()
	list, err := s.Driver().Members(ctx, cluster.Node{Name: m.ID, Address: m.Address, Role: m.Role, Run: conn})
	if err != nil {
		return nil, err
	}
	out := map[string]cluster.Member{}
	for _, mem := range list {
		out[mem.Name] = mem
	}
	return out, nil
}
