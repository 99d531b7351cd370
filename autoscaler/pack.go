package autoscaler

import (
	"cmp"
	"maps"
	"math"
	"slices"
	"strings"
)

// group is a set of identical pending tasks (same requests, selector and
// tolerations). Packing whole groups at a time is what keeps a decision over
// tens of thousands of tasks fast: a service's replicas are one group.
type group struct {
	task *Task    // the first of them, for requests, selector, tolerations
	ids  []string // task IDs; ids[:placed] are placed
	// class numbers the group's selector and tolerations among the
	// groups' (0: none), for accepted.
	class int32

	placed int
	// unschedulable is set when no pool shape can ever hold the task.
	unschedulable string
}

func (g *group) left() int { return len(g.ids) - g.placed }

// groupKey is what makes tasks identical: their requests, and their
// selector and tolerations as a class.
type groupKey struct {
	req   Resources
	class int64
}

// groupTable maps group keys to group indexes. With as many groups as tasks,
// a map costs a lookup and then an insert per task, each hashing the key;
// this table finds or adds a key in one probe sequence (open addressing,
// linear probing, doubling at half full): some 8% of a decision over 50,000
// tasks of distinct sizes.
type groupTable struct {
	keys []groupKey
	idx  []int32 // group index + 1; 0: a free slot
	n    int
}

// find returns k's group index, or makes next k's and reports false.
func (h *groupTable) find(k groupKey, next int32) (int32, bool) {
	if 2*(h.n+1) > len(h.idx) {
		h.grow()
	}
	mask := uint64(len(h.idx) - 1)
	for s := k.hash() & mask; ; s = (s + 1) & mask {
		switch {
		case h.idx[s] == 0:
			h.keys[s], h.idx[s] = k, next+1
			h.n++
			return next, false
		case h.keys[s] == k:
			return h.idx[s] - 1, true
		}
	}
}

func (h *groupTable) grow() {
	keys, idx := h.keys, h.idx
	h.keys, h.idx, h.n = make([]groupKey, max(2*len(idx), 256)), make([]int32, max(2*len(idx), 256)), 0
	for s, v := range idx {
		if v != 0 {
			h.find(keys[s], v-1)
		}
	}
}

// hash mixes all of k's bits into the low ones the table uses: sizes are
// often round numbers, which a plain sum would pile into few slots.
func (k groupKey) hash() uint64 {
	x := uint64(k.req.MilliCPU)*0x9e3779b97f4a7c15 ^ uint64(k.req.MemoryBytes)*0xc2b2ae3d27d4eb4f ^ uint64(k.class)*0x165667b19e3779f9
	x ^= x >> 31
	x *= 0xbf58476d1ce4e5b9
	return x ^ x>>29
}

// accepted memoizes which targets (pools, kinds of bins) accept the groups
// of each class, a class being a selector and a set of tolerations: tens of
// thousands of groups share a handful of classes, and a selector costs a
// map iteration and lookups per target.
type accepted struct {
	labels []map[string]string
	taints [][]Taint
	memo   [][]int8 // [class][target]: 0 not asked yet, 1 accepts, -1 not
}

func acceptedByPools(pools []PoolShape) *accepted {
	a := &accepted{}
	for i := range pools {
		a.labels = append(a.labels, pools[i].Labels)
		a.taints = append(a.taints, pools[i].Taints)
	}
	return a
}

// by reports whether target i accepts g's tasks (resources aside).
func (a *accepted) by(i int, g *group) bool {
	if int(g.class) >= len(a.memo) {
		a.memo = append(a.memo, make([][]int8, int(g.class)+1-len(a.memo))...)
	}
	row := a.memo[g.class]
	if row == nil {
		row = make([]int8, len(a.labels))
		a.memo[g.class] = row
	}
	if row[i] == 0 {
		row[i] = -1
		if g.task.accepts(a.labels[i], a.taints[i]) {
			row[i] = 1
		}
	}
	return row[i] > 0
}

