package plans

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// DefaultKubernetesVersion is the Kubernetes a kubeadm plan gets when it
// names none: the newest release the module proxy serves whose artifacts
// provision has built and tested.
const DefaultKubernetesVersion = "v1.37.2"

// Kubernetes configures a kind: kubeadm cluster.
type Kubernetes struct {
	// Version of Kubernetes, "v1.37.2". Default DefaultKubernetesVersion.
	Version   string              `yaml:"version"`
	Artifacts KubernetesArtifacts `yaml:"artifacts"`
	// Endpoint is host or host:port of a load balancer in front of the
	// control-plane nodes (a cloud load balancer). Empty: every node runs a
	// local API load balancer that knows all control-plane nodes, so the
	// API survives the loss of any one of them.
	Endpoint string `yaml:"endpoint"`
	// PodCIDR is the range pods get addresses from, one /24 per node.
	// Default 10.244.0.0/16.
	PodCIDR string `yaml:"pod_cidr"`
	// ServiceCIDR is the range of ClusterIP Services. Default 10.96.0.0/12.
	ServiceCIDR string `yaml:"service_cidr"`
	// Images are image archives (docker save or OCI layout tarballs)
	// imported into every node's containerd before it joins, nodes the
	// autoscaler adds included: the images of an air-gapped cluster.
	Images []string `yaml:"images"`
}

// KubernetesArtifacts says where the Kubernetes binaries and images that
// provision pushes to every node come from.
type KubernetesArtifacts struct {
	// Source is build (from the Go module proxy; default), release (the
	// official release binaries, checksums verified) or dir (a directory
	// you staged).
	Source string `yaml:"source"`
	// Dir is the staged directory for source: dir (bin/kubeadm, …).
	Dir string `yaml:"dir"`
	// URL is the release source's base URL, default https://dl.k8s.io/release.
	URL string `yaml:"url"`
}

var (
	artifactSources = []string{"build", "release", "dir"}
	taintEffects    = []string{"NoSchedule", "PreferNoSchedule", "NoExecute"}
	k8sVersion      = regexp.MustCompile(`^v1\.(\d+)\.(\d+)$`)
	// A label key: an optional DNS-subdomain prefix and a name.
	taintKey = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
)

// minKubernetesMinor is the oldest minor version whose kubeadm config
// (v1beta4) and kubelet flags provision renders.
const minKubernetesMinor = 31

func (v *validator) kubernetesDefaults() {
	p := v.plan
	if p.Cluster.Kind != "kubeadm" {
		return
	}
	if p.Kubernetes == nil {
		p.Kubernetes = &Kubernetes{}
	}
	k := p.Kubernetes
	if k.Version == "" {
		k.Version = DefaultKubernetesVersion
	}
	if k.Artifacts.Source == "" {
		k.Artifacts.Source = "build"
	}
	if k.PodCIDR == "" {
		k.PodCIDR = "10.244.0.0/16"
	}
	if k.ServiceCIDR == "" {
		k.ServiceCIDR = "10.96.0.0/12"
	}
	v.expand("kubernetes.artifacts.dir", &k.Artifacts.Dir)
	for i := range k.Images {
		if v.opts.ImageDir != "" {
			k.Images[i] = filepath.Join(v.opts.ImageDir, filepath.Base(k.Images[i]))
			continue
		}
		v.expand(fmt.Sprintf("kubernetes.images[%d]", i), &k.Images[i])
	}
}

