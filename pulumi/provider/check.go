package provider

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/infer"
	"github.com/pulumi/pulumi/sdk/v3/go/property"
	"golang.org/x/crypto/ssh"

	"github.com/provisionhq/provision/plans"
	"github.com/provisionhq/provision/providers"
)

// Check validates the inputs with the plan loader itself, so a program gets
// the checks and messages `provision validate` gives, each on the input
// property to edit, and returns them with the plan's defaults filled in (so
// Diff compares like with like).
func (c *Cluster) Check(ctx context.Context, req infer.CheckRequest) (infer.CheckResponse[ClusterArgs], error) {
	args, failures, err := infer.DefaultCheck[ClusterArgs](ctx, req.NewInputs)
	if err != nil || len(failures) > 0 {
		return infer.CheckResponse[ClusterArgs]{Inputs: args, Failures: failures}, err
	}
	if args.Name == "" {
		args.Name = req.Name
	}
	keepVersion(&args, req.OldInputs)
	args = withDefaults(args)
	if property.New(req.NewInputs).HasComputed() {
		// A preview before the values other resources produce are known:
		// they are checked again, known, before Create or Update runs.
		return infer.CheckResponse[ClusterArgs]{Inputs: args}, nil
	}
	pl, failures, err := loadPlan(args, c.registry())
	if err != nil || len(failures) > 0 {
		return infer.CheckResponse[ClusterArgs]{Inputs: args, Failures: failures}, err
	}
	failures = append(failures, checkKey(args.SSH.PrivateKey)...)
	failures = append(failures, c.checkSettings(ctx, pl)...)
	return infer.CheckResponse[ClusterArgs]{Inputs: args, Failures: failures}, nil
}

// loadPlan turns the inputs into a plan through plans.Parse. Problems come
// back as check failures (the loader's message and hint, on the input
// property the user has to edit); err is for anything else.
func loadPlan(args ClusterArgs, reg *providers.Registry) (*plans.Plan, []p.CheckFailure, error) {
	text, paths := renderPlan(args)
	pl, err := plans.Parse("pulumi", text, plans.Options{Providers: reg})
	var list plans.ErrorList
	switch {
	case err == nil:
		return pl, nil, nil
	case errors.As(err, &list):
		failures := make([]p.CheckFailure, 0, len(list))
		for _, e := range list {
			prop := ""
			if e.Line >= 1 && e.Line <= len(paths) {
				prop = paths[e.Line-1]
			}
			reason := e.Msg
			if e.Hint != "" {
				reason += " (" + e.Hint + ")"
			}
			failures = append(failures, p.CheckFailure{Property: prop, Reason: reason})
		}
		return nil, failures, nil
	default:
		return nil, nil, fmt.Errorf("load the cluster's plan: %w", err)
	}
}

// mustPlan is loadPlan for operations that run after Check: a failure here
// means the inputs changed meaning since (a provider left the registry).
func mustPlan(args ClusterArgs, reg *providers.Registry) (*plans.Plan, error) {
	pl, failures, err := loadPlan(args, reg)
	if err != nil {
		return nil, err
	}
	if len(failures) > 0 {
		msgs := make([]string, len(failures))
		for i, f := range failures {
			msgs[i] = f.Property + ": " + f.Reason
		}
		return nil, fmt.Errorf("invalid cluster inputs: %s", strings.Join(msgs, "; "))
	}
	return pl, nil
}

