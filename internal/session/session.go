// Package session owns the wiring between a loaded plan and the engine: which
// state backend, which login keys, how machines are dialled, which cluster
// driver. Every front end (the CLI, the autoscaler, the Pulumi provider)
// builds its engine here, so they all act on machines the same way.
package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/provisionhq/provision/bootstrap"
	"github.com/provisionhq/provision/bootstrap/artifacts"
	"github.com/provisionhq/provision/bootstrap/cluster"
	"github.com/provisionhq/provision/bootstrap/cluster/kubeadm"
	"github.com/provisionhq/provision/plans"
	"github.com/provisionhq/provision/plans/apply"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/builtin"
	"github.com/provisionhq/provision/providers/hostkey"
	"github.com/provisionhq/provision/state"
	"github.com/provisionhq/provision/state/etcd"
	"github.com/provisionhq/provision/state/etcd/transport"
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
	// Progress, when set, takes the progress lines of long work done before
	// the engine runs (a first Kubernetes build, ~15 min), which must show
	// even when Log is quieted to warnings next to a progress display.
	Progress *slog.Logger
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
	return LoadWith(ctx, path, log, plans.Options{})
}

// LoadWith is Load with loader options (the providers are always the
// built-in registry).
func LoadWith(ctx context.Context, path string, log *slog.Logger, opts plans.Options) (*Session, error) {
	reg := builtin.Registry()
	opts.Providers = reg
	p, err := plans.Load(path, opts)
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
		b, err := openEtcd(ctx, p, log)
		if err != nil {
			return nil, err
		}
		s.Backend, s.Etcd = b, b
	default:
		s.Backend = state.NewFile(dir)
	}
	return s, nil
}

