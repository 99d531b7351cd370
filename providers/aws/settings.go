package aws

import (
	"strings"

	"github.com/provisionhq/provision/providers"
)

// Settings are a pool's AWS settings in the plan.
type Settings struct {
	// Region overrides the region from the standard chain for this pool.
	Region string `json:"region,omitempty"`
	// InstanceType is the EC2 instance type, e.g. "t3.medium" (required).
	InstanceType string `json:"instance_type"`
	// AMI is the image ID, e.g. "ami-0abcdef1234567890" (required).
	AMI              string   `json:"ami"`
	SubnetID         string   `json:"subnet_id,omitempty"`
	SecurityGroupIDs []string `json:"security_group_ids,omitempty"`
	KeyName          string   `json:"key_name,omitempty"`
	// RootVolumeGB resizes the image's root volume; the image's size when 0.
	RootVolumeGB int32 `json:"root_volume_gb,omitempty"`
	// BatchSize caps the machines per RunInstances call; 0 means as many as
	// EC2's 16 KB user-data limit allows (about 100). 1 keeps every
	// machine's host key out of its siblings' user-data (see batch.go).
	BatchSize int `json:"batch_size,omitempty"`
}

// CheckSettings checks an aws pool's settings with no credentials and no
// network: the check `provision validate` and the Pulumi Check run, and the
// one Create runs before any API call.
func CheckSettings(s providers.Settings) []providers.SettingError {
	_, errs := checkSettings(s)
	return errs
}

func checkSettings(s providers.Settings) (Settings, providers.SettingErrors) {
	var out Settings
	errs := s.Decode(&out)
	if out.InstanceType == "" && !errs.Has("instance_type") {
		errs.Add("instance_type", `the EC2 instance type, e.g. instance_type: t3.medium`, "required")
	}
	switch {
	case errs.Has("ami"):
	case out.AMI == "":
		errs.Add("ami", `the image ID, e.g. ami: ami-0abcdef1234567890`, "required")
	case !strings.HasPrefix(out.AMI, "ami-"):
		errs.Add("ami", "use the image's ID (ami-...), not its name", "%q is not an image ID", out.AMI)
	}
	if out.RootVolumeGB < 0 {
		errs.Add("root_volume_gb", "", "must not be negative, got %d", out.RootVolumeGB)
	}
	if out.BatchSize < 0 {
		errs.Add("batch_size", "use 0 for as many as fit", "must not be negative, got %d", out.BatchSize)
	}
	return out, errs
}

func decodeSettings(s providers.Settings) (Settings, error) {
	out, errs := checkSettings(s)
	return out, errs.Err("aws")
}
