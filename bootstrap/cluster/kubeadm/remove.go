package kubeadm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/provisionhq/provision/autoscaler/kube"
	"github.com/provisionhq/provision/bootstrap/cluster"
)

// Tunneler is a Runner that can also open TCP connections from the machine
// (an SSH client's direct-tcpip channel), so provision reaches a manager's
// API server on its loopback without exposing it.
type Tunneler interface {
	DialTCP(ctx context.Context, addr string) (net.Conn, error)
}

// Remove drains n through the Eviction API (PodDisruptionBudgets hold: the
// drain waits for them, up to DrainTimeout), resets it when it answers
// (a control-plane node leaves etcd then), and deletes its Node object.
func (d *Driver) Remove(ctx context.Context, mgr, n cluster.Node) error {
	if n.Name == mgr.Name {
		return fmt.Errorf("kubernetes remove %s: cannot remove the node used for the removal; use another control-plane node", n.Name)
	}
	if err := d.drain(ctx, mgr, n.Name); err != nil {
		return fmt.Errorf("kubernetes remove %s: %w", n.Name, err)
	}
	if n.Run != nil {
		if err := n.Run.Run(ctx, resetCmd+"\nprovision-service stop kubelet; provision-service stop api-lb 2>/dev/null || true", nil, &bytes.Buffer{}); err != nil {
			d.log.Warn("kubeadm reset failed; removing the node from the cluster anyway", "machine", n.Name, "err", err)
		}
	}
	if err := mgr.Run.Run(ctx, kubectl+" delete node --ignore-not-found "+shellQuote(n.Name), nil, &bytes.Buffer{}); err != nil {
		return fmt.Errorf("kubernetes remove %s: delete node: %w", n.Name, err)
	}
	d.log.Info("kubernetes node removed", "machine", n.Name)
	return nil
}

func (d *Driver) drain(ctx context.Context, mgr cluster.Node, name string) error {
	cs, err := d.Client(ctx, mgr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.DrainTimeout)
	defer cancel()
	start := time.Now()
	if err := kube.New(cs, kube.Options{Logger: d.log}).Drain(ctx, name); err != nil {
		return err
	}
	d.log.Info("kubernetes node drained", "machine", name, "duration", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// Client is a Kubernetes client for mgr's cluster: the admin credentials
// read from mgr over SSH (held in memory only) and every request tunnelled
// through mgr's SSH connection to its API server on 127.0.0.1, so it works
// wherever provision can SSH, whatever the network between.
func (d *Driver) Client(ctx context.Context, mgr cluster.Node) (kubernetes.Interface, error) {
	cfg, err := d.RESTConfig(ctx, mgr)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// RESTConfig is Client's configuration.
func (d *Driver) RESTConfig(ctx context.Context, mgr cluster.Node) (*rest.Config, error) {
	t, ok := mgr.Run.(Tunneler)
	if !ok {
		return nil, errors.New("the manager's connection cannot open tunnels")
	}
	var out bytes.Buffer
	if err := mgr.Run.Run(ctx, "cat "+adminConf, nil, &out); err != nil {
		return nil, fmt.Errorf("read admin credentials from %s: %w", mgr.Name, err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(out.Bytes())
	if err != nil {
		return nil, fmt.Errorf("admin credentials from %s: %w", mgr.Name, err)
	}
	target := fmt.Sprintf("127.0.0.1:%d", APIPort)
	cfg.Host = "https://" + target
	// "kubernetes" is in every API server certificate kubeadm makes.
	cfg.TLSClientConfig.ServerName = "kubernetes"
	cfg.Dial = func(ctx context.Context, _, _ string) (net.Conn, error) { return t.DialTCP(ctx, target) }
	cfg.Timeout = 30 * time.Second
	return cfg, nil
}
