package service

import (
	"fmt"
	"slices"
	"strings"
)

// credentialPrefixes are the environment variables each provider's
// credential chain (and endpoint overrides) reads: the AWS SDK's AWS_*,
// Google's application default credentials and provision's GCP endpoint,
// OpenStack's OS_* (as clouds.yaml-less clients read them).
var credentialPrefixes = map[string][]string{
	"aws":       {"AWS_"},
	"gcp":       {"GOOGLE_", "CLOUDSDK_", "PROVISION_GCP_"},
	"openstack": {"OS_"},
}

// fileVariables name a file rather than hold a value: the file goes along
// as a secret of its own and the variable is pointed at it.
var fileVariables = []string{
	"AWS_CA_BUNDLE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
	"GOOGLE_APPLICATION_CREDENTIALS",
	"OS_CACERT", "OS_CERT", "OS_KEY", "OS_CLIENT_CONFIG_FILE",
}

// alwaysCarried are provision's own secrets from the environment.
var alwaysCarried = []string{"PROVISION_ETCD_PASSWORD"}

// Credentials picks from environ (KEY=VALUE) what the plan's providers
// read to authenticate, and returns it as the cloud-env secret, KEY=VALUE
// lines for autoscale --env-file, plus one secret per file a variable
// names (read with read). None when the environment holds nothing: the
// service then relies on what the managers provide (an instance role, a
// metadata server).
func Credentials(environ []string, providers []string, read func(string) ([]byte, error)) ([]File, error) {
	var prefixes []string
	for _, p := range providers {
		prefixes = append(prefixes, credentialPrefixes[p]...)
	}
	var lines []string
	var files []File
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || v == "" || strings.ContainsAny(v, "\n\r") {
			continue
		}
		carried := slices.Contains(alwaysCarried, k) || slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(k, p) })
		if !carried {
			continue
		}
		if slices.Contains(fileVariables, k) {
			data, err := read(v)
			if err != nil {
				return nil, fmt.Errorf("%s names %s: %w", k, v, err)
			}
			f := File{Name: strings.ReplaceAll(strings.ToLower(k), "_", "-"), Data: data}
			files = append(files, f)
			v = f.Path()
		}
		lines = append(lines, k+"="+v)
	}
	if len(lines) == 0 {
		return nil, nil
	}
	// Sorted: the same environment makes the same secret, so a redeploy
	// changes nothing.
	slices.Sort(lines)
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	env := File{Name: EnvFile, Data: []byte(strings.Join(lines, "\n") + "\n")}
	return append([]File{env}, files...), nil
}

// ParseEnv reads an env file as Credentials writes it: KEY=VALUE lines;
// blank lines and # comments are skipped, an optional "export " prefix is
// dropped. Values are taken literally (no quotes, no expansion).
func ParseEnv(data []byte, name string) ([][2]string, error) {
	var out [][2]string
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			// Never quote the line: it may hold a secret.
			return nil, fmt.Errorf("%s:%d: not KEY=VALUE", name, i+1)
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}
