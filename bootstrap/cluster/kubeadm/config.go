package kubeadm

import (
	"fmt"
	"net"
	"strconv"

	"sigs.k8s.io/yaml"

	"github.com/provisionhq/provision/bootstrap/cluster"
)

// The subset of kubeadm's v1beta4 configuration provision renders. Typed,
// so a misspelt field is a compile error here rather than a field kubeadm
// silently ignores on a node.
const (
	kubeadmAPI = "kubeadm.k8s.io/v1beta4"
	proxyAPI   = "kubeproxy.config.k8s.io/v1alpha1"
)

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

type arg struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type taint struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Effect string `json:"effect"`
}

type nodeRegistration struct {
	Name                  string   `json:"name"`
	CRISocket             string   `json:"criSocket"`
	Taints                []taint  `json:"taints"` // empty, not absent: no taint
	KubeletExtraArgs      []arg    `json:"kubeletExtraArgs,omitempty"`
	IgnorePreflightErrors []string `json:"ignorePreflightErrors,omitempty"`
	// Never: every image was imported from the bundle; a pull would mean
	// a tag mismatch, and must fail rather than reach for a registry.
	ImagePullPolicy string `json:"imagePullPolicy"`
}

type apiEndpoint struct {
	AdvertiseAddress string `json:"advertiseAddress"`
	BindPort         int    `json:"bindPort"`
}

type patches struct {
	Directory string `json:"directory"`
}

type bootstrapToken struct {
	TTL         string `json:"ttl"`
	Description string `json:"description"`
}

type initConfiguration struct {
	typeMeta
	// BootstrapTokens: kubeadm creates one at init whatever the config
	// says (24 h by default) and fills in a random value when it has none.
	// Nobody uses it, as each join gets a token of its own: let it die with
	// the first joins' (tokenTTL).
	BootstrapTokens  []bootstrapToken `json:"bootstrapTokens"`
	LocalAPIEndpoint apiEndpoint      `json:"localAPIEndpoint"`
	NodeRegistration nodeRegistration `json:"nodeRegistration"`
	SkipPhases       []string         `json:"skipPhases,omitempty"`
	Patches          patches          `json:"patches"`
}

type clusterConfiguration struct {
	typeMeta
	KubernetesVersion    string `json:"kubernetesVersion"`
	ClusterName          string `json:"clusterName"`
	ControlPlaneEndpoint string `json:"controlPlaneEndpoint"`
	ImageRepository      string `json:"imageRepository,omitempty"`
	Networking           struct {
		PodSubnet     string `json:"podSubnet"`
		ServiceSubnet string `json:"serviceSubnet"`
	} `json:"networking"`
	APIServer struct {
		CertSANs []string `json:"certSANs"`
	} `json:"apiServer"`
	ControllerManager struct {
		ExtraArgs []arg `json:"extraArgs"`
	} `json:"controllerManager"`
}

type joinConfiguration struct {
	typeMeta
	NodeRegistration nodeRegistration `json:"nodeRegistration"`
	Discovery        struct {
		BootstrapToken struct {
			Token             string   `json:"token"`
			APIServerEndpoint string   `json:"apiServerEndpoint"`
			CACertHashes      []string `json:"caCertHashes"`
		} `json:"bootstrapToken"`
	} `json:"discovery"`
	ControlPlane *joinControlPlane `json:"controlPlane,omitempty"`
	Patches      patches           `json:"patches"`
}

type joinControlPlane struct {
	LocalAPIEndpoint apiEndpoint `json:"localAPIEndpoint"`
	CertificateKey   string      `json:"certificateKey"`
}