// renderPlan writes the inputs as plan.yaml, one value per line, and
// returns with it the input property each line came from, so a loader error
// (file:line:col) can be reported on that property. Values are written as
// JSON, which YAML reads as the same strings, numbers and mappings.
func renderPlan(a ClusterArgs) ([]byte, []string) {
	var b strings.Builder
	var paths []string
	line := func(path, format string, args ...any) {
		fmt.Fprintf(&b, format+"\n", args...)
		paths = append(paths, path)
	}
	str := func(path, indent, key, v string) {
		if v != "" {
			line(path, "%s%s: %s", indent, key, quote(v))
		}
	}
	num := func(path, indent, key string, v int) {
		if v != 0 {
			line(path, "%s%s: %d", indent, key, v)
		}
	}
	// list writes one item a line, so an error about an item lands on it.
	// It is a flow sequence: a block one would start on its first item's
	// line, and an error about the whole list would land there too.
	list := func(path, indent, key string, vs []string) {
		if len(vs) == 0 {
			return
		}
		line(path, "%s%s: [", indent, key)
		for i, v := range vs {
			end := ","
			if i == len(vs)-1 {
				end = "]"
			}
			line(fmt.Sprintf("%s[%d]", path, i), "%s  %s%s", indent, quote(v), end)
		}
	}
	line("", "version: 1")
	line("", "cluster:")
	str("name", "  ", "name", a.Name)
	str("kind", "  ", "kind", a.Kind)
	if s := a.SSH; s != nil {
		line("ssh", "ssh:")
		str("ssh.user", "  ", "user", s.User)
		num("ssh.port", "  ", "port", s.Port)
		if bs := s.Bastion; bs != nil {
			line("ssh.bastion", "  bastion:")
			str("ssh.bastion.host", "    ", "host", bs.Host)
			num("ssh.bastion.port", "    ", "port", bs.Port)
			str("ssh.bastion.user", "    ", "user", bs.User)
			str("ssh.bastion.hostKey", "    ", "host_key", bs.HostKey)
		}
	}
	if k := a.Kubernetes; k != nil {
		if k.empty() {
			// An empty block is still a block: on a swarm the loader
			// refuses it, which a bare "kubernetes:" (null) would hide.
			line("kubernetes", "kubernetes: {}")
		} else {
			line("kubernetes", "kubernetes:")
		}
		str("kubernetes.version", "  ", "version", k.Version)
		if ar := k.Artifacts; ar != nil && *ar != (KubernetesArtifactsArgs{}) {
			line("kubernetes.artifacts", "  artifacts:")
			str("kubernetes.artifacts.source", "    ", "source", ar.Source)
			str("kubernetes.artifacts.dir", "    ", "dir", ar.Dir)
			str("kubernetes.artifacts.url", "    ", "url", ar.URL)
		}
		str("kubernetes.endpoint", "  ", "endpoint", k.Endpoint)
		str("kubernetes.podCidr", "  ", "pod_cidr", k.PodCIDR)
		str("kubernetes.serviceCidr", "  ", "service_cidr", k.ServiceCIDR)
		list("kubernetes.images", "  ", "images", k.Images)
	}
	if len(a.Pools) == 0 {
		line("pools", "pools: []")
	} else {
		line("pools", "pools:")
	}
	for i, pool := range a.Pools {
		at := fmt.Sprintf("pools[%d]", i)
		// count first: it is always written, so it can open the list item.
		line(at+".count", "  - count: %d", pool.Count)
		str(at+".name", "    ", "name", pool.Name)
		str(at+".provider", "    ", "provider", pool.Provider)
		str(at+".role", "    ", "role", pool.Role)
		if len(pool.Labels) > 0 {
			line(at+".labels", "    labels: %s", jsonText(pool.Labels))
		}
		list(at+".taints", "    ", "taints", pool.Taints)
		if len(pool.Settings) > 0 {
			line(at+".settings", "    settings: %s", jsonText(pool.Settings))
		}
	}
	return []byte(b.String()), paths
}

func quote(s string) string { return jsonText(s) }

// empty reports whether the block sets nothing.
func (k *KubernetesArgs) empty() bool {
	return k.Version == "" && k.Endpoint == "" && k.PodCIDR == "" && k.ServiceCIDR == "" && len(k.Images) == 0 &&
		(k.Artifacts == nil || *k.Artifacts == KubernetesArtifactsArgs{})
}

// jsonText is v as JSON; v holds only what Pulumi decoded (strings,
// numbers, booleans, lists, maps), which always marshals.
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%q", fmt.Sprint(v))
	}
	return string(b)
}