func (v *validator) kubernetes() {
	p := v.plan
	if p.Cluster.Kind != "kubeadm" {
		if p.Kubernetes != nil {
			v.errorf("kubernetes", "remove the kubernetes block, or set cluster.kind: kubeadm", "only a kind: kubeadm cluster reads this block")
		}
		for i, pool := range p.Pools {
			if len(pool.Taints) > 0 {
				v.errorf(fmt.Sprintf("pools[%d].taints", i), "taints are for kind: kubeadm; on a swarm steer work with labels and placement constraints", "a %s cluster has no taints", p.Cluster.Kind)
			}
		}
		return
	}
	k := p.Kubernetes
	if k == nil || v.skip("kubernetes") {
		return
	}
	if m := k8sVersion.FindStringSubmatch(k.Version); m == nil {
		v.errorf("kubernetes.version", `write the release as "v1.MINOR.PATCH", e.g. version: `+DefaultKubernetesVersion, "%q is not a Kubernetes version", k.Version)
	} else if minor, _ := strconv.Atoi(m[1]); minor < minKubernetesMinor {
		v.errorf("kubernetes.version", fmt.Sprintf("provision renders kubeadm's v1beta4 config, read by v1.%d and later", minKubernetesMinor), "%s is too old", k.Version)
	}
	switch a := k.Artifacts; a.Source {
	case "build", "release":
		if a.Dir != "" && !v.skip("kubernetes.artifacts.dir") {
			v.errorf("kubernetes.artifacts.dir", "dir is read only with source: dir", "unused with source: %s", a.Source)
		}
	case "dir":
		if a.Dir == "" {
			v.missing("kubernetes.artifacts.dir", "the directory holding bin/kubeadm, bin/kubelet, … (see the README, \"Kubernetes artifacts\")")
		}
	default:
		v.errorf("kubernetes.artifacts.source", unknownHint(a.Source, artifactSources, "sources"), "unknown artifact source %q", a.Source)
	}
	if k.Artifacts.URL != "" && k.Artifacts.Source != "release" {
		v.errorf("kubernetes.artifacts.url", "url is read only with source: release", "unused with source: %s", k.Artifacts.Source)
	}
	if k.Endpoint != "" {
		if err := checkEndpoint(k.Endpoint); err != nil {
			v.errorf("kubernetes.endpoint", "a load balancer's name or address, optionally with a port: api.example.com or 10.0.0.10:6443", "%v", err)
		}
	}
	for i, img := range k.Images {
		at := fmt.Sprintf("kubernetes.images[%d]", i)
		if v.skip(at) {
			continue
		}
		if st, err := os.Stat(img); err != nil {
			v.errorf(at, "an image archive written by docker save, or an OCI layout tarball", "%s: %v", img, unwrapPathError(err))
		} else if !st.Mode().IsRegular() {
			v.errorf(at, "an image archive written by docker save, or an OCI layout tarball", "%s is not a regular file", img)
		}
	}
	pods, perr := netip.ParsePrefix(k.PodCIDR)
	if perr != nil || !pods.Addr().Is4() || pods.Bits() > 22 {
		v.errorf("kubernetes.pod_cidr", "an IPv4 range of /22 or larger (each node takes a /24), e.g. 10.244.0.0/16", "%q is not usable", k.PodCIDR)
	}
	svcs, serr := netip.ParsePrefix(k.ServiceCIDR)
	if serr != nil || !svcs.Addr().Is4() || svcs.Bits() > 24 {
		v.errorf("kubernetes.service_cidr", "an IPv4 range of /24 or larger, e.g. 10.96.0.0/12", "%q is not usable", k.ServiceCIDR)
	}
	if perr == nil && serr == nil && pods.Overlaps(svcs) {
		v.errorf("kubernetes.service_cidr", "pick a range apart from pod_cidr", "%s overlaps pod_cidr %s", k.ServiceCIDR, k.PodCIDR)
	}
}

// poolTaints checks a pool's taints: "key=value:Effect" or "key:Effect".
func (v *validator) poolTaints(at string, pool *Pool) {
	for j, t := range pool.Taints {
		if _, err := ParseTaint(t); err != nil {
			v.errorf(fmt.Sprintf("%s.taints[%d]", at, j), `write key=value:Effect or key:Effect, Effect one of NoSchedule, PreferNoSchedule, NoExecute, e.g. "dedicated=gpu:NoSchedule"`, "%v", err)
		}
	}
}

// Taint is a node taint a pool's machines get when they join.
type Taint struct{ Key, Value, Effect string }

// ParseTaint reads "key=value:Effect" or "key:Effect".
func ParseTaint(s string) (Taint, error) {
	kv, effect, ok := strings.Cut(s, ":")
	if !ok || strings.Contains(effect, ":") {
		return Taint{}, fmt.Errorf("%q has no single :Effect", s)
	}
	// A key may itself hold a "/" prefix but never ":".
	key, value, _ := strings.Cut(kv, "=")
	switch {
	case !taintKey.MatchString(key) || len(key) > 253:
		return Taint{}, fmt.Errorf("%q: %q is not a valid key", s, key)
	case len(value) > 63:
		return Taint{}, fmt.Errorf("%q: the value is longer than 63 characters", s)
	case !slices.Contains(taintEffects, effect):
		return Taint{}, fmt.Errorf("%q: unknown effect %q", s, effect)
	}
	return Taint{Key: key, Value: value, Effect: effect}, nil
}

func checkEndpoint(ep string) error {
	host, port := ep, ""
	if h, p, err := net.SplitHostPort(ep); err == nil {
		host, port = h, p
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: port %q is out of range", ep, port)
		}
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	for _, label := range strings.Split(host, ".") {
		if len(label) == 0 || len(label) > 63 || !dnsLabel.MatchString(strings.ToLower(label)) {
			return fmt.Errorf("%q is neither an address nor a DNS name", ep)
		}
	}
	return nil
}
