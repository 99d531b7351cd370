// Package plans owns the plan model: loading plan.yaml strictly (every error
// carries file:line:col), validating it, and diffing it against state into
// the list of changes the apply engine executes.
package plans

import (
	"time"

	"github.com/provisionhq/provision/providers"
)

// Version is the current plan file version.
const Version = 1

// Plan is a loaded, validated plan.yaml.
type Plan struct {
	Version int       `yaml:"version"`
	Cluster Cluster   `yaml:"cluster"`
	SSH     SSH       `yaml:"ssh"`
	State   StateConf `yaml:"state"`
	Pools   []Pool    `yaml:"pools"`
	// Autoscale configures `provision autoscale`; nil when the plan has no
	// autoscale block (the autoscaler then runs with its defaults).
	Autoscale *Autoscale `yaml:"autoscale"`
	// Kubernetes configures a kind: kubeadm cluster; filled with defaults
	// for such a plan even when the file has no kubernetes block.
	Kubernetes *Kubernetes `yaml:"kubernetes"`

	// Path is the file the plan was loaded from; relative paths in the plan
	// (key files) are resolved against its directory.
	Path string `yaml:"-"`

	// pos is where each value was written, by path ("pools[1].settings"),
	// so errors found after loading can point into the file (Plan.ErrorAt).
	pos map[string]position
}

// Pool returns the pool of that name, or nil.
func (p *Plan) Pool(name string) *Pool {
	for i := range p.Pools {
		if p.Pools[i].Name == name {
			return &p.Pools[i]
		}
	}
	return nil
}

// Autoscaled is the set of pools with an autoscale block: the pools
// `provision autoscale` sizes.
func (p *Plan) Autoscaled() map[string]bool {
	set := map[string]bool{}
	for _, pool := range p.Pools {
		if pool.Autoscale != nil {
			set[pool.Name] = true
		}
	}
	return set
}

// Desired is the number of machines the plan asks for, across all pools,
// given the autoscaler's recorded sizes (nil for none).
func (p *Plan) Desired(sizes map[string]int) int {
	n := 0
	for i := range p.Pools {
		n += p.Pools[i].Size(sizes)
	}
	return n
}

// Cluster names the cluster and its kind.
type Cluster struct {
	Name string `yaml:"name"`
	Kind string `yaml:"kind"` // swarm (default) or kubeadm; k3s is refused
}

// SSH says how provision logs in to machines.
type SSH struct {
	User string `yaml:"user"` // default root
	// Key is a private key file. When empty and Agent is false, provision
	// generates and keeps a key for the cluster next to its state.
	Key     string   `yaml:"key"`
	Agent   bool     `yaml:"agent"` // use SSH_AUTH_SOCK
	Port    int      `yaml:"port"`  // default 22
	Bastion *Bastion `yaml:"bastion"`
}

// Bastion is a jump host between provision and the machines.
type Bastion struct {
	Host    string `yaml:"host"`
	Port    int    `yaml:"port"`
	User    string `yaml:"user"`
	Key     string `yaml:"key"`
	HostKey string `yaml:"host_key"` // authorized_keys format; required
}

// StateConf picks the state backend.
type StateConf struct {
	Backend string `yaml:"backend"` // file (default) or etcd
	Path    string `yaml:"path"`    // file backend: directory; default .provision/<cluster>
	// Endpoints are the etcd backend's client URLs; PROVISION_ETCD_ENDPOINTS
	// overrides them. Plaintext (http://) is refused to any host but this
	// machine unless Insecure.
	Endpoints []string `yaml:"endpoints"`
	Prefix    string   `yaml:"prefix"` // etcd key prefix; default /provision
	// TLS secures the connection to etcd; nil for none (or the system's
	// roots for https:// endpoints).
	TLS *StateTLS `yaml:"tls"`
	// Username logs in to an etcd with authentication enabled. Its password
	// is never in the plan: it comes from PROVISION_ETCD_PASSWORD, else
	// from PasswordFile.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	// Insecure allows plaintext endpoints that are not on this machine, on
	// a network the user trusts.
	Insecure bool `yaml:"insecure"`
}

// StateTLS are the PEM files of the etcd backend's TLS client, checked
// when the plan loads.
type StateTLS struct {
	CA   string `yaml:"ca"`   // the CA that signed etcd's certificate; default the system's roots
	Cert string `yaml:"cert"` // a client certificate, for etcd's --client-cert-auth
	Key  string `yaml:"key"`  // the client certificate's private key
}

