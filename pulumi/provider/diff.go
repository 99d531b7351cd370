package provider

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/infer"
)

// Diff says what an update would do, property by property:
//
//   - name, kind, ssh.user, ssh.port, ssh.privateKey: replace the cluster.
//     The machines are named after the cluster and authorize one login, so
//     none of them survives such a change. The old cluster is deleted first:
//     two clusters of one name would take each other's machines for orphans.
//   - kubernetes.version, endpoint, podCidr, serviceCidr: replace the
//     cluster. kubeadm init fixes them in every node's certificates and
//     configuration, and provision does not upgrade or re-address a cluster.
//     (Compared only when the kind stays: a new kind replaces it anyway.)
//   - a pool's count: update (machines added, or drained and removed).
//   - a pool's provider or role: update that replaces that pool's machines.
//   - a pool added or removed, its labels, taints or settings, ssh.bastion,
//     kubernetes.artifacts or images: update. Labels, taints, settings,
//     artifacts and images apply to machines created from then on.
func (c *Cluster) Diff(ctx context.Context, req infer.DiffRequest[ClusterArgs, ClusterState]) (infer.DiffResponse, error) {
	d := diffArgs(req.State.ClusterArgs, req.Inputs)
	for _, note := range d.notes(req.State) {
		p.GetLogger(ctx).Warning(note)
	}
	resp := infer.DiffResponse{HasChanges: len(d.props) > 0, DetailedDiff: d.props}
	for _, pd := range d.props {
		if pd.Kind == p.UpdateReplace {
			resp.DeleteBeforeReplace = true
		}
	}
	return resp, nil
}

// argsDiff is what changed between two sets of (checked) inputs.
type argsDiff struct {
	props map[string]p.PropertyDiff
	// moved are pools (by name) whose machines are replaced: provider or
	// role changed. later are pools whose labels, taints or settings
	// changed.
	moved, later []string
	// kubeLater: kubernetes.artifacts or images changed.
	kubeLater bool
}

func diffArgs(old, new ClusterArgs) argsDiff {
	d := argsDiff{props: map[string]p.PropertyDiff{}}
	set := d.set
	if old.Name != new.Name {
		set("name", p.UpdateReplace)
	}
	if old.Kind != new.Kind {
		set("kind", p.UpdateReplace)
	} else {
		d.kubernetes(kubernetesOf(old), kubernetesOf(new))
	}
	os, ns := sshOf(old), sshOf(new)
	if os.User != ns.User {
		set("ssh.user", p.UpdateReplace)
	}
	if os.Port != ns.Port {
		set("ssh.port", p.UpdateReplace)
	}
	if os.PrivateKey != ns.PrivateKey {
		set("ssh.privateKey", p.UpdateReplace)
	}
	if !reflect.DeepEqual(os.Bastion, ns.Bastion) {
		set("ssh.bastion", p.Update)
	}

	before := map[string]PoolArgs{}
	for _, pool := range old.Pools {
		before[pool.Name] = pool
	}
	kept := map[string]bool{}
	for i, np := range new.Pools {
		at := fmt.Sprintf("pools[%d]", i)
		op, ok := before[np.Name]
		if !ok {
			set(at, p.Add)
			continue
		}
		kept[np.Name] = true
		if op.Count != np.Count {
			set(at+".count", p.Update)
		}
		moved := false
		if op.Provider != np.Provider {
			set(at+".provider", p.Update)
			moved = true
		}
		if op.Role != np.Role {
			set(at+".role", p.Update)
			moved = true
		}
		if moved {
			d.moved = append(d.moved, np.Name)
		}
		later := false
		if !maps.Equal(op.Labels, np.Labels) {
			set(at+".labels", p.Update)
			later = true
		}
		if !slices.Equal(op.Taints, np.Taints) {
			set(at+".taints", p.Update)
			later = true
		}
		if op.Spot != np.Spot {
			set(at+".spot", p.Update)
			later = true
		}
		if !sameSettings(op.Settings, np.Settings) {
			set(at+".settings", p.Update)
			later = true
		}
		if later {
			d.later = append(d.later, np.Name)
		}
	}
	for j, op := range old.Pools {
		if kept[op.Name] {
			continue
		}
		at := fmt.Sprintf("pools[%d]", j)
		if _, taken := d.props[at]; taken {
			set(at, p.Update) // a pool removed where another was added
		} else {
			set(at, p.Delete)
		}
	}
	return d
}

// kubernetes compares the kubernetes inputs of two clusters of one kind.
func (d *argsDiff) kubernetes(old, new KubernetesArgs) {
	for _, f := range []struct {
		path     string
		old, new string
	}{
		{"kubernetes.version", old.Version, new.Version},
		{"kubernetes.endpoint", old.Endpoint, new.Endpoint},
		{"kubernetes.podCidr", old.PodCIDR, new.PodCIDR},
		{"kubernetes.serviceCidr", old.ServiceCIDR, new.ServiceCIDR},
	} {
		if f.old != f.new {
			d.set(f.path, p.UpdateReplace)
		}
	}
	if artifactsOf(old) != artifactsOf(new) {
		d.set("kubernetes.artifacts", p.Update)
		d.kubeLater = true
	}
	if !slices.Equal(old.Images, new.Images) {
		d.set("kubernetes.images", p.Update)
		d.kubeLater = true
	}
}

func (d *argsDiff) set(path string, kind p.DiffKind) {
	d.props[path] = p.PropertyDiff{Kind: kind, InputDiff: true}
}

// notes explain the changes whose effect the detailed diff cannot say.
func (d argsDiff) notes(prior ClusterState) []string {
	var out []string
	for _, name := range d.moved {
		n := 0
		for _, node := range prior.Nodes {
			if node.Pool == name {
				n++
			}
		}
		out = append(out, fmt.Sprintf("pool %q changes provider or role: its %d machines are drained, deleted and created anew", name, n))
	}
	for _, name := range d.later {
		out = append(out, fmt.Sprintf("pool %q: new labels, taints or settings apply to machines created from now on; existing machines keep theirs", name))
	}
	if d.kubeLater {
		out = append(out, "new Kubernetes artifacts or images reach machines created from now on; existing nodes keep theirs")
	}
	return out
}

// kubernetesOf is args' Kubernetes settings, empty when none were given.
func kubernetesOf(args ClusterArgs) KubernetesArgs {
	if args.Kubernetes == nil {
		return KubernetesArgs{}
	}
	return *args.Kubernetes
}

// artifactsOf is k's artifact source, empty when none was given.
func artifactsOf(k KubernetesArgs) KubernetesArtifactsArgs {
	if k.Artifacts == nil {
		return KubernetesArtifactsArgs{}
	}
	return *k.Artifacts
}

// sameSettings compares settings, an absent map being an empty one.
func sameSettings(a, b map[string]any) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}