// groupTasks groups identical tasks and sorts the groups in first-fit-
// decreasing order: by dominant share of ref (the largest machine), largest
// first, then by a stable key so a decision is deterministic.
//
// With tasks of as many sizes as tasks, this is tens of thousands of groups
// that every later pass walks, so they are laid out for it: one block of
// groups in decision order and one of task IDs, not one allocation each. The
// order is found on small records by a radix sort (sortByShare).
func groupTasks(tasks []Task, ref Resources) []*group {
	var byKey groupTable
	of := make([]int32, len(tasks)) // task -> group, by first appearance
	var first, count, class []int32 // per group: its first task, its tasks, its class
	classes := map[[2]string]int32{{"", ""}: 0}
	// A service's tasks share a selector and tolerations and mostly come
	// one after another: the class is looked up again only when they change.
	var lastSel map[string]string
	var lastTols []Toleration
	var lastClass int32
	for i := range tasks {
		t := &tasks[i]
		k := groupKey{req: t.Requests}
		if len(t.NodeSelector) > 0 || len(t.Tolerations) > 0 {
			if !maps.Equal(t.NodeSelector, lastSel) || !slices.Equal(t.Tolerations, lastTols) {
				lastSel, lastTols = t.NodeSelector, t.Tolerations
				var tols strings.Builder
				for _, tl := range t.Tolerations {
					tols.WriteString(tl.Key + "=" + tl.Value + ";")
				}
				ck := [2]string{t.selectorString(), tols.String()}
				c, ok := classes[ck]
				if !ok {
					c = int32(len(classes))
					classes[ck] = c
				}
				lastClass = c
			}
			k.class = int64(lastClass)
		}
		gi, ok := byKey.find(k, int32(len(first)))
		if !ok {
			first = append(first, int32(i))
			count = append(count, 0)
			class = append(class, int32(k.class))
		}
		of[i] = gi
		count[gi]++
	}

	order := make([]entry, len(first))
	for gi, ti := range first {
		r := tasks[ti].Requests
		order[gi] = entry{dominantShare(r, ref), r, int32(gi)}
	}
	order = sortByShare(order)
	// Equal shares, rare with many sizes, go by the rest of the key.
	for i := 0; i < len(order); {
		j := i + 1
		for j < len(order) && order[j].share == order[i].share {
			j++
		}
		slices.SortFunc(order[i:j], func(a, b entry) int {
			if c := cmp.Compare(b.req.MilliCPU, a.req.MilliCPU); c != 0 {
				return c
			}
			if c := cmp.Compare(b.req.MemoryBytes, a.req.MemoryBytes); c != 0 {
				return c
			}
			if c := cmp.Compare(tasks[first[a.gi]].ID, tasks[first[b.gi]].ID); c != 0 {
				return c
			}
			return cmp.Compare(a.gi, b.gi)
		})
		i = j
	}

	slab := make([]group, len(order))
	ids := make([]string, len(tasks))
	at := make([]*group, len(first)) // group index -> its place in slab
	off := 0
	for r, e := range order {
		n := int(count[e.gi])
		slab[r] = group{
			task:  &tasks[first[e.gi]],
			ids:   ids[off : off : off+n], // full capacity: appends below never spill
			class: class[e.gi],
		}
		at[e.gi] = &slab[r]
		off += n
	}
	for i := range tasks {
		g := at[of[i]]
		g.ids = append(g.ids, tasks[i].ID)
	}
	groups := make([]*group, len(slab))
	for i := range slab {
		groups[i] = &slab[i]
	}
	return groups
}

// entry is a group being ordered: its share, requests and index.
type entry struct {
	share float64
	req   Resources
	gi    int32
}

// sortByShare sorts entries by share, largest first, keeping the order of
// equal shares. With tens of thousands of groups it is a decision's largest
// sort, so it is a radix sort on the shares' bits: eight linear passes, a
// byte at a time from the lowest, instead of some 16 comparisons per group
// through a function.
func sortByShare(es []entry) []entry {
	// key orders like the share, reversed: a float's bits order like the
	// float once the sign is folded in. (A share is never NaN or -0.)
	key := func(s float64) uint64 {
		b := math.Float64bits(s)
		if b>>63 != 0 {
			b = ^b
		} else {
			b |= 1 << 63
		}
		return ^b
	}
	tmp := make([]entry, len(es))
	for shift := 0; shift < 64; shift += 8 {
		var at [256]int
		for _, e := range es {
			at[key(e.share)>>shift&0xff]++
		}
		if slices.Contains(at[:], len(es)) {
			continue // one value of this byte: nothing to move
		}
		sum := 0
		for d, n := range at {
			at[d] = sum
			sum += n
		}
		for _, e := range es {
			d := key(e.share) >> shift & 0xff
			tmp[at[d]] = e
			at[d]++
		}
		es, tmp = tmp, es
	}
	return es
}