type kubeProxyConfiguration struct {
	typeMeta
	ClientConnection struct {
		Kubeconfig string `json:"kubeconfig"`
	} `json:"clientConnection"`
	Mode             string `json:"mode"`
	ClusterCIDR      string `json:"clusterCIDR"`
	HostnameOverride string `json:"hostnameOverride"`
	// Conntrack: leave the kernel's table size and timeouts alone. They
	// are host-wide (not per network namespace), and a node that is a
	// container must not change its host's.
	Conntrack struct {
		MaxPerCore            int    `json:"maxPerCore"`
		TCPEstablishedTimeout string `json:"tcpEstablishedTimeout"`
		TCPCloseWaitTimeout   string `json:"tcpCloseWaitTimeout"`
	} `json:"conntrack"`
}

// cgroupPatch is the node's own kubelet patch: the cgroup driver must be
// the one containerd uses on that machine (see cgroupDriverFor).
const cgroupPatch = patchDir + "/kubeletconfiguration10-cgroup+strategic.yaml"

const (
	criSocket = "unix:///run/containerd/containerd.sock"
	// patchDir is where a machine's provider may leave kubeadm patches
	// (kubeletconfiguration+strategic.yaml, …) for settings that machine
	// needs and others do not.
	patchDir = "/etc/provision/kubeadm-patches"
	// proxyKubeconfig: kube-proxy runs on every node as a host service with
	// the node's own credentials (bound to system:node-proxier by
	// proxyBinding), so no image needs iptables and no extra secret moves.
	proxyKubeconfig   = "/etc/kubernetes/kubelet.conf"
	controlPlaneTaint = "node-role.kubernetes.io/control-plane"
)

// preflightIgnored are kubeadm preflight checks that fail on sound nodes
// provision makes: the kernel config check reads /proc/config.gz or
// /boot, absent in containers and many cloud images; swap is tolerated by
// the kubelet config; containers see the host's cgroup v1 hierarchy.
var preflightIgnored = []string{"SystemVerification", "Swap", "FileContent--proc-sys-net-bridge-bridge-nf-call-iptables"}

func (d *Driver) endpoint() string {
	if d.cfg.Endpoint == "" {
		return localLB
	}
	return EndpointAddr(d.cfg.Endpoint)
}

// EndpointAddr is a plan's kubernetes.endpoint as host:port, the API port
// added when it names none.
func EndpointAddr(ep string) string {
	if _, _, err := net.SplitHostPort(ep); err == nil {
		return ep
	}
	return net.JoinHostPort(ep, strconv.Itoa(APIPort))
}

func (d *Driver) registration(n cluster.Node) nodeRegistration {
	r := nodeRegistration{
		Name:                  n.Name,
		CRISocket:             criSocket,
		Taints:                []taint{},
		KubeletExtraArgs:      []arg{{Name: "node-ip", Value: n.Address}},
		IgnorePreflightErrors: preflightIgnored,
		ImagePullPolicy:       "Never",
	}
	if n.Role == roleManager {
		r.Taints = append(r.Taints, taint{Key: controlPlaneTaint, Effect: "NoSchedule"})
	}
	for _, t := range n.Taints {
		r.Taints = append(r.Taints, taint{Key: t.Key, Value: t.Value, Effect: t.Effect})
	}
	return r
}

