// Package kubeadm owns making machines Kubernetes nodes with kubeadm: the
// node's runtime (containerd, the pushed Kubernetes artifacts, the kubelet
// as a service), the first control-plane node's init, joins of workers and
// further control-plane nodes, a node-local API load balancer, the pod
// network, and drain and removal. It is the cluster.Driver for kind: kubeadm
// and runs the same steps on every provider's machines.
package kubeadm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/provisionhq/provision/bootstrap/artifacts"
	"github.com/provisionhq/provision/bootstrap/cluster"
	"github.com/provisionhq/provision/internal/retry"
)

const (
	// APIPort is where every control-plane node's API server listens.
	APIPort = 6443
	// localLB is the node-local API load balancer every node's
	// components reach the API through when the plan names no endpoint.
	localLB = "127.0.0.1:6444"

	roleManager = "manager"
	adminConf   = "/etc/kubernetes/admin.conf"
	kubectl     = "kubectl --kubeconfig " + adminConf + " --request-timeout=20s"
	// doneMarker is written once init or join has fully succeeded; without
	// it a node holding kubeadm's files was interrupted and is reset first.
	doneMarker = "/var/lib/provision/kubeadm.done"
	initConf   = "/etc/provision/kubeadm-init.yaml"
	joinConf   = "/etc/provision/kubeadm-join.yaml"
	proxyConf  = "/etc/provision/kube-proxy.yaml"
)

// Config is what the driver needs to know of the cluster.
type Config struct {
	ClusterName string
	Version     string // "v1.37.2"
	// Endpoint is the plan's load balancer (host or host:port); empty runs
	// the node-local balancer on every node.
	Endpoint    string
	PodCIDR     string
	ServiceCIDR string
	// Bundle is the artifacts pushed to nodes; only Prepare needs it.
	Bundle *artifacts.Bundle
	// Images are local image archives imported into every node's
	// containerd during Prepare.
	Images []string
	Logger *slog.Logger
	// DrainTimeout bounds evicting a node's pods before it is removed.
	// Default 5 min.
	DrainTimeout time.Duration
}

// Driver is the kubeadm cluster driver.
type Driver struct {
	cfg Config
	log *slog.Logger
	// cpJoin runs control-plane joins one at a time: each adds an etcd
	// member, and etcd refuses a second while the first is catching up.
	cpJoin sync.Mutex

	imagesOnce sync.Once
	images     []planImage
	imagesErr  error
}

var _ cluster.Driver = (*Driver)(nil)

// New returns a kubeadm driver.
func New(cfg Config) *Driver {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 5 * time.Minute
	}
	return &Driver{cfg: cfg, log: cfg.Logger}
}

func (d *Driver) localLB() bool { return d.cfg.Endpoint == "" }

// Init makes n the first control-plane node: kubeadm init from a rendered
// config. A node that finished before only gets its services ensured; one
// whose init was interrupted is reset and initialized again.
func (d *Driver) Init(ctx context.Context, n cluster.Node) error {
	if err := d.init(ctx, n); err != nil {
		return fmt.Errorf("kubeadm init on %s: %w", n.Name, err)
	}
	return nil
}

func (d *Driver) init(ctx context.Context, n cluster.Node) error {
	done, err := d.done(ctx, n)
	if err != nil {
		return err
	}
	if !done {
		if err := d.resetIfStarted(ctx, n); err != nil {
			return err
		}
		if d.localLB() {
			if err := d.writeLB(ctx, n, []cluster.Node{n}); err != nil {
				return err
			}
		}
		cfg, err := d.initConfig(n)
		if err != nil {
			return err
		}
		if err := writeCgroupPatch(ctx, n); err != nil {
			return err
		}
		if err := writeFile(ctx, n.Run, initConf, cfg, 0o600); err != nil {
			return err
		}
		start := time.Now()
		if err := n.Run.Run(ctx, "kubeadm init --config "+initConf+" --skip-token-print", nil, &bytes.Buffer{}); err != nil {
			return err
		}
		d.log.Info("kubeadm init done", "machine", n.Name, "duration", time.Since(start).Round(100*time.Millisecond))
		if err := n.Run.Run(ctx, kubectl+" apply -f -", strings.NewReader(proxyBinding), &bytes.Buffer{}); err != nil {
			return fmt.Errorf("bind system:node-proxier to nodes: %w", err)
		}
	}
	if err := d.nodeServices(ctx, n); err != nil {
		return err
	}
	if err := d.label(ctx, n, n); err != nil {
		return err
	}
	if err := d.waitReady(ctx, n, n); err != nil {
		return err
	}
	return d.markDone(ctx, n, done)
}