// Pool is a group of identical machines from one provider.
type Pool struct {
	Name     string             `yaml:"name"`
	Provider string             `yaml:"provider"`
	Settings providers.Settings `yaml:"settings"`
	Count    int                `yaml:"count"`
	Role     providers.Role     `yaml:"role"` // manager or worker (default)
	Labels   map[string]string  `yaml:"labels"`
	// Taints are set on a kubeadm cluster's nodes of this pool when they
	// join: "key=value:Effect" or "key:Effect".
	Taints []string `yaml:"taints"`
	// Setup are shell commands run as root on each new machine of the pool
	// once its container runtime is up, before it joins: load images, log
	// in to a registry, tune sysctls. They run again only when changed.
	Setup []string `yaml:"setup"`
	// Spot asks the provider for interruptible capacity (EC2 spot, GCE
	// SPOT): cheaper, reclaimed by the cloud at short notice, refused when
	// it has none to spare, and then the autoscaler fails over to the next
	// pool as it does for quota.
	Spot bool `yaml:"spot"`
	// Autoscale lets `provision autoscale` size the pool between Min and
	// Max; Count is then only the size the pool starts at.
	Autoscale *PoolAutoscale `yaml:"autoscale"`
}

// Size is how many machines the pool should have: Count, or for an
// autoscaled pool the size the autoscaler recorded (sizes, from state),
// kept within Min and Max.
func (p *Pool) Size(sizes map[string]int) int {
	a := p.Autoscale
	if a == nil {
		return p.Count
	}
	n, ok := sizes[p.Name]
	if !ok {
		n = p.Count
	}
	return min(max(n, a.Min), a.Max)
}

// PoolAutoscale bounds an autoscaled pool and describes its machines to the
// autoscaler's simulation.
type PoolAutoscale struct {
	Min int `yaml:"min"`
	Max int `yaml:"max"`
	// Price of one machine per hour, for the price expander.
	Price float64 `yaml:"price"`
	// Priority for the priority expander: higher is tried first.
	Priority int `yaml:"priority"`
	// CPU (cores, "2" or "500m") and Memory ("4GiB", "512MiB") one machine
	// offers to tasks. When unset, the autoscaler learns them from a node of
	// the pool, so they are required only for pools that may be empty.
	CPU    string `yaml:"cpu"`
	Memory string `yaml:"memory"`
	// MilliCPU and MemoryBytes are CPU and Memory parsed by the loader.
	MilliCPU    int64 `yaml:"-"`
	MemoryBytes int64 `yaml:"-"`
}

// Autoscale holds the autoscaler's knobs; flags of `provision autoscale`
// override them. Zero values mean the defaults documented on each field.
type Autoscale struct {
	// Expander picks among pools that fit: least-waste (default), price,
	// priority.
	Expander string `yaml:"expander"`
	// MaxNodes caps the cluster across all pools; 0: no cap.
	MaxNodes int `yaml:"max_nodes"`
	// ScanInterval is the longest time between two looks at demand; events
	// make the loop look sooner. Default 10s.
	ScanInterval Duration `yaml:"scan_interval"`
	// Cooldown is how long after any scale change no node is removed.
	// Default 2m.
	Cooldown  Duration           `yaml:"cooldown"`
	ScaleDown AutoscaleScaleDown `yaml:"scale_down"`
	// BackoffInitial and BackoffMax bound how long a pool that hit a quota
	// or capacity error is skipped: 30s doubling to 10m by default.
	BackoffInitial Duration `yaml:"backoff_initial"`
	BackoffMax     Duration `yaml:"backoff_max"`
	// Listen is the address of /metrics and /healthz. Default :9090.
	Listen string `yaml:"listen"`
	// LeaseTTL is the leader lease with the etcd backend. Default 10s.
	LeaseTTL Duration `yaml:"lease_ttl"`
}

// AutoscaleScaleDown configures removing idle nodes.
type AutoscaleScaleDown struct {
	Disabled bool `yaml:"disabled"`
	// Utilization below which a node is unneeded: the larger of its
	// reserved CPU and memory fractions. Default 0.5.
	Utilization float64 `yaml:"utilization"`
	// UnneededTime a node must stay under Utilization. Default 10m.
	UnneededTime Duration `yaml:"unneeded_time"`
	// DrainTimeout bounds moving a node's work away. Default 5m.
	DrainTimeout Duration `yaml:"drain_timeout"`
}

// Duration is a time.Duration written as "30s" or "10m" in a plan.
type Duration time.Duration
