package gcp

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/provisionhq/provision/providers"
)

// settings are a gcp pool's settings in plan.yaml.
type settings struct {
	Project     string `json:"project"`      // default: $GOOGLE_CLOUD_PROJECT
	Zone        string `json:"zone"`         // e.g. europe-west1-b
	MachineType string `json:"machine_type"` // e.g. e2-medium
	Image       string `json:"image"`        // source image, e.g. projects/debian-cloud/global/images/family/debian-12
	Network     string `json:"network,omitempty"`
	Subnetwork  string `json:"subnetwork,omitempty"`
	DiskGB      int64  `json:"disk_gb,omitempty"`
	// PublicIP gives each machine an ephemeral external address (the SSH
	// address); default true. Set false when provision runs inside the VPC.
	PublicIP *bool `json:"public_ip,omitempty"`
}

var (
	nameRE  = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)
	zoneRE  = regexp.MustCompile(`^[a-z]+-[a-z]+[0-9]+-[a-z]$`)
	labelRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
)

func decodeSettings(s providers.Settings, defaultProject string) (settings, error) {
	var out settings
	if err := s.Decode(&out); err != nil {
		return out, err
	}
	if out.Project == "" {
		out.Project = defaultProject
	}
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"project", out.Project}, {"zone", out.Zone}, {"machine_type", out.MachineType}, {"image", out.Image},
	} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return out, fmt.Errorf("%w: gcp settings: missing %s", providers.ErrInvalidSpec, strings.Join(missing, ", "))
	}
	if !zoneRE.MatchString(out.Zone) {
		return out, fmt.Errorf("%w: gcp settings: zone %q is not a zone name like europe-west1-b", providers.ErrInvalidSpec, out.Zone)
	}
	if out.DiskGB < 0 {
		return out, fmt.Errorf("%w: gcp settings: disk_gb %d is negative", providers.ErrInvalidSpec, out.DiskGB)
	}
	return out, nil
}

func (s settings) publicIP() bool { return s.PublicIP == nil || *s.PublicIP }

// labelValue turns a name into a GCE label value (lowercase letters,
// digits, '-' and '_', at most 63 characters). Exact names are kept in
// metadata; labels only serve the list filter.
func labelValue(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) > 63 {
		b = b[:63]
	}
	return string(b)
}
