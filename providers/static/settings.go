package static

import (
	"fmt"
	"net"
	"strconv"

	"golang.org/x/crypto/ssh"

	"github.com/provisionhq/provision/providers"
)

// Host is one existing machine in a pool's settings.
type Host struct {
	Address string `json:"address"`
	Port    int    `json:"port,omitempty"` // 22 when zero
	// HostKey is the host's own public SSH host key (authorized_keys
	// format); it is required because it is what gets pinned.
	HostKey string `json:"host_key"`
}

type settings struct {
	Hosts []Host `json:"hosts"`
}

func (h Host) endpoint() string { return net.JoinHostPort(h.Address, strconv.Itoa(h.Port)) }

// CheckSettings checks a static pool's host list without dialling any host:
// the check `provision validate` and the Pulumi Check run, and the one
// Create runs first.
func CheckSettings(s providers.Settings) []providers.SettingError {
	_, errs := checkSettings(s)
	return errs
}

const scanHint = "the host's own public key in authorized_keys format, e.g. from ssh-keyscan -t ed25519 <host>"

func checkSettings(s providers.Settings) ([]Host, providers.SettingErrors) {
	var st settings
	errs := s.Decode(&st)
	if len(st.Hosts) == 0 && !errs.Has("hosts") {
		errs.Add("hosts", "list the machines, e.g. hosts: [{address: 10.0.0.5, host_key: \"ssh-ed25519 AAAA…\"}]", "at least one host is required")
	}
	seen := map[string]int{}
	for i := range st.Hosts {
		h := &st.Hosts[i]
		at := fmt.Sprintf("hosts[%d]", i)
		if h.Address == "" && !errs.Has(at+".address") {
			errs.Add(at+".address", "the host's IP address or name", "required")
		}
		switch {
		case errs.Has(at + ".port"):
		case h.Port == 0:
			h.Port = 22
		case h.Port < 1 || h.Port > 65535:
			errs.Add(at+".port", "use a TCP port from 1 to 65535", "%d is out of range", h.Port)
		}
		switch {
		case errs.Has(at + ".host_key"):
		case h.HostKey == "":
			errs.Add(at+".host_key", scanHint, "required")
		default:
			if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(h.HostKey)); err != nil {
				errs.Add(at+".host_key", scanHint, "not an SSH public key")
			}
		}
		if h.Address == "" {
			continue
		}
		if first, dup := seen[h.endpoint()]; dup {
			errs.Add(at, "remove one of them", "host %s listed twice (first as hosts[%d])", h.endpoint(), first)
		} else {
			seen[h.endpoint()] = i
		}
	}
	return st.Hosts, errs
}

func decodeSettings(s providers.Settings) ([]Host, error) {
	hosts, errs := checkSettings(s)
	return hosts, errs.Err("static")
}