// joinCredential is what a node needs to join: a short-lived bootstrap
// token, the hash that pins the cluster CA's public key (so discovery never
// trusts an unverified API server), and for control-plane nodes the key
// that decrypts the uploaded control-plane certificates.
type joinCredential struct {
	Token          string `json:"token"`
	CACertHash     string `json:"caCertHash"`
	CertificateKey string `json:"certificateKey,omitempty"`
}

// tokenTTL bounds how long a join token works: a join takes seconds, and a
// leaked token is worthless after this.
const tokenTTL = "15m"

// Credential creates a join token on mgr; for a manager it also uploads the
// control-plane certificates (encrypted, deleted by kubeadm after 2 h) and
// returns their key.
func (d *Driver) Credential(ctx context.Context, mgr cluster.Node, role string) (cluster.Credential, error) {
	if role != roleManager && role != "worker" {
		return cluster.Credential{}, fmt.Errorf("kubeadm join credential: role %q is neither manager nor worker", role)
	}
	var c joinCredential
	var out bytes.Buffer
	if err := mgr.Run.Run(ctx, "kubeadm token create --ttl "+tokenTTL+" --description 'provision join'", nil, &out); err != nil {
		return cluster.Credential{}, fmt.Errorf("kubeadm token from %s: %w", mgr.Name, err)
	}
	c.Token = strings.TrimSpace(out.String())
	hash, err := caCertHash(ctx, mgr)
	if err != nil {
		return cluster.Credential{}, err
	}
	c.CACertHash = hash
	if role == roleManager {
		out.Reset()
		if err := mgr.Run.Run(ctx, "kubeadm init phase upload-certs --upload-certs", nil, &out); err != nil {
			return cluster.Credential{}, fmt.Errorf("upload control-plane certificates from %s: %w", mgr.Name, err)
		}
		lines := strings.Fields(out.String())
		if len(lines) == 0 {
			return cluster.Credential{}, fmt.Errorf("upload control-plane certificates from %s: no certificate key printed", mgr.Name)
		}
		c.CertificateKey = lines[len(lines)-1]
	}
	b, err := json.Marshal(c)
	if err != nil {
		return cluster.Credential{}, err
	}
	return cluster.NewCredential(string(b)), nil
}