func dominantShare(r, ref Resources) float64 {
	return max(float64(r.MilliCPU)/float64(max(ref.MilliCPU, 1)),
		float64(r.MemoryBytes)/float64(max(ref.MemoryBytes, 1)))
}

// bin is one node's free capacity during a simulation.
type bin struct {
	free   Resources
	labels map[string]string
	taints []Taint
}

// kind is the bins that look alike to the pending tasks: same values for the
// label keys some task selects on, same taints. Each has a fitIndex; a group
// asks only the kinds it accepts, so node-specific labels (hostnames) cost
// nothing unless a task selects on them.
type kind struct {
	labels map[string]string
	taints []Taint
	bins   []int // global bin index by leaf
	index  *fitIndex
}

// packBins places groups first fit onto bins in order (existing nodes, then
// machines being created) and returns how many tasks it placed. Identical
// tasks go as many per bin as fit, which is what FFD does for consecutive
// equal items.
func packBins(groups []*group, bins []bin) int {
	keys := map[string]bool{}
	for _, g := range groups {
		for k := range g.task.NodeSelector {
			keys[k] = true
		}
	}
	selected := slices.Sorted(maps.Keys(keys))
	byKey := map[string]*kind{}
	var kinds []*kind
	var sig []byte // reused: a lookup by string(sig) does not allocate
	for i := range bins {
		b := &bins[i]
		sig = sig[:0]
		for _, k := range selected {
			if v, ok := b.labels[k]; ok {
				sig = appendPair(sig, k, v)
			}
		}
		sig = append(sig, '|')
		for _, tn := range b.taints {
			sig = appendPair(sig, tn.Key, tn.Value)
		}
		k, ok := byKey[string(sig)]
		if !ok {
			k = &kind{labels: b.labels, taints: b.taints}
			byKey[string(sig)] = k
			kinds = append(kinds, k)
		}
		k.bins = append(k.bins, i)
	}
	free := make([]Resources, len(bins))
	var scale Resources // the most free on each dimension
	for i := range bins {
		free[i] = bins[i].free
		scale = Resources{max(scale.MilliCPU, free[i].MilliCPU), max(scale.MemoryBytes, free[i].MemoryBytes)}
	}
	for _, k := range kinds {
		kfree := make([]Resources, len(k.bins))
		for leaf, bi := range k.bins {
			kfree[leaf] = free[bi]
		}
		k.index = newFitIndexOf(kfree)
		k.index.useProportions(scale)
	}

	acc := &accepted{}
	for _, k := range kinds {
		acc.labels = append(acc.labels, k.labels)
		acc.taints = append(acc.taints, k.taints)
	}
	total := 0
	var eligible []*kind
	for _, g := range groups {
		eligible = eligible[:0]
		for i, k := range kinds {
			if acc.by(i, g) {
				eligible = append(eligible, k)
			}
		}
		req := g.task.Requests
		for g.left() > 0 {
			// The first fitting bin in global order across the kinds.
			var at *kind
			leaf, best := -1, len(bins)
			for _, k := range eligible {
				if l := k.index.first(req); l >= 0 && k.bins[l] < best {
					at, leaf, best = k, l, k.bins[l]
				}
			}
			if at == nil {
				break
			}
			n := take(free[best], req, int64(g.left()))
			free[best] = free[best].Sub(req.Mul(n))
			at.index.set(leaf, free[best])
			g.placed += int(n)
			total += int(n)
		}
	}
	return total
}

// take is how many of n tasks requesting req go into free, which holds at
// least one: as many as fit. With tasks of distinct sizes n is mostly 1,
// which needs no division.
func take(free, req Resources, n int64) int64 {
	if n == 1 {
		return 1
	}
	return min(fitCount(free, req), n)
}

