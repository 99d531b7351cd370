package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/provisionhq/provision/bootstrap"
	"github.com/provisionhq/provision/bootstrap/cluster"
	"github.com/provisionhq/provision/plans"
	"github.com/provisionhq/provision/plans/apply"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/builtin"
	"github.com/provisionhq/provision/state"
)

// session is a loaded plan with everything a command needs to act on it.
type session struct {
	plan     *plans.Plan
	registry *providers.Registry
	dir      string // state directory
	backend  state.Backend
	log      *slog.Logger
}

func load(path string, o *options) (*session, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	log, err := o.logger(os.Stderr)
	if err != nil {
		return nil, err
	}
	reg := builtin.Registry()
	p, err := plans.Load(path, plans.Options{Providers: reg})
	if err != nil {
		return nil, err
	}
	dir := p.State.Path
	if dir == "" {
		dir = filepath.Join(".provision", p.Cluster.Name)
	}
	return &session{plan: p, registry: reg, dir: dir, backend: state.NewFile(dir), log: log}, nil
}

// managedKeyPath is where provision keeps the cluster's login key when the
// plan names none.
func (s *session) managedKeyPath() string { return filepath.Join(s.dir, "id_ed25519") }

// signers returns the keys provision logs in with, and their public halves
// to install on new machines.
func (s *session) signers() ([]ssh.Signer, []string, bool, error) {
	switch {
	case s.plan.SSH.Agent:
		if os.Getenv("SSH_AUTH_SOCK") == "" {
			return nil, nil, false, errors.New("ssh.agent is true but SSH_AUTH_SOCK is not set: start ssh-agent and ssh-add your key")
		}
		keys, err := bootstrap.AgentPublicKeys()
		if err != nil {
			return nil, nil, false, err
		}
		return nil, keys, true, nil
	case s.plan.SSH.Key != "":
		sg, err := bootstrap.LoadSigner(s.plan.SSH.Key)
		if err != nil {
			return nil, nil, false, fmt.Errorf("ssh.key: %w", err)
		}
		return []ssh.Signer{sg}, []string{authorized(sg)}, false, nil
	default:
		sg, err := bootstrap.GenerateUserKey(s.managedKeyPath())
		if err != nil {
			return nil, nil, false, fmt.Errorf("cluster login key: %w", err)
		}
		return []ssh.Signer{sg}, []string{authorized(sg)}, false, nil
	}
}

func authorized(sg ssh.Signer) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sg.PublicKey())))
}

// sshConfig is how every command dials machines.
func (s *session) sshConfig() (bootstrap.Config, []string, error) {
	sgs, pubs, agent, err := s.signers()
	if err != nil {
		return bootstrap.Config{}, nil, err
	}
	cfg := bootstrap.Config{Signers: sgs, Agent: agent, Logger: s.log}
	if b := s.plan.SSH.Bastion; b != nil {
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

// connector dials machines with the plan's SSH settings and pinned host keys.
type connector struct {
	user string
	port int
	cfg  bootstrap.Config
}

func (c *connector) target(m state.Machine) bootstrap.Target {
	port := m.Port
	if port == 0 {
		port = c.port
	}
	return bootstrap.Target{Name: m.ID, Address: m.Address, Port: port, User: c.user, HostKey: m.HostKey}
}

func (c *connector) Connect(ctx context.Context, m state.Machine) (apply.Conn, error) {
	return c.dial(ctx, m)
}

func (c *connector) dial(ctx context.Context, m state.Machine) (*bootstrap.Client, error) {
	return bootstrap.Dial(ctx, c.target(m), c.cfg)
}

// connector is how every command reaches machines; it also returns the
// public keys new machines must authorize.
func (s *session) connector() (*connector, []string, error) {
	cfg, pubs, err := s.sshConfig()
	if err != nil {
		return nil, nil, err
	}
	return &connector{user: s.plan.SSH.User, port: s.plan.SSH.Port, cfg: cfg}, pubs, nil
}

func (s *session) engine(op string, events func(apply.Event)) (*apply.Engine, error) {
	conn, pubs, err := s.connector()
	if err != nil {
		return nil, err
	}
	e := &apply.Engine{
		Providers: s.registry,
		Backend:   s.backend,
		Connector: conn,
		Prepare: func(ctx context.Context, name string, r cluster.Runner) error {
			return bootstrap.Prepare(ctx, &bootstrap.Host{Name: name, Run: r, User: s.plan.SSH.User, Logger: s.log})
		},
		Driver:         cluster.NewSwarm(s.log),
		HostKeys:       bootstrap.GenerateHostKey,
		AuthorizedKeys: pubs,
		ProviderDir:    filepath.Join(s.dir, "providers"),
		Logger:         s.log,
		Events:         events,
		Operation:      op,
	}
	return e, nil
}
