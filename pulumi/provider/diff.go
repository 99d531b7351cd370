package provider

import (
	"context"
	"fmt"
	"maps"
	"reflect"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/infer"
)

// Diff says what an update would do, property by property:
//
//   - name, kind, ssh.user, ssh.port, ssh.privateKey: replace the cluster.
//     The machines are named after the cluster and authorize one login, so
//     none of them survives such a change. The old cluster is deleted first:
//     two clusters of one name would take each other's machines for orphans.
//   - a pool's count: update (machines added, or drained and removed).
//   - a pool's provider or role: update that replaces that pool's machines.
//   - a pool added or removed, its labels or settings, ssh.bastion: update.
//     Labels and settings apply to machines created from then on.
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
	// role changed. later are pools whose labels or settings changed.
	moved, later []string
}

func diffArgs(old, new ClusterArgs) argsDiff {
	d := argsDiff{props: map[string]p.PropertyDiff{}}
	set := func(path string, kind p.DiffKind) { d.props[path] = p.PropertyDiff{Kind: kind, InputDiff: true} }
	if old.Name != new.Name {
		set("name", p.UpdateReplace)
	}
	if old.Kind != new.Kind {
		set("kind", p.UpdateReplace)
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
		out = append(out, fmt.Sprintf("pool %q: new labels or settings apply to machines created from now on; existing machines keep theirs", name))
	}
	return out
}

// sameSettings compares settings, an absent map being an empty one.
func sameSettings(a, b map[string]any) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}