// initConfig renders the first control-plane node's kubeadm config. The
// kubelet config kubeadm stores for all nodes is left stock: what differs by
// machine comes from each machine's kubeadm patches (patchDir): the cgroup
// driver (nodePatches) and, from the provider that made the machine,
// whatever a container-as-node needs.
func (d *Driver) initConfig(n cluster.Node) ([]byte, error) {
	ic := initConfiguration{
		typeMeta:         typeMeta{kubeadmAPI, "InitConfiguration"},
		BootstrapTokens:  []bootstrapToken{{TTL: tokenTTL, Description: "made by kubeadm init; provision gives each join its own"}},
		LocalAPIEndpoint: apiEndpoint{AdvertiseAddress: n.Address, BindPort: APIPort},
		NodeRegistration: d.registration(n),
		// kube-proxy runs as a host service on each node (see
		// proxyKubeconfig), not as kubeadm's DaemonSet.
		SkipPhases: []string{"addon/kube-proxy"},
		Patches:    patches{Directory: patchDir},
	}
	cc := clusterConfiguration{
		typeMeta:             typeMeta{kubeadmAPI, "ClusterConfiguration"},
		KubernetesVersion:    d.cfg.Version,
		ClusterName:          d.cfg.ClusterName,
		ControlPlaneEndpoint: d.endpoint(),
	}
	if d.cfg.Bundle != nil {
		cc.ImageRepository = d.cfg.Bundle.ImageRepository
	}
	cc.Networking.PodSubnet = d.cfg.PodCIDR
	cc.Networking.ServiceSubnet = d.cfg.ServiceCIDR
	// Every control-plane address a client may use: the loopback the
	// local balancer and tunnels use, and the public address when the
	// node has one besides its private one.
	cc.APIServer.CertSANs = []string{"127.0.0.1", "localhost"}
	if n.PublicAddress != "" && n.PublicAddress != n.Address {
		cc.APIServer.CertSANs = append(cc.APIServer.CertSANs, n.PublicAddress)
	}
	// The controller manager hands each node a /24 of the pod range, which
	// provision-node-sync turns into the node's bridge and routes.
	cc.ControllerManager.ExtraArgs = []arg{{Name: "allocate-node-cidrs", Value: "true"}, {Name: "node-cidr-mask-size", Value: "24"}}
	return yamlDocs(ic, cc)
}

// joinConfig renders a joining node's kubeadm config. It holds the join
// token: it goes to the node on stdin into a 0600 file and is removed after.
func (d *Driver) joinConfig(n cluster.Node, mgr cluster.Node, c joinCredential) ([]byte, error) {
	jc := joinConfiguration{
		typeMeta:         typeMeta{kubeadmAPI, "JoinConfiguration"},
		NodeRegistration: d.registration(n),
		Patches:          patches{Directory: patchDir},
	}
	bt := &jc.Discovery.BootstrapToken
	bt.Token = c.Token
	bt.APIServerEndpoint = net.JoinHostPort(mgr.Address, strconv.Itoa(APIPort))
	bt.CACertHashes = []string{c.CACertHash}
	if n.Role == roleManager {
		if c.CertificateKey == "" {
			return nil, fmt.Errorf("control-plane join of %s: the credential has no certificate key", n.Name)
		}
		jc.ControlPlane = &joinControlPlane{
			LocalAPIEndpoint: apiEndpoint{AdvertiseAddress: n.Address, BindPort: APIPort},
			CertificateKey:   c.CertificateKey,
		}
	}
	return yamlDocs(jc)
}

func (d *Driver) proxyConfig(n cluster.Node) ([]byte, error) {
	pc := kubeProxyConfiguration{typeMeta: typeMeta{proxyAPI, "KubeProxyConfiguration"}}
	pc.ClientConnection.Kubeconfig = proxyKubeconfig
	pc.Mode = "iptables"
	pc.ClusterCIDR = d.cfg.PodCIDR
	pc.HostnameOverride = n.Name
	pc.Conntrack.TCPEstablishedTimeout = "0s"
	pc.Conntrack.TCPCloseWaitTimeout = "0s"
	return yamlDocs(pc)
}

// proxyBinding lets nodes' credentials run kube-proxy: the API server's own
// system:node-proxier role, bound to the system:nodes group.
const proxyBinding = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: provision:node-proxier
  labels: {app.kubernetes.io/managed-by: provision}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:node-proxier
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: Group
    name: system:nodes
`

func yamlDocs(docs ...any) ([]byte, error) {
	var out []byte
	for i, d := range docs {
		b, err := yaml.Marshal(d)
		if err != nil {
			return nil, fmt.Errorf("render kubeadm config: %w", err)
		}
		if i > 0 {
			out = append(out, "---\n"...)
		}
		out = append(out, b...)
	}
	return out, nil
}
