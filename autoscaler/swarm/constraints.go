package swarm

import (
	"strings"
)

// The label keys a Node carries besides its Swarm labels (Spec.Labels, under
// their own keys), so the placement constraints Swarm evaluates against a
// node's attributes become plain selector matches. A pool shape that should
// satisfy `node.role==worker` or `node.platform.os==linux` carries the same
// keys in PoolShape.Labels.
const (
	LabelRole     = "node.role"          // "manager" or "worker"
	LabelID       = "node.id"            // the Swarm node ID
	LabelHostname = "node.hostname"      // the node's hostname (provision's machine ID)
	LabelOS       = "node.platform.os"   // e.g. "linux"
	LabelArch     = "node.platform.arch" // e.g. "x86_64", "aarch64"
	// EngineLabelPrefix prefixes the engine's labels (dockerd --label),
	// as constraints name them: engine.labels.KEY.
	EngineLabelPrefix = "engine.labels."
)

const (
	nodeLabelPrefix = "node.labels."
	// unsupportedValue is the value of the selector entry that stands for a
	// constraint the selector cannot express; no node has its key.
	unsupportedValue = "unsupported"
)

// constraintSelector reduces Swarm placement constraints to the exact-match
// NodeSelector the autoscaler simulates with:
//
//   - node.labels.KEY==V → KEY=V (the node's Swarm label, key case kept)
//   - node.role==worker|manager → node.role=worker|manager; node.role!=X is
//     the other role, since there are only two
//   - node.id, node.hostname, node.platform.os, node.platform.arch ==V →
//     the same key =V; engine.labels.KEY==V → engine.labels.KEY=V
//
// Anything else — `!=` on any other key, node.ip, a key Swarm does not know,
// a constraint without an operator, two constraints wanting different values
// of one key — cannot be said as "label k has value v". It is kept as an
// entry keyed by the constraint itself (spaces removed) with the value
// "unsupported", which no node or pool has: the task is never simulated onto
// a node it might not be allowed on, the decision lists it as unschedulable
// with the constraint in its reason, and a running task with such a
// constraint keeps its node from scale-down. Wrongly growing a pool costs
// money; declining to costs a visible line in the log.
//
// Swarm compares values case-insensitively, the selector exactly: roles are
// lowercased here, other values are kept as written and should be written as
// the labels are.
func constraintSelector(constraints []string) map[string]string {
	sel := map[string]string{}
	for _, c := range constraints {
		addConstraint(sel, c)
	}
	if len(sel) == 0 {
		return nil
	}
	return sel
}

func addConstraint(sel map[string]string, c string) {
	key, op, val, ok := splitConstraint(c)
	if !ok {
		unsupported(sel, c)
		return
	}
	lk := strings.ToLower(key)
	switch {
	case lk == LabelRole:
		role := strings.ToLower(val)
		if role != "manager" && role != "worker" {
			unsupported(sel, c)
			return
		}
		if op == "!=" {
			role = map[string]string{"manager": "worker", "worker": "manager"}[role]
		}
		require(sel, LabelRole, role, c)
	case op != "==":
		unsupported(sel, c)
	case lk == LabelID, lk == LabelHostname, lk == LabelOS, lk == LabelArch:
		require(sel, lk, val, c)
	case strings.HasPrefix(lk, nodeLabelPrefix) && len(key) > len(nodeLabelPrefix):
		// Swarm matches the prefix in any case, the label key exactly.
		require(sel, key[len(nodeLabelPrefix):], val, c)
	case strings.HasPrefix(lk, EngineLabelPrefix) && len(key) > len(EngineLabelPrefix):
		require(sel, EngineLabelPrefix+key[len(EngineLabelPrefix):], val, c)
	default:
		unsupported(sel, c)
	}
}

// splitConstraint splits "key op value" the way Swarm does: "==" is looked
// for first, then "!=".
func splitConstraint(c string) (key, op, val string, ok bool) {
	for _, op := range []string{"==", "!="} {
		k, v, found := strings.Cut(c, op)
		if !found {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		return k, op, v, k != "" && v != ""
	}
	return "", "", "", false
}

// require adds k=v; a second, different value for k is unsatisfiable (for
// Swarm too), so it becomes an unsupported entry.
func require(sel map[string]string, k, v, c string) {
	if old, ok := sel[k]; ok && !strings.EqualFold(old, v) {
		unsupported(sel, c)
		return
	}
	if _, ok := sel[k]; !ok {
		sel[k] = v
	}
}

func unsupported(sel map[string]string, c string) {
	sel[strings.Join(strings.Fields(c), "")] = unsupportedValue
}
