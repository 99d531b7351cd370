package session

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/moby/moby/client"
	"golang.org/x/sync/errgroup"

	"github.com/provisionhq/provision/autoscaler/service"
	"github.com/provisionhq/provision/bootstrap/artifacts"
	"github.com/provisionhq/provision/bootstrap/cluster"
	"github.com/provisionhq/provision/state"
	"github.com/provisionhq/provision/state/etcd"
	"github.com/provisionhq/provision/state/etcd/transport"
)

// DeployOptions shape the autoscaler service.
type DeployOptions struct {
	Replicas uint64
	// SSHKey, when set, is the login key file the service uses instead of
	// the plan's ssh.key or the managed key.
	SSHKey string
	// Wait bounds the wait for the replicas to run (0: do not wait).
	Wait     time.Duration
	LogLevel string
	// Binary is the provision binary the image holds (default: this one).
	Binary string
	// Progress, when set, is told each step.
	Progress func(msg string)
}

// Deployed says what DeployAutoscaler did.
type Deployed struct {
	service.Result
	Image    string
	Loaded   []string // managers the image was loaded on (the others had it)
	Managers int
	Secrets  []string // the secrets' file names in the service
}

// DeployAutoscaler runs `provision autoscale` as a Swarm service on the
// cluster's managers: the image of the provision binary is loaded on each
// manager over SSH, the login key, etcd credentials and the cloud
// credentials of this environment become Swarm secrets, and the plan,
// pointed at them, a Swarm config. Running it again with nothing changed
// changes nothing; with a new binary, plan or key it updates the service.
func (s *Session) DeployAutoscaler(ctx context.Context, o DeployOptions) (Deployed, error) {
	var out Deployed
	say := func(format string, args ...any) {
		if o.Progress != nil {
			o.Progress(fmt.Sprintf(format, args...))
		}
	}
	if o.Replicas == 0 {
		o.Replicas = 2
	}
	if err := s.deployable(); err != nil {
		return out, err
	}
	if o.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return out, err
		}
		o.Binary = exe
	}
	d, err := s.deployment(o)
	if err != nil {
		return out, err
	}
	for _, f := range d.Secrets {
		out.Secrets = append(out.Secrets, f.Name)
	}
	out.Image = d.Image

	st, err := s.Backend.Read(ctx)
	if err != nil {
		return out, fmt.Errorf("read state: %w", err)
	}
	managers := st.ManagersFrom("")
	if len(managers) == 0 {
		return out, fmt.Errorf("cluster %s has no joined manager: run provision up first", s.Plan.Cluster.Name)
	}
	out.Managers = len(managers)
	conn, _, err := s.Connector()
	if err != nil {
		return out, err
	}
	archive := &imageArchive{exe: o.Binary, ref: d.Image}
	defer archive.remove()

	say("loading image %s on %d manager(s)", d.Image, len(managers))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, id := range managers {
		m := *st.Machine(id)
		g.Go(func() error {
			var loaded bool
			err := onEngine(gctx, conn, m, func(ctx context.Context, c *client.Client) (err error) {
				loaded, err = service.LoadImage(ctx, c, d.Image, archive.open)
				return err
			})
			if err != nil {
				return fmt.Errorf("manager %s: %w", m.ID, err)
			}
			if loaded {
				mu.Lock()
				out.Loaded = append(out.Loaded, m.ID)
				mu.Unlock()
				say("loaded %s on %s", d.Image, m.ID)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return out, err
	}
	slices.Sort(out.Loaded)

	primary := *st.Machine(managers[0])
	err = onEngine(ctx, conn, primary, func(ctx context.Context, c *client.Client) (err error) {
		if out.Result, err = service.Apply(ctx, c, d); err != nil {
			return err
		}
		switch {
		case out.Created:
			say("created service %s (%d replicas, secrets: %v)", service.Name, d.Replicas, out.Secrets)
		case out.Changed:
			say("updated service %s", service.Name)
		default:
			say("service %s is up to date", service.Name)
		}
		if o.Wait <= 0 {
			return nil
		}
		wctx, cancel := context.WithTimeout(ctx, o.Wait)
		defer cancel()
		return service.Wait(wctx, c, d, func(n int) { say("%d of %d replicas running", n, d.Replicas) })
	})
	if err != nil {
		return out, fmt.Errorf("deploy %s on %s: %w", service.Name, primary.ID, err)
	}
	return out, nil
}

// deployable refuses plans the service cannot run.
func (s *Session) deployable() error {
	p := s.Plan
	if p.Cluster.Kind == "kubeadm" {
		return fmt.Errorf("cluster %s is kind kubeadm: run the autoscaler as a Deployment (examples/kubernetes/autoscaler.yaml)", p.Cluster.Name)
	}
	auto := p.Autoscaled()
	if len(auto) == 0 {
		return fmt.Errorf("%s has no autoscaled pool: add an autoscale block to a worker pool, e.g. autoscale: {min: 1, max: 10}", p.Path)
	}
	for _, pool := range p.Pools {
		if auto[pool.Name] && (pool.Provider == "docker" || pool.Provider == "static") {
			return fmt.Errorf("pool %s uses the %s provider, whose machines only the machine that ran up can create: run provision autoscale %s there instead of in the cluster",
				pool.Name, pool.Provider, p.Path)
		}
	}
	if p.State.Backend != "etcd" {
		return fmt.Errorf("state.backend is %q: the autoscaler service reads and writes the cluster's state from the managers, and its replicas elect a leader, through etcd; set state.backend: etcd (and run provision up once to move the state there)",
			cmp.Or(p.State.Backend, "file"))
	}
	if len(p.State.Endpoints) == 0 {
		return fmt.Errorf("%s names no state.endpoints (%s is this shell's, not the service's): write the etcd endpoints the managers reach into the plan", p.Path, etcd.EnvEndpoints)
	}
	for _, ep := range p.State.Endpoints {
		if transport.OnThisMachine(ep) {
			return fmt.Errorf("state.endpoints %s is on this machine only: the service runs on the managers and cannot reach it; give an address the managers reach", ep)
		}
	}
	return nil
}

// deployment gathers the service's image reference, secrets and plan.
func (s *Session) deployment(o DeployOptions) (service.Deployment, error) {
	p := s.Plan
	d := service.Deployment{Cluster: p.Cluster.Name, Replicas: o.Replicas, LogLevel: o.LogLevel}
	ref, err := service.ContentRef(o.Binary)
	if err != nil {
		return d, err
	}
	d.Image = ref

	key := o.SSHKey
	switch {
	case key != "":
	case p.SSH.Key != "":
		key = p.SSH.Key
	case p.SSH.Agent:
		return d, errors.New("ssh.agent is true, and the service has no agent: pass the login key file with --ssh-key")
	default:
		key = s.ManagedKeyPath()
	}
	// Each file the plan names goes along as a secret, and the plan the
	// service reads names the secret instead.
	type secretFile struct{ name, setting, path string }
	files := []secretFile{{"ssh-key", "ssh.key", key}, {"etcd-password", "state.password_file", p.State.PasswordFile}}
	if b := p.SSH.Bastion; b != nil {
		files = append(files, secretFile{"bastion-key", "ssh.bastion.key", b.Key})
	}
	if t := p.State.TLS; t != nil {
		files = append(files, secretFile{"etcd-ca", "state.tls.ca", t.CA},
			secretFile{"etcd-cert", "state.tls.cert", t.Cert}, secretFile{"etcd-key", "state.tls.key", t.Key})
	}
	set := map[string]string{}
	if p.SSH.Agent {
		set["ssh.agent"] = "false"
	}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		data, err := os.ReadFile(f.path)
		if err != nil {
			return d, fmt.Errorf("%s: %w", f.setting, err)
		}
		sf := service.File{Name: f.name, Data: data}
		d.Secrets = append(d.Secrets, sf)
		set[f.setting] = sf.Path()
	}
	src, err := os.ReadFile(p.Path)
	if err != nil {
		return d, err
	}
	if d.Plan, err = service.Relocate(src, set); err != nil {
		return d, fmt.Errorf("%s: %w", p.Path, err)
	}

	var providers []string
	for _, pool := range p.Pools {
		if !slices.Contains(providers, pool.Provider) {
			providers = append(providers, pool.Provider)
		}
	}
	creds, err := service.Credentials(os.Environ(), providers, os.ReadFile)
	if err != nil {
		return d, fmt.Errorf("cloud credentials: %w", err)
	}
	d.Secrets = append(d.Secrets, creds...)
	return d, nil
}

// onEngine runs f with the Engine API of machine m, over SSH.
func onEngine(ctx context.Context, c *Connector, m state.Machine, f func(ctx context.Context, c *client.Client) error) error {
	conn, err := c.Dial(ctx, m)
	if err != nil {
		return err
	}
	defer conn.Close()
	e, err := cluster.Engine(ctx, cluster.Node{Name: m.ID, Address: m.Address, Role: m.Role, Run: conn})
	if err != nil {
		return err
	}
	defer e.Close()
	return f(ctx, e)
}

// imageArchive writes the image archive once, the first time a manager
// needs it, and removes it at the end.
type imageArchive struct {
	exe, ref string
	once     sync.Once
	path     string
	err      error
}

func (a *imageArchive) open() (io.ReadCloser, error) {
	a.once.Do(func() {
		im, err := service.Image(a.exe, a.ref)
		if err != nil {
			a.err = err
			return
		}
		dir, err := os.MkdirTemp("", "provision-autoscaler-image-")
		if err != nil {
			a.err = err
			return
		}
		a.path = filepath.Join(dir, "image.tar")
		a.err = artifacts.WriteImages(a.path, im)
	})
	if a.err != nil {
		return nil, fmt.Errorf("write the autoscaler image: %w", a.err)
	}
	return os.Open(a.path)
}

func (a *imageArchive) remove() {
	if a.path != "" {
		os.RemoveAll(filepath.Dir(a.path))
	}
}
