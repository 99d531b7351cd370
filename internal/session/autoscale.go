package session

import (
	"context"
	"fmt"
	"net"
	"os"
	"reflect"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/provisionhq/provision/autoscaler"
	"github.com/provisionhq/provision/autoscaler/kube"
	"github.com/provisionhq/provision/autoscaler/swarm"
	"github.com/provisionhq/provision/bootstrap"
	"github.com/provisionhq/provision/plans"
)

// SourceOptions say where the autoscaler reads demand.
type SourceOptions struct {
	// Kind is "swarm" or "kubernetes"; "" follows the plan's cluster kind.
	Kind string
	// DockerSocket is a Swarm manager's Engine API socket on this machine
	// (the autoscaler running as a service on a manager); "" reaches the
	// primary manager's socket over SSH.
	DockerSocket string
	// Kubeconfig is for Kind kubernetes; "" is the in-cluster config, then
	// $KUBECONFIG.
	Kubeconfig string
}

// DemandSource opens where the autoscaler reads the cluster's demand;
// close releases its connections.
func (s *Session) DemandSource(o SourceOptions) (src autoscaler.Source, close func(), err error) {
	kind := o.Kind
	if kind == "" {
		kind = "swarm"
		if s.Plan.Cluster.Kind == "k3s" || s.Plan.Cluster.Kind == "kubeadm" {
			kind = "kubernetes"
		}
	}
	switch kind {
	case "swarm":
		if o.DockerSocket != "" {
			return swarm.New(swarm.UnixDialer(o.DockerSocket), swarm.Options{Logger: s.Log}), func() {}, nil
		}
		d := &managerDialer{s: s}
		return swarm.New(d.dial, swarm.Options{Logger: s.Log}), d.close, nil
	case "kubernetes":
		cfg, err := kube.Config(o.Kubeconfig)
		if err != nil {
			return nil, nil, err
		}
		client, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, nil, fmt.Errorf("kubernetes client: %w", err)
		}
		return kube.New(client, kube.Options{Logger: s.Log}), func() {}, nil
	}
	return nil, nil, fmt.Errorf("demand source %q: use swarm or kubernetes", kind)
}

// dockerSocket is the Engine API socket on a Swarm manager.
const dockerSocket = "/var/run/docker.sock"

// managerDialer reaches a manager's Engine API socket through one SSH
// connection, redialled when it breaks; the manager is looked up in state
// each time, so a replaced manager is followed.
type managerDialer struct {
	s      *Session
	mu     sync.Mutex
	client *bootstrap.Client
}

func (d *managerDialer) dial(ctx context.Context) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client != nil {
		conn, err := d.client.DialUnix(ctx, dockerSocket)
		if err == nil {
			return conn, nil
		}
		d.s.Log.Debug("ssh to manager broke, redialling", "err", err)
		_ = d.client.Close()
		d.client = nil
	}
	st, err := d.s.Backend.Read(ctx)
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	client, m, err := d.s.DialManager(ctx, st)
	if err != nil {
		return nil, err
	}
	conn, err := client.DialUnix(ctx, dockerSocket)
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("docker socket on manager %s: %w", m.ID, err)
	}
	d.client = client
	return conn, nil
}

func (d *managerDialer) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client != nil {
		_ = d.client.Close()
		d.client = nil
	}
}

// Reloader returns the autoscaler's plan reloader: it rereads the plan file
// at path when it changes on disk (an edit, a new ConfigMap version), so
// pool bounds and new pools apply without a restart, and makes it the
// session's plan. opts are the loader's options; adjust, when set, applies
// the process's overrides (its login key, its artifacts) to each new plan.
// What the running process is built on (cluster, ssh, state) cannot change
// under it: such an edit is refused. It returns nil, nil when the file is
// unchanged.
func (s *Session) Reloader(path string, opts plans.Options, adjust func(*plans.Plan)) func() (*plans.Plan, error) {
	r := &reloader{s: s, path: path, opts: opts, adjust: adjust}
	if fi, err := os.Stat(path); err == nil {
		r.mod, r.size = fi.ModTime(), fi.Size()
	}
	return r.reload
}

type reloader struct {
	s      *Session
	path   string
	opts   plans.Options
	adjust func(*plans.Plan)
	mu     sync.Mutex
	mod    time.Time
	size   int64
}

func (r *reloader) reload() (*plans.Plan, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fi, err := os.Stat(r.path)
	if err != nil {
		return nil, fmt.Errorf("reread plan: %w", err)
	}
	if fi.ModTime().Equal(r.mod) && fi.Size() == r.size {
		return nil, nil
	}
	r.mod, r.size = fi.ModTime(), fi.Size()
	opts := r.opts
	opts.Providers = r.s.Registry
	p, err := plans.Load(r.path, opts)
	if err != nil {
		return nil, err
	}
	if r.adjust != nil {
		r.adjust(p)
	}
	old := r.s.Plan
	if p.Cluster != old.Cluster || !reflect.DeepEqual(p.SSH, old.SSH) || !reflect.DeepEqual(p.State, old.State) {
		return nil, fmt.Errorf("%s changed its cluster, ssh or state settings: restart the autoscaler to apply them", r.path)
	}
	r.s.Plan = p
	return p, nil
}
