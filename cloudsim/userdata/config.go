package userdata

import (
	"fmt"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/provisionhq/provision/providers/hostkey"
)

// Config is what cloud-init would apply on the instance: the cloud-config
// keys a backing host models (cc_set_hostname, cc_users_groups, cc_ssh,
// cc_write_files, cc_runcmd), and the user-data scripts. Other keys are
// ignored, as cloud-init ignores keys no module reads.
type Config struct {
	Hostname string `yaml:"hostname"`
	Users    []User `yaml:"-"`
	// SSHKeys are the host keys cc_ssh installs, by cloud-init's names
	// ("ed25519_private", "ed25519_public", ...).
	SSHKeys        map[string]string `yaml:"ssh_keys"`
	SSHDeleteKeys  *bool             `yaml:"ssh_deletekeys"`
	SSHGenKeyTypes []string          `yaml:"ssh_genkeytypes"`
	DisableRoot    *bool             `yaml:"disable_root"`
	WriteFiles     []File            `yaml:"write_files"`
	// RunCmd is runcmd as argv lists: cloud-init runs a string entry with
	// sh -c and a list entry as it is.
	RunCmd [][]string `yaml:"-"`
	// Scripts are the user-data scripts ("#!" or text/x-shellscript), in
	// order.
	Scripts [][]byte `yaml:"-"`
}

// User is one entry of users. A bare string entry (cloud-init's "default",
// or a name) has only Name.
type User struct {
	Name              string   `yaml:"name"`
	Sudo              any      `yaml:"sudo"`
	Shell             string   `yaml:"shell"`
	SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys"`
}

// File is one entry of write_files.
type File struct {
	Path        string `yaml:"path"`
	Content     string `yaml:"content"`
	Encoding    string `yaml:"encoding"`
	Owner       string `yaml:"owner"`
	Permissions string `yaml:"permissions"`
}

// HostKey returns the ed25519 host key cc_ssh would install, checked: a
// public half that is not the private half's would make every client's
// pinned key fail, so it is an error here as it would be on a real VM.
func (c *Config) HostKey() (hostkey.Key, error) {
	priv, pub := c.SSHKeys["ed25519_private"], c.SSHKeys["ed25519_public"]
	if priv == "" {
		return hostkey.Key{}, fmt.Errorf("user-data has no ssh_keys.ed25519_private (keys: %s)", strings.Join(c.keyNames(), ", "))
	}
	k, err := hostkey.Parse([]byte(priv), pub)
	if err != nil {
		return hostkey.Key{}, fmt.Errorf("user-data ssh_keys: %w", err)
	}
	return k, nil
}

func (c *Config) keyNames() []string {
	names := make([]string, 0, len(c.SSHKeys))
	for k := range c.SSHKeys {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// LoginUser returns the first user that is not cloud-init's "default"
// placeholder, which is where provision's login keys go.
func (c *Config) LoginUser() (User, bool) {
	for _, u := range c.Users {
		if u.Name != "" && u.Name != "default" {
			return u, true
		}
	}
	return User{}, false
}

// fromMap types the merged cloud-config.
func fromMap(m map[string]any) (*Config, error) {
	raw, err := yaml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%w: cloud-config: %v", ErrMalformed, err)
	}
	var c Config
	if err := yaml.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%w: cloud-config: %v", ErrMalformed, err)
	}
	if users, ok := m["users"]; ok {
		list, ok := users.([]any)
		if !ok {
			return nil, fmt.Errorf("%w: users is %T, want a list", ErrMalformed, users)
		}
		for i, u := range list {
			switch u := u.(type) {
			case string:
				c.Users = append(c.Users, User{Name: u})
			case map[string]any:
				b, _ := yaml.Marshal(u)
				var usr User
				if err := yaml.Unmarshal(b, &usr); err != nil {
					return nil, fmt.Errorf("%w: users[%d]: %v", ErrMalformed, i, err)
				}
				c.Users = append(c.Users, usr)
			default:
				return nil, fmt.Errorf("%w: users[%d] is %T", ErrMalformed, i, u)
			}
		}
	}
	if cmds, ok := m["runcmd"]; ok {
		list, ok := cmds.([]any)
		if !ok {
			return nil, fmt.Errorf("%w: runcmd is %T, want a list", ErrMalformed, cmds)
		}
		for i, cmd := range list {
			switch cmd := cmd.(type) {
			case string:
				c.RunCmd = append(c.RunCmd, []string{"sh", "-c", cmd})
			case []any:
				argv := make([]string, len(cmd))
				for j, a := range cmd {
					argv[j] = fmt.Sprint(a)
				}
				c.RunCmd = append(c.RunCmd, argv)
			default:
				return nil, fmt.Errorf("%w: runcmd[%d] is %T", ErrMalformed, i, cmd)
			}
		}
	}
	return &c, nil
}
