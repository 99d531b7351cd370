package docker

import (
	"strings"

	"github.com/provisionhq/provision/providers"
)

// CheckSettings checks a docker pool's settings without touching docker:
// the check `provision validate` and the Pulumi Check run, and the one
// Create runs first.
func CheckSettings(s providers.Settings) []providers.SettingError {
	_, errs := checkSettings(s)
	return errs
}

func checkSettings(s providers.Settings) (settings, providers.SettingErrors) {
	var st settings
	errs := s.Decode(&st)
	if st.CPUs < 0 {
		errs.Add("cpus", "use 0 for no limit", "must not be negative, got %v", st.CPUs)
	}
	if st.Memory != "" && !memoryRe.MatchString(st.Memory) {
		errs.Add("memory", "a size like 512m or 2g", "%q is not a size", st.Memory)
	}
	if st.Image != "" && strings.ContainsAny(st.Image, " \t\n") {
		errs.Add("image", "an image reference such as debian:12 or registry.example.com/node:1", "%q is not an image reference", st.Image)
	}
	return st, errs
}

func decodeSettings(s providers.Settings) (settings, error) {
	st, errs := checkSettings(s)
	return st, errs.Err("docker")
}