func appendPair(b []byte, k, v string) []byte {
	b = append(b, k...)
	b = append(b, '=')
	b = append(b, v...)
	return append(b, ',')
}

// rest is the groups left for new machines after existing capacity, in
// first-fit-decreasing order, as the rounds of Decide see them. Every round
// packs them again for every pool that can grow, so they are kept compact:
// requests and counts in arrays, and per pool the groups its machines could
// hold (selector, taints, size), worked out once. Walking these instead of
// the groups themselves keeps a round's passes within the CPU's caches.
type rest struct {
	groups []*group
	req    []Resources
	left   []int     // tasks of each group not placed yet
	fits   [][]int32 // per pool: groups a new machine of the pool could hold
	// taken is per pool a buffer for poolPacking.taken, reused each round.
	taken [][]int32
}

func newRest(groups []*group, pools []PoolShape, acc *accepted) *rest {
	live := func(g *group) bool { return g.left() > 0 && g.unschedulable == "" }
	n := 0
	for _, g := range groups {
		if live(g) {
			n++
		}
	}
	r := &rest{groups: make([]*group, 0, n), req: make([]Resources, 0, n), left: make([]int, 0, n),
		fits: make([][]int32, len(pools)), taken: make([][]int32, len(pools))}
	for pi := range pools {
		r.fits[pi] = make([]int32, 0, n)
	}
	for _, g := range groups {
		if !live(g) {
			continue
		}
		gi := int32(len(r.groups))
		r.groups = append(r.groups, g)
		r.req = append(r.req, g.task.Requests)
		r.left = append(r.left, g.left())
		for pi := range pools {
			pl := &pools[pi]
			if g.task.Requests.FitsIn(pl.Allocatable) && acc.by(pi, g) {
				r.fits[pi] = append(r.fits[pi], gi)
			}
		}
	}
	for pi := range pools {
		r.taken[pi] = make([]int32, len(r.fits[pi]))
	}
	return r
}

// want counts the tasks left that a new machine of pool pi could hold, and
// drops the groups fully placed from the pool's list, which keeps the later
// rounds' passes short.
func (r *rest) want(pi int) int {
	n := 0
	r.fits[pi] = slices.DeleteFunc(r.fits[pi], func(gi int32) bool {
		n += r.left[gi]
		return r.left[gi] == 0
	})
	return n
}

// place records the tasks a packing placed. It must be the latest packing
// of its pool: its counts follow the pool's list as it was then.
func (r *rest) place(p poolPacking) {
	for at, n := range p.taken {
		if n > 0 {
			gi := r.fits[p.pool][at]
			r.left[gi] -= int(n)
			r.groups[gi].placed += int(n)
		}
	}
}

// poolPacking is the result of packing the groups left onto new machines of
// one pool, without changing them.
type poolPacking struct {
	pool  int
	nodes int
	tasks int
	used  Resources
	taken []int32 // tasks placed, per group of the pool's list
}

// packPool simulates first fit decreasing of the groups left that pool pi
// could hold onto at most limit new machines of shape.
func packPool(r *rest, pi int, shape Resources, limit int) poolPacking {
	p := poolPacking{pool: pi, taken: r.taken[pi][:len(r.fits[pi])]}
	clear(p.taken)
	if limit <= 0 {
		return p
	}
	index := newFitIndex(limit)
	index.useProportions(shape)
	free := make([]Resources, 0, limit)
	for at, gi := range r.fits[pi] {
		n := int64(r.left[gi])
		req := r.req[gi]
		got := int64(0)
		for n > got {
			i := index.first(req)
			if i < 0 {
				if len(free) == limit {
					break
				}
				i = len(free) // open a new machine
				free = append(free, shape)
			}
			k := take(free[i], req, n-got)
			free[i] = free[i].Sub(req.Mul(k))
			index.set(i, free[i])
			got += k
		}
		p.taken[at] = int32(got)
		p.tasks += int(got)
		p.used = p.used.Add(req.Mul(got))
	}
	p.nodes = len(free)
	return p
}
