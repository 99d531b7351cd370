package gcp

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/provisionhq/provision/providers"
)

// settings are a gcp pool's settings in plan.yaml.
type settings struct {
	Project     string `json:"project"`              // default: $GOOGLE_CLOUD_PROJECT
	Zone        string `json:"zone"`                 // e.g. europe-west1-b
	MachineType string `json:"machine_type"`         // e.g. e2-medium, or a zonal URL: zones/<zone>/machineTypes/e2-medium
	Image       string `json:"image"`                // source image, e.g. projects/debian-cloud/global/images/family/debian-12
	Network     string `json:"network,omitempty"`    // a name (the project's) or a URL: global/networks/<name>
	Subnetwork  string `json:"subnetwork,omitempty"` // a name (the zone's region) or a URL: regions/<region>/subnetworks/<name>
	DiskGB      int64  `json:"disk_gb,omitempty"`
	// PublicIP gives each machine an ephemeral external address (the SSH
	// address); default true. Set false when provision runs inside the VPC.
	PublicIP *bool `json:"public_ip,omitempty"`
	// BatchSize caps the machines per bulkInsert; 0 means as many as one
	// call's metadata holds (maxBatch, 100).
	BatchSize int `json:"batch_size,omitempty"`
}

// batch is the machines per bulkInsert.
func (s settings) batch() int {
	if s.BatchSize > 0 {
		return s.BatchSize
	}
	return maxBatch
}

var (
	nameRE  = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)
	zoneRE  = regexp.MustCompile(`^[a-z]+-[a-z]+[0-9]+-[a-z]$`)
	labelRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
)

// CheckSettings checks a gcp pool's settings with no credentials and no
// network: the check `provision validate` and the Pulumi Check run, and the
// one Create runs before any API call. A missing project is not a plan
// error here: it may come from $GOOGLE_CLOUD_PROJECT where provision runs,
// and Create reports it when it does not.
func CheckSettings(s providers.Settings) []providers.SettingError {
	_, errs := checkSettings(s)
	return errs
}

func checkSettings(s providers.Settings) (settings, providers.SettingErrors) {
	var out settings
	errs := s.Decode(&out)
	for _, f := range []struct{ name, v, hint string }{
		{"zone", out.Zone, "e.g. zone: europe-west1-b"},
		{"machine_type", out.MachineType, "e.g. machine_type: e2-medium"},
		{"image", out.Image, "e.g. image: projects/debian-cloud/global/images/family/debian-12"},
	} {
		if f.v == "" && !errs.Has(f.name) {
			errs.Add(f.name, f.hint, "required")
		}
	}
	if out.Zone != "" && !zoneRE.MatchString(out.Zone) {
		errs.Add("zone", "a zone name like europe-west1-b", "%q is not a zone", out.Zone)
	}
	if mt := out.MachineType; strings.Contains(mt, "/") && out.Zone != "" {
		if z, _, ok := zonalMachineType(mt); !ok {
			errs.Add("machine_type", "a name like e2-medium, or zones/<zone>/machineTypes/<name>", "%q is not a machine type", mt)
		} else if z != out.Zone {
			errs.Add("machine_type", "a machine type of the pool's zone, or just its name", "%q is in zone %s, not %s", mt, z, out.Zone)
		}
	}
	if out.DiskGB < 0 {
		errs.Add("disk_gb", "", "must not be negative, got %d", out.DiskGB)
	}
	if out.BatchSize < 0 || out.BatchSize > maxBatch {
		errs.Add("batch_size", fmt.Sprintf("0 for as many as fit (%d)", maxBatch), "must be 0 to %d, got %d", maxBatch, out.BatchSize)
	}
	return out, errs
}

// decodeSettings is checkSettings with the project defaulted from the
// environment ($GOOGLE_CLOUD_PROJECT), for Create.
func decodeSettings(s providers.Settings, defaultProject string) (settings, error) {
	out, errs := checkSettings(s)
	if out.Project == "" {
		out.Project = defaultProject
	}
	if out.Project == "" && !errs.Has("project") {
		errs.Add("project", "the project ID, e.g. project: my-project, or set $"+EnvProject, "required")
	}
	return out, errs.Err("gcp")
}

func (s settings) publicIP() bool { return s.PublicIP == nil || *s.PublicIP }

// zonalMachineType splits a machine type URL (full, or partial from
// projects/ or zones/) into its zone and name.
func zonalMachineType(ref string) (zone, name string, ok bool) {
	parts := strings.Split(strings.Trim(ref, "/"), "/")
	n := len(parts)
	if n < 4 || parts[n-4] != "zones" || parts[n-2] != "machineTypes" || parts[n-3] == "" || parts[n-1] == "" {
		return "", "", false
	}
	return parts[n-3], parts[n-1], true
}

// machineTypeRef is the machine type in the form each create call takes:
// bulkInsert's instanceProperties.machineType only a name (GCE documents
// that a URL there fails with INTERNAL_ERROR), instances.insert a zonal
// URL (a bare name is a malformed URL there).
func (s settings) machineTypeRef(bulk bool) string {
	name := s.MachineType
	if _, n, ok := zonalMachineType(s.MachineType); ok {
		name = n
	}
	switch {
	case bulk:
		return name
	case strings.Contains(s.MachineType, "/"):
		return s.MachineType
	}
	return "zones/" + s.Zone + "/machineTypes/" + name
}

// networkURL: GCE takes a URL; a bare name is the project's network.
func (s settings) networkURL() string {
	if strings.Contains(s.Network, "/") {
		return s.Network
	}
	return "global/networks/" + s.Network
}

// subnetworkURL: GCE takes a URL; a bare name is the subnetwork of that
// name in the zone's region.
func (s settings) subnetworkURL() string {
	if strings.Contains(s.Subnetwork, "/") {
		return s.Subnetwork
	}
	return "regions/" + s.Zone[:strings.LastIndex(s.Zone, "-")] + "/subnetworks/" + s.Subnetwork
}

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
