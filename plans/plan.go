// Package plans owns the plan model: loading plan.yaml strictly (every error
// carries file:line:col), validating it, and diffing it against state into
// the list of changes the apply engine executes.
package plans

import "github.com/provisionhq/provision/providers"

// Version is the current plan file version.
const Version = 1

// Plan is a loaded, validated plan.yaml.
type Plan struct {
	Version int       `yaml:"version"`
	Cluster Cluster   `yaml:"cluster"`
	SSH     SSH       `yaml:"ssh"`
	State   StateConf `yaml:"state"`
	Pools   []Pool    `yaml:"pools"`

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

// Desired is the number of machines the plan asks for, across all pools.
func (p *Plan) Desired() int {
	n := 0
	for _, pool := range p.Pools {
		n += pool.Count
	}
	return n
}

// Cluster names the cluster and its kind.
type Cluster struct {
	Name string `yaml:"name"`
	Kind string `yaml:"kind"` // swarm (default), k3s, kubeadm
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
	Backend string `yaml:"backend"` // file (default)
	Path    string `yaml:"path"`    // file backend: directory; default .provision/<cluster>
}

// Pool is a group of identical machines from one provider.
type Pool struct {
	Name     string             `yaml:"name"`
	Provider string             `yaml:"provider"`
	Settings providers.Settings `yaml:"settings"`
	Count    int                `yaml:"count"`
	Role     providers.Role     `yaml:"role"` // manager or worker (default)
	Labels   map[string]string  `yaml:"labels"`
}
