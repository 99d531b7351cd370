package provider

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

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
	_, failures, err = loadPlan(args, c.registry())
	if err != nil || len(failures) > 0 {
		return infer.CheckResponse[ClusterArgs]{Inputs: args, Failures: failures}, err
	}
	failures = append(failures, checkKey(args.SSH.PrivateKey)...)
	return infer.CheckResponse[ClusterArgs]{Inputs: args, Failures: failures}, nil
}

// loadPlan turns the inputs into a plan through plans.FromValues: the
// loader's own defaults and checks, each pool's provider settings included
// (no credentials, no network). Problems come back as check failures (the
// loader's message and hint, on the input property the user has to edit,
// found by the error's path); err is for anything else.
func loadPlan(args ClusterArgs, set plans.ProviderSet) (*plans.Plan, []p.CheckFailure, error) {
	pl, err := plans.FromValues(planOf(args), plans.Options{Providers: set})
	var list plans.ErrorList
	switch {
	case err == nil:
		return pl, nil, nil
	case errors.As(err, &list):
		failures := make([]p.CheckFailure, 0, len(list))
		for _, e := range list {
			reason := e.Msg
			if e.Hint != "" {
				reason += " (" + e.Hint + ")"
			}
			failures = append(failures, p.CheckFailure{Property: inputProperty(e.Path), Reason: reason})
		}
		return nil, failures, nil
	default:
		return nil, nil, fmt.Errorf("load the cluster's plan: %w", err)
	}
}

// planOf is the plan the inputs describe. Values are copied: the loader
// fills its defaults in place.
func planOf(a ClusterArgs) plans.Plan {
	pl := plans.Plan{Version: plans.Version, Cluster: plans.Cluster{Name: a.Name, Kind: a.Kind}}
	if s := a.SSH; s != nil {
		pl.SSH = plans.SSH{User: s.User, Port: s.Port}
		if b := s.Bastion; b != nil {
			pl.SSH.Bastion = &plans.Bastion{Host: b.Host, Port: b.Port, User: b.User, HostKey: b.HostKey}
		}
	}
	if k := a.Kubernetes; k != nil {
		pk := &plans.Kubernetes{Version: k.Version, Endpoint: k.Endpoint, PodCIDR: k.PodCIDR, ServiceCIDR: k.ServiceCIDR,
			Images: slices.Clone(k.Images)}
		if ar := k.Artifacts; ar != nil {
			pk.Artifacts = plans.KubernetesArtifacts{Source: ar.Source, Dir: ar.Dir, URL: ar.URL}
		}
		pl.Kubernetes = pk
	}
	pl.Pools = make([]plans.Pool, len(a.Pools))
	for i, pool := range a.Pools {
		pl.Pools[i] = plans.Pool{Name: pool.Name, Provider: pool.Provider, Count: pool.Count, Role: providers.Role(pool.Role),
			Labels: maps.Clone(pool.Labels), Taints: slices.Clone(pool.Taints), Spot: pool.Spot, Settings: providers.Settings(maps.Clone(pool.Settings))}
	}
	return pl
}

// inputProperty turns a plan path ("cluster.name", "ssh.bastion.host_key",
// "pools[1].settings.instance_type") into the input property it came from
// ("name", "ssh.bastion.hostKey", the same): the cluster block is flat in
// the inputs, and the plan's snake_case names are camelCase there, up to
// settings and labels, whose keys are the user's own.
func inputProperty(path string) string {
	switch {
	case path == "version" || path == "cluster":
		return ""
	case strings.HasPrefix(path, "cluster."):
		path = strings.TrimPrefix(path, "cluster.")
	}
	parts := strings.Split(path, ".")
	for i, part := range parts {
		parts[i] = camel(part)
		if part == "settings" || part == "labels" {
			break
		}
	}
	return strings.Join(parts, ".")
}

// camel is "host_key" as "hostKey".
func camel(s string) string {
	words := strings.Split(s, "_")
	for i := 1; i < len(words); i++ {
		if w := words[i]; w != "" {
			words[i] = strings.ToUpper(w[:1]) + w[1:]
		}
	}
	return strings.Join(words, "")
}

// mustPlan is loadPlan for operations that run after Check: a failure here
// means the inputs changed meaning since (a provider left the registry).
// Settings are not checked again: Check did, and a settings rule a newer
// provision added must not stand in the way of deleting a cluster.
func mustPlan(args ClusterArgs, reg *providers.Registry) (*plans.Plan, error) {
	pl, failures, err := loadPlan(args, namesOnly{reg})
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

// namesOnly is a registry whose providers accept any settings.
type namesOnly struct{ *providers.Registry }

func (namesOnly) CheckSettings(string, providers.Settings) []providers.SettingError { return nil }

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
