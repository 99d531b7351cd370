// Package cloudinit owns the cloud-init user-data provision hands to cloud
// machines: the provision-generated SSH host key (so the first connection is
// verified) and the login user with its authorized keys.
package cloudinit

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/provisionhq/provision/providers"
)

// Config is the part of #cloud-config provision writes.
type Config struct {
	// Hostname is the machine ID: cluster drivers find nodes by name.
	Hostname       string            `yaml:"hostname,omitempty"`
	SSHKeys        map[string]string `yaml:"ssh_keys"`
	SSHDeleteKeys  bool              `yaml:"ssh_deletekeys"`
	SSHGenKeyTypes []string          `yaml:"ssh_genkeytypes"`
	Users          []User            `yaml:"users"`
	DisableRoot    bool              `yaml:"disable_root"`
}

// User is a cloud-init user entry.
type User struct {
	Name              string   `yaml:"name"`
	Sudo              string   `yaml:"sudo,omitempty"`
	Shell             string   `yaml:"shell,omitempty"`
	SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys"`
}

// UserData renders the #cloud-config for one machine. It holds the host's
// private key: providers pass it to the cloud and never log it.
func UserData(spec providers.MachineSpec) ([]byte, error) {
	if spec.HostKey.Public == "" || len(spec.HostKey.PrivatePEM) == 0 {
		return nil, fmt.Errorf("%w: machine %s has no host key", providers.ErrInvalidSpec, spec.ID)
	}
	kind := strings.Fields(spec.HostKey.Public)[0]
	name := strings.TrimPrefix(kind, "ssh-") // ssh-ed25519 → ed25519
	user := spec.SSHUser
	if user == "" {
		user = "root"
	}
	c := Config{
		Hostname: string(spec.ID),
		SSHKeys: map[string]string{
			name + "_private": string(spec.HostKey.PrivatePEM),
			name + "_public":  spec.HostKey.Public,
		},
		SSHDeleteKeys:  true,
		SSHGenKeyTypes: []string{}, // only our key: nothing else to accept
		Users:          []User{{Name: user, SSHAuthorizedKeys: spec.AuthorizedKeys}},
	}
	if user != "root" {
		c.Users[0].Sudo = "ALL=(ALL) NOPASSWD:ALL"
		c.Users[0].Shell = "/bin/bash"
	} else {
		c.DisableRoot = false
	}
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("render user-data: %w", err)
	}
	return append([]byte("#cloud-config\n"), b...), nil
}