// openEtcd connects to the plan's etcd: its endpoints, or those in
// PROVISION_ETCD_ENDPOINTS, which the backend holds to the plan's rules
// (TLS, or plaintext to loopback or with state.insecure) as the loader did
// the plan's own; its TLS files; its user, with the password from
// PROVISION_ETCD_PASSWORD or state.password_file.
func openEtcd(ctx context.Context, p *plans.Plan, log *slog.Logger) (*etcd.Backend, error) {
	st := p.State
	cfg := etcd.Config{Endpoints: st.Endpoints, Cluster: p.Cluster.Name, Prefix: st.Prefix,
		Username: st.Username, Insecure: st.Insecure, Logger: log}
	from := "state.endpoints"
	if eps := etcd.EndpointsFromEnv(); len(eps) > 0 {
		cfg.Endpoints, from = eps, etcd.EnvEndpoints
	}
	if t := st.TLS; t != nil {
		var err error
		if cfg.TLS, err = (transport.Files{CA: t.CA, Cert: t.Cert, Key: t.Key}).Load(); err != nil {
			return nil, fmt.Errorf("open state on etcd: state.tls: %w", err)
		}
	}
	if st.Username != "" {
		var err error
		if cfg.Password, err = etcd.ReadPassword(st.PasswordFile); err != nil {
			return nil, fmt.Errorf("open state on etcd: %w", err)
		}
	}
	b, err := etcd.New(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open state on etcd (endpoints from %s): %w", from, err)
	}
	return b, nil
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
	return bootstrap.Target{Name: m.ID, Address: m.Address, Port: port, User: c.user, HostKey: m.HostKey, NextHostKey: m.NextHostKey,
		FormerHostKeys: m.FormerHostKeys}
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
func (s *Session) Driver() cluster.Driver {
	if s.Plan.Cluster.Kind == "kubeadm" {
		return s.kubeadm(nil)
	}
	return cluster.NewSwarm(s.Log)
}

func (s *Session) kubeadm(b *artifacts.Bundle) *kubeadm.Driver {
	k := s.Plan.Kubernetes
	return kubeadm.New(kubeadm.Config{
		ClusterName: s.Plan.Cluster.Name, Version: k.Version, Endpoint: k.Endpoint,
		PodCIDR: k.PodCIDR, ServiceCIDR: k.ServiceCIDR, Bundle: b, Images: k.Images, Logger: s.Log,
	})
}

// Artifacts gathers the Kubernetes artifacts a kubeadm plan pushes to its
// nodes: from the cache when they were gathered before, else built or
// downloaded now (the first build takes about 15 minutes).
func (s *Session) Artifacts(ctx context.Context) (*artifacts.Bundle, error) {
	k := s.Plan.Kubernetes
	log := s.Progress
	if log == nil {
		log = s.Log
	}
	b, err := artifacts.Gather(ctx, artifacts.Options{
		Version: k.Version, Source: k.Artifacts.Source, Dir: k.Artifacts.Dir, BaseURL: k.Artifacts.URL, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("kubernetes artifacts: %w", err)
	}
	return b, nil
}

// Engine returns an engine that applies the plan; op names the run in the
// state lock ("up", "autoscale", "pulumi"). For a kubeadm plan it gathers
// the Kubernetes artifacts first, so no machine waits on a build.
func (s *Session) Engine(ctx context.Context, op string, events func(apply.Event)) (*apply.Engine, error) {
	conn, pubs, err := s.Connector()
	if err != nil {
		return nil, err
	}
	driver := s.Driver()
	prepare := func(ctx context.Context, m state.Machine, h *bootstrap.Host) error { return bootstrap.Prepare(ctx, h) }
	if s.Plan.Cluster.Kind == "kubeadm" {
		b, err := s.Artifacts(ctx)
		if err != nil {
			return nil, err
		}
		kd := s.kubeadm(b)
		driver = kd
		prepare = func(ctx context.Context, m state.Machine, h *bootstrap.Host) error {
			return bootstrap.RunSteps(ctx, h, h.Steps(kd.PrepareSteps(h, m.Role)...))
		}
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
			return prepare(ctx, m, h)
		},
		Driver:         driver,
		HostKeys:       hostkey.Generate,
		HostKeyRotator: bootstrap.Rotator{},
		AuthorizedKeys: pubs,
		ProviderDir:    s.ProviderDir(),
		Logger:         s.Log,
		Events:         events,
		Operation:      op,
	}, nil
}

// Destroyer returns an engine for Destroy and Refresh, which need no login
// key: they reach machines through their providers only. op names the run
// in the state lock ("down", "refresh").
func (s *Session) Destroyer(op string, events func(apply.Event)) *apply.Engine {
	return &apply.Engine{Providers: s.Registry, Backend: s.Backend, Logger: s.Log, Events: events,
		ProviderDir: s.ProviderDir(), Operation: op}
}

// Members asks a manager who is in the cluster: the primary, or the next
// joined manager when it does not answer.
func (s *Session) Members(ctx context.Context, st *state.State) (map[string]cluster.Member, error) {
	out := map[string]cluster.Member{}
	err := s.onManager(ctx, st, func(ctx context.Context, conn *bootstrap.Client, m state.Machine) error {
		list, err := s.Driver().Members(ctx, cluster.Node{Name: m.ID, Address: m.Address, Role: m.Role, Run: conn})
		for _, mem := range list {
			out[mem.Name] = mem
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DialManager opens an SSH client to the first joined manager that answers,
// the primary first (apply.DialManager: the order and the bound on each try
// are the engine's). The caller closes it.
func (s *Session) DialManager(ctx context.Context, st *state.State) (*bootstrap.Client, state.Machine, error) {
	c, _, err := s.Connector()
	if err != nil {
		return nil, state.Machine{}, err
	}
	return apply.DialManager(ctx, st, "", c.Dial)
}

// onManager runs f on a session to the first joined manager that answers
// and on which f succeeds, the primary first: a lost control-plane node, or
// one whose cluster agent is down, must not blind provision to the cluster.
// Each manager gets the bound DialManager gives it, f included.
func (s *Session) onManager(ctx context.Context, st *state.State, f func(ctx context.Context, conn *bootstrap.Client, m state.Machine) error) error {
	c, _, err := s.Connector()
	if err != nil {
		return err
	}
	_, _, err = apply.DialManager(ctx, st, "", func(ctx context.Context, m state.Machine) (struct{}, error) {
		conn, err := c.Dial(ctx, m)
		if err != nil {
			return struct{}{}, err
		}
		defer conn.Close()
		return struct{}{}, f(ctx, conn, m)
	})
	return err
}

// Kubeconfig returns an admin kubeconfig for a kubeadm cluster, read from a
// control-plane node over SSH, whose server is the plan's endpoint or the
// first control-plane node that answers. Its CA is the cluster's own; it
// holds the admin's private key, so write it 0600.
func (s *Session) Kubeconfig(ctx context.Context, st *state.State) ([]byte, error) {
	if s.Plan.Cluster.Kind != "kubeadm" {
		return nil, fmt.Errorf("cluster %q is a %s cluster: kubeconfig is for kind: kubeadm", s.Plan.Cluster.Name, s.Plan.Cluster.Kind)
	}
	var b []byte
	err := s.onManager(ctx, st, func(ctx context.Context, conn *bootstrap.Client, m state.Machine) error {
		var err error
		b, err = s.kubeconfigFrom(ctx, conn, m)
		return err
	})
	return b, err
}

func (s *Session) kubeconfigFrom(ctx context.Context, conn *bootstrap.Client, m state.Machine) ([]byte, error) {
	var out bytes.Buffer
	if err := conn.Run(ctx, "cat /etc/kubernetes/admin.conf", nil, &out); err != nil {
		return nil, fmt.Errorf("read admin.conf on %s: %w", m.ID, err)
	}
	cfg, err := clientcmd.Load(out.Bytes())
	if err != nil {
		return nil, fmt.Errorf("admin.conf on %s: %w", m.ID, err)
	}
	server := "https://" + net.JoinHostPort(m.Address, strconv.Itoa(kubeadm.APIPort))
	if ep := s.Plan.Kubernetes.Endpoint; ep != "" {
		server = "https://" + kubeadm.EndpointAddr(ep)
	}
	for _, cl := range cfg.Clusters {
		cl.Server = server
	}
	return clientcmd.Write(*cfg)
}