// caCertHash is kubeadm's discovery-token-ca-cert-hash of mgr's cluster CA:
// sha256 of its DER SubjectPublicKeyInfo. The certificate is public.
func caCertHash(ctx context.Context, mgr cluster.Node) (string, error) {
	var out bytes.Buffer
	if err := mgr.Run.Run(ctx, "cat /etc/kubernetes/pki/ca.crt", nil, &out); err != nil {
		return "", fmt.Errorf("read cluster CA from %s: %w", mgr.Name, err)
	}
	block, _ := pem.Decode(out.Bytes())
	if block == nil {
		return "", fmt.Errorf("cluster CA on %s: no PEM certificate", mgr.Name)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("cluster CA on %s: %w", mgr.Name, err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// Join makes n a node of mgr's cluster: a worker, or a control-plane node
// with stacked etcd when n is a manager.
func (d *Driver) Join(ctx context.Context, n, mgr cluster.Node, cred cluster.Credential) error {
	if err := d.join(ctx, n, mgr, cred); err != nil {
		return fmt.Errorf("kubeadm join of %s via %s: %w", n.Name, mgr.Name, redact(err, cred))
	}
	return nil
}

func (d *Driver) join(ctx context.Context, n, mgr cluster.Node, cred cluster.Credential) error {
	done, err := d.done(ctx, n)
	if err != nil {
		return err
	}
	if !done && n.Role == roleManager {
		d.cpJoin.Lock()
		defer d.cpJoin.Unlock()
	}
	if !done {
		var c joinCredential
		if err := json.Unmarshal([]byte(cred.Secret()), &c); err != nil {
			return errors.New("malformed join credential")
		}
		if err := d.resetIfStarted(ctx, n); err != nil {
			return err
		}
		// A join killed after the node registered left a Node object that
		// would make kubeadm refuse a node of that name.
		if err := mgr.Run.Run(ctx, kubectl+" delete node --ignore-not-found --wait=false "+shellQuote(n.Name), nil, &bytes.Buffer{}); err != nil {
			return fmt.Errorf("delete stale node object: %w", err)
		}
		if d.localLB() {
			cps, err := d.controlPlanes(ctx, mgr)
			if err != nil {
				return err
			}
			if err := d.writeLB(ctx, n, cps); err != nil {
				return err
			}
		}
		cfg, err := d.joinConfig(n, mgr, c)
		if err != nil {
			return err
		}
		if err := writeCgroupPatch(ctx, n); err != nil {
			return err
		}
		if err := writeFile(ctx, n.Run, joinConf, cfg, 0o600); err != nil {
			return err
		}
		start := time.Now()
		// The config holds the token: remove it whatever kubeadm does.
		err = n.Run.Run(ctx, "kubeadm join --config "+joinConf+"; rc=$?; rm -f "+joinConf+"; exit $rc", nil, &bytes.Buffer{})
		if err != nil {
			return err
		}
		d.log.Info("kubeadm join done", "machine", n.Name, "role", n.Role, "duration", time.Since(start).Round(100*time.Millisecond))
	}
	if err := d.nodeServices(ctx, n); err != nil {
		return err
	}
	if err := d.label(ctx, mgr, n); err != nil {
		return err
	}
	if err := d.waitReady(ctx, mgr, n); err != nil {
		return err
	}
	return d.markDone(ctx, n, done)
}

// waitReady waits until n's Node is Ready (its kubelet runs and its pod
// network is configured), so a finished up means a usable node.
func (d *Driver) waitReady(ctx context.Context, mgr, n cluster.Node) error {
	cmd := kubectl + " wait --for=condition=Ready --timeout=30s node/" + shellQuote(n.Name)
	err := retry.Do(ctx, retry.Policy{Initial: time.Second, Max: 3 * time.Second}, func(ctx context.Context) (bool, error) {
		err := mgr.Run.Run(ctx, cmd, nil, &bytes.Buffer{})
		return err == nil || ctx.Err() != nil, err
	})
	if err != nil {
		return fmt.Errorf("wait for node %s to be Ready (see /var/log/provision/kubelet.log on it): %w", n.Name, err)
	}
	return nil
}

// done reports whether n finished init or join before.
func (d *Driver) done(ctx context.Context, n cluster.Node) (bool, error) {
	if n.Run == nil {
		return false, errors.New("node is unreachable")
	}
	return cluster.Succeeds(ctx, n.Run, "test -f "+doneMarker+" && test -f /etc/kubernetes/kubelet.conf")
}

func (d *Driver) markDone(ctx context.Context, n cluster.Node, already bool) error {
	if already {
		d.log.Info("kubernetes node already set up", "machine", n.Name)
		return nil
	}
	return n.Run.Run(ctx, "mkdir -p /var/lib/provision && date -u +%FT%TZ > "+doneMarker, nil, &bytes.Buffer{})
}

// resetIfStarted undoes an interrupted init or join: kubeadm refuses to run
// over its own leftovers (manifests, certificates, a kubelet config).
func (d *Driver) resetIfStarted(ctx context.Context, n cluster.Node) error {
	started, err := cluster.Succeeds(ctx, n.Run, startedCmd)
	if err != nil || !started {
		return err // nothing of kubeadm's is there, or the check could not run
	}
	d.log.Warn("node has leftovers of an interrupted kubeadm run; resetting it", "machine", n.Name)
	return n.Run.Run(ctx, resetCmd, nil, &bytes.Buffer{})
}

// startedCmd succeeds when anything of an init or join is on the node: a
// kubeadm still running, or any file kubeadm writes.
const startedCmd = `pgrep -f '^kubeadm (init|join)' >/dev/null && exit 0
for f in /etc/kubernetes/pki/ca.crt /etc/kubernetes/admin.conf /etc/kubernetes/kubelet.conf /etc/kubernetes/bootstrap-kubelet.conf /var/lib/kubelet/config.yaml /var/lib/etcd/member; do
	[ -e "$f" ] && exit 0
done
ls /etc/kubernetes/manifests/*.yaml >/dev/null 2>&1`

// resetCmd stops a leftover kubeadm and the node's Kubernetes services and runs kubeadm reset
// (which on a control-plane node also leaves etcd), then clears what reset
// leaves: the CNI config, the pod bridge and provision's marker. The
// kubelet service is started again, waiting for a new config as kubeadm
// expects of it.
const resetCmd = `# A kubeadm the killed run started may still be running: stop it first.
pkill -f '^kubeadm (init|join)' 2>/dev/null && sleep 1
provision-service stop node-sync 2>/dev/null || true
provision-service stop kube-proxy 2>/dev/null || true
provision-service stop kubelet 2>/dev/null || true
kubeadm reset -f --cri-socket ` + criSocket + ` >/dev/null 2>&1 || kubeadm reset -f --cri-socket ` + criSocket + `
rm -rf /etc/cni/net.d/10-provision.conflist /var/lib/cni ` + doneMarker + ` ` + joinConf + `
ip link del cni0 2>/dev/null || true
provision-service start kubelet`

// writeLB gives n's local API load balancer these control-plane nodes and
// starts it.
func (d *Driver) writeLB(ctx context.Context, n cluster.Node, cps []cluster.Node) error {
	if err := installService(ctx, n.Run, "api-lb", apiLBService); err != nil {
		return err
	}
	var b strings.Builder
	for _, cp := range cps {
		fmt.Fprintf(&b, "%s %s\n", cp.Name, cp.Address)
	}
	if err := n.Run.Run(ctx, "provision-node-sync write-lb", strings.NewReader(b.String()), &bytes.Buffer{}); err != nil {
		return fmt.Errorf("local API load balancer: %w", err)
	}
	return nil
}

// apiLBService runs haproxy in the foreground (master-worker) on the
// config provision-node-sync writes.
const apiLBService = `[ -f /etc/provision/api-lb.cfg ] || { sleep 2; exit 1; }
exec haproxy -W -db -f /etc/provision/api-lb.cfg
`

// controlPlanes lists the control-plane nodes mgr's cluster has.
func (d *Driver) controlPlanes(ctx context.Context, mgr cluster.Node) ([]cluster.Node, error) {
	members, err := d.nodes(ctx, mgr)
	if err != nil {
		return nil, err
	}
	var cps []cluster.Node
	for _, m := range members {
		if m.controlPlane() && m.address() != "" {
			cps = append(cps, cluster.Node{Name: m.Metadata.Name, Address: m.address()})
		}
	}
	if len(cps) == 0 {
		return nil, fmt.Errorf("no control-plane node listed by %s", mgr.Name)
	}
	return cps, nil
}

// nodeServices writes n's kube-proxy config and starts the node's
// services: kube-proxy and provision-node-sync (pod network, routes, the
// balancer's backends).
func (d *Driver) nodeServices(ctx context.Context, n cluster.Node) error {
	pc, err := d.proxyConfig(n)
	if err != nil {
		return err
	}
	if err := writeFile(ctx, n.Run, proxyConf, pc, 0o600); err != nil {
		return err
	}
	lb := "none"
	if d.localLB() {
		lb = "local"
	}
	services := map[string]string{
		"kube-proxy": "[ -f " + proxyKubeconfig + " ] || { sleep 2; exit 1; }\nexec kube-proxy --config " + proxyConf + "\n",
		"node-sync":  "exec provision-node-sync run " + shellQuote(n.Name) + " " + shellQuote(d.cfg.PodCIDR) + " " + lb + "\n",
	}
	for _, name := range slices.Sorted(maps.Keys(services)) {
		if err := installService(ctx, n.Run, name, services[name]); err != nil {
			return err
		}
	}
	return nil
}

// label sets n's labels from mgr. A node that just joined may not be
// listed for a moment: retry to the deadline.
func (d *Driver) label(ctx context.Context, mgr, n cluster.Node) error {
	if len(n.Labels) == 0 {
		return nil
	}
	cmd := kubectl + " label node --overwrite " + shellQuote(n.Name)
	for _, k := range slices.Sorted(maps.Keys(n.Labels)) {
		cmd += " " + shellQuote(k+"="+n.Labels[k])
	}
	err := retry.Do(ctx, retry.Policy{Initial: 500 * time.Millisecond, Max: 2 * time.Second}, func(ctx context.Context) (bool, error) {
		err := mgr.Run.Run(ctx, cmd, nil, &bytes.Buffer{})
		return err == nil || ctx.Err() != nil, err
	})
	if err != nil {
		return fmt.Errorf("label node %s: %w", n.Name, err)
	}
	return nil
}

// Members lists the cluster's nodes as mgr's API server sees them.
func (d *Driver) Members(ctx context.Context, mgr cluster.Node) ([]cluster.Member, error) {
	nodes, err := d.nodes(ctx, mgr)
	if err != nil {
		return nil, fmt.Errorf("kubernetes nodes from %s: %w", mgr.Name, err)
	}
	out := make([]cluster.Member, 0, len(nodes))
	for _, n := range nodes {
		m := cluster.Member{Name: n.Metadata.Name, Role: "worker", Status: "notready", Availability: "active"}
		if n.controlPlane() {
			m.Role = roleManager
		}
		if n.ready() {
			m.Status = "ready"
		}
		if n.Spec.Unschedulable {
			m.Availability = "drain"
		}
		out = append(out, m)
	}
	return out, nil
}

// node is the part of a Kubernetes Node object provision reads.
type node struct {
	Metadata struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Unschedulable bool   `json:"unschedulable"`
		PodCIDR       string `json:"podCIDR"`
	} `json:"spec"`
	Status struct {
		Addresses []struct {
			Type    string `json:"type"`
			Address string `json:"address"`
		} `json:"addresses"`
		Conditions []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
		} `json:"conditions"`
	} `json:"status"`
}

func (n node) controlPlane() bool {
	_, ok := n.Metadata.Labels[controlPlaneTaint]
	return ok
}

func (n node) ready() bool {
	for _, c := range n.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

func (n node) address() string {
	for _, a := range n.Status.Addresses {
		if a.Type == "InternalIP" {
			return a.Address
		}
	}
	return ""
}

func (d *Driver) nodes(ctx context.Context, mgr cluster.Node) ([]node, error) {
	var out bytes.Buffer
	if err := mgr.Run.Run(ctx, kubectl+" get nodes -o json", nil, &out); err != nil {
		return nil, err
	}
	return parseNodes(out.Bytes())
}

func parseNodes(b []byte) ([]node, error) {
	var list struct {
		Items []node `json:"items"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("parse node list: %w", err)
	}
	return list.Items, nil
}

// cgroupDriverFor picks the kubelet's and containerd's cgroup driver: the
// systemd driver where systemd runs the machine, as upstream advises, and
// cgroupfs where there is no init (a container as a node).
func cgroupDriverFor(ctx context.Context, n cluster.Node) string {
	if ok, _ := cluster.Succeeds(ctx, n.Run, "test -d /run/systemd/system"); ok {
		return "systemd"
	}
	return "cgroupfs"
}

func writeCgroupPatch(ctx context.Context, n cluster.Node) error {
	return writeFile(ctx, n.Run, cgroupPatch, []byte("cgroupDriver: "+cgroupDriverFor(ctx, n)+"\n"), 0o600)
}

// writeFile writes data to path on r, atomically and through stdin:
// configs may hold secrets and never go through a command line. It is
// private to root (umask 077) until chmod gives it mode.
func writeFile(ctx context.Context, r cluster.Runner, path string, data []byte, mode os.FileMode) error {
	tmp := shellQuote(path + ".tmp")
	cmd := fmt.Sprintf("umask 077 && mkdir -p %s && cat > %s && chmod %04o %s && mv -f %s %s",
		shellQuote(filepath.Dir(path)), tmp, mode.Perm(), tmp, tmp, shellQuote(path))
	if err := r.Run(ctx, cmd, bytes.NewReader(data), &bytes.Buffer{}); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// redact hides the join secrets from an error's text.
func redact(err error, cred cluster.Credential) error {
	var c joinCredential
	if json.Unmarshal([]byte(cred.Secret()), &c) != nil {
		return err
	}
	return cluster.Redact(err, c.Token, c.CertificateKey)
}

var shellQuote = cluster.ShellQuote