// withDefaults fills in the defaults the plan loader applies (see
// plans/validate.go), so that Diff compares like with like even in a
// preview whose inputs are partly unknown and not loaded as a plan.
// TestCheckDefaults holds the two to the same values.
func withDefaults(a ClusterArgs) ClusterArgs {
	a.Kind = cmp.Or(a.Kind, "swarm")
	ssh := sshOf(a)
	ssh.User = cmp.Or(ssh.User, "root")
	ssh.Port = cmp.Or(ssh.Port, 22)
	if ssh.Bastion != nil {
		b := *ssh.Bastion
		b.Port = cmp.Or(b.Port, 22)
		b.User = cmp.Or(b.User, ssh.User)
		ssh.Bastion = &b
	}
	a.SSH = &ssh
	if a.Kind == "kubeadm" {
		var k KubernetesArgs
		if a.Kubernetes != nil {
			k = *a.Kubernetes
		}
		var art KubernetesArtifactsArgs
		if k.Artifacts != nil {
			art = *k.Artifacts
		}
		art.Source = cmp.Or(art.Source, "build")
		k.Artifacts = &art
		k.Version = cmp.Or(k.Version, plans.DefaultKubernetesVersion)
		k.PodCIDR = cmp.Or(k.PodCIDR, "10.244.0.0/16")
		k.ServiceCIDR = cmp.Or(k.ServiceCIDR, "10.96.0.0/12")
		a.Kubernetes = &k
	}
	pools := make([]PoolArgs, len(a.Pools))
	for i, pool := range a.Pools {
		pool.Role = cmp.Or(pool.Role, string(providers.RoleWorker))
		pools[i] = pool
	}
	a.Pools = pools
	return a
}

// keepVersion gives a kubeadm cluster whose inputs name no Kubernetes
// version the version it was created with (old, the checked inputs of the
// last update). Otherwise a newer provider, with a newer default, would
// replace every such cluster on the next update.
func keepVersion(a *ClusterArgs, old property.Map) {
	if a.Kind != "kubeadm" || a.Kubernetes != nil && a.Kubernetes.Version != "" {
		return
	}
	if kind := old.Get("kind"); !kind.IsString() || kind.AsString() != "kubeadm" {
		return
	}
	k := old.Get("kubernetes")
	if !k.IsMap() {
		return
	}
	v := k.AsMap().Get("version")
	if !v.IsString() || v.AsString() == "" {
		return
	}
	next := KubernetesArgs{}
	if a.Kubernetes != nil {
		next = *a.Kubernetes
	}
	next.Version = v.AsString()
	a.Kubernetes = &next
}

// checkKey refuses a login key provision cannot use, before any machine
// is created with it.
func checkKey(pem string) []p.CheckFailure {
	if pem == "" {
		return nil
	}
	if _, err := parseKey(pem); err != nil {
		return []p.CheckFailure{{Property: "ssh.privateKey", Reason: err.Error()}}
	}
	return nil
}

// parseKey reads the login key. Its errors never quote the key.
func parseKey(pem string) (ssh.Signer, error) {
	sg, err := ssh.ParsePrivateKey([]byte(pem))
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		return nil, errors.New("the key is protected by a passphrase: provision runs unattended, give it an unencrypted key")
	case err != nil:
		return nil, errors.New("not a private key in OpenSSH or PEM form")
	}
	return sg, nil
}

// checkSettingsTimeout bounds building a provider to ask it about its
// settings: some authenticate when built.
const checkSettingsTimeout = 10 * time.Second

// checkSettings asks each pool's provider whether it understands the pool's
// settings, as `provision validate` does.
func (c *Cluster) checkSettings(ctx context.Context, pl *plans.Plan) []p.CheckFailure {
	ctx, cancel := context.WithTimeout(ctx, checkSettingsTimeout)
	defer cancel()
	reg := c.registry()
	var failures []p.CheckFailure
	for i, pool := range pl.Pools {
		prov, err := reg.New(ctx, pool.Provider, providers.Env{Cluster: pl.Cluster.Name, Logger: discardLog})
		if err != nil {
			// Usually missing credentials: not an input problem, but say so.
			p.GetLogger(ctx).Warningf("pool %q: settings not checked: %v", pool.Name, err)
			continue
		}
		v, ok := prov.(providers.SettingsValidator)
		if !ok {
			continue
		}
		if err := v.ValidateSettings(pool.Settings); err != nil {
			failures = append(failures, p.CheckFailure{
				Property: fmt.Sprintf("pools[%d].settings", i),
				Reason:   fmt.Sprintf("pool %q settings: %v", pool.Name, err),
			})
		}
	}
	return failures
}
