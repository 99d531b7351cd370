package autoscaler

import "math"

// fitIndex finds the first bin, in first-fit order, with room for a request,
// in about O(log n): a segment tree holding each subtree's largest free CPU and
// largest free memory. A linear scan per task costs 50,000 tasks × 5,000 nodes
// on a large cluster; this is what keeps a decision well under a second.
//
// The two maxima of a subtree may come from different bins, so a subtree can
// look roomy and hold no fit. Bins left with ragged free capacity (much CPU
// and little memory here, the reverse there: the cluster's existing nodes, a
// pool's new machines once full) make a request that fits nowhere walk
// hundreds of subtrees before failing, and with tasks of many different sizes
// most requests end that way. So the index can also keep, per subtree and for
// each of a few CPU:memory proportions, the largest request of that
// proportion a single bin holds, and check a request against the two
// proportions either side of its own: that rules out nearly every subtree
// without a fit. Keeping them costs a dozen values per level on every update,
// so they are built only once a walk has been misled, which tasks of a few
// sizes, placed many at a time, seldom are. They are only a filter: a leaf is
// always compared exactly, so the answer is the same as a linear scan's.
type fitIndex struct {
	size int     // leaves, a power of two
	cpu  []int64 // 1-based heap layout; leaves at size..2*size-1
	mem  []int64

	// scale makes CPU and memory comparable: 1/CPU, 1/memory of the
	// largest machine; zero: no proportions (useProportions).
	scale [2]float64
	// prop[j*props+k] is the largest min(cpu·slopes[k], mem) over node j's
	// bins, in scaled units; nil until a walk is misled.
	prop []float32
}

// props is how many CPU:memory proportions an index tracks: slopes 1/64 to
// 32 of the largest machine's, doubling. Finer steps filter little more.
const props = 12

// slopes are the proportions' slopes, 2^(k-props/2).
var slopes = func() (s [props]float64) {
	for k := range s {
		s[k] = math.Ldexp(1, k-props/2)
	}
	return s
}()

// misleading is how many subtrees a walk may skip before the index builds its
// proportions: a walk the maxima do not mislead skips at most one per level.
const misleading = 64

// empty is below any request, so unused leaves never match.
const empty = -1

// newFitIndex returns an index of n empty bins.
func newFitIndex(n int) *fitIndex {
	size := 1
	for size < n {
		size *= 2
	}
	t := &fitIndex{size: size, cpu: make([]int64, 2*size), mem: make([]int64, 2*size)}
	for i := range t.cpu {
		t.cpu[i], t.mem[i] = empty, empty
	}
	return t
}

// newFitIndexOf returns an index of bins with free capacity free.
func newFitIndexOf(free []Resources) *fitIndex {
	t := newFitIndex(len(free))
	for i, f := range free {
		t.cpu[t.size+i], t.mem[t.size+i] = f.MilliCPU, f.MemoryBytes
	}
	for j := t.size - 1; j >= 1; j-- {
		t.pull(j)
	}
	return t
}

// useProportions lets the index build proportions when a walk is misled;
// scale is the largest machine.
func (t *fitIndex) useProportions(scale Resources) {
	t.scale = [2]float64{1 / float64(max(scale.MilliCPU, 1)), 1 / float64(max(scale.MemoryBytes, 1))}
}

// set records bin i's free capacity.
func (t *fitIndex) set(i int, free Resources) {
	j := i + t.size
	t.cpu[j], t.mem[j] = free.MilliCPU, free.MemoryBytes
	if t.prop != nil {
		t.leafProps(j)
	}
	for j /= 2; j >= 1; j /= 2 {
		if !t.pull(j) {
			break // node j is as it was, so are those above
		}
	}
}

// pull recomputes node j from its children and reports whether it changed.
func (t *fitIndex) pull(j int) bool {
	c, m := max(t.cpu[2*j], t.cpu[2*j+1]), max(t.mem[2*j], t.mem[2*j+1])
	changed := c != t.cpu[j] || m != t.mem[j]
	t.cpu[j], t.mem[j] = c, m
	if t.prop != nil {
		p, l, r := t.prop[j*props:(j+1)*props], t.prop[2*j*props:(2*j+1)*props], t.prop[(2*j+1)*props:(2*j+2)*props]
		for k := range p {
			v := max(l[k], r[k])
			changed = changed || v != p[k]
			p[k] = v
		}
	}
	return changed
}

// leafProps sets leaf j's proportions: min(x·s, y) is the largest request of
// proportion s (in scaled units, measured by its memory) the bin holds.
func (t *fitIndex) leafProps(j int) {
	x, y := float64(t.cpu[j])*t.scale[0], float64(t.mem[j])*t.scale[1]
	p := t.prop[j*props : (j+1)*props]
	for k, s := range slopes {
		p[k] = float32(min(x*s, y))
	}
}

// buildProps computes every node's proportions from the bins as they are.
func (t *fitIndex) buildProps() {
	t.prop = make([]float32, 2*t.size*props)
	for j := t.size; j < 2*t.size; j++ {
		t.leafProps(j)
	}
	for j := t.size - 1; j >= 1; j-- {
		t.pull(j)
	}
}

// first returns the lowest bin index whose free capacity holds req, or -1.
func (t *fitIndex) first(req Resources) int {
	if t.cpu[1] < req.MilliCPU || t.mem[1] < req.MemoryBytes {
		return -1 // the most common answer on full machines: no need for more
	}
	q := query{req: req, k: -1}
	if t.prop != nil {
		q = t.propQuery(req)
	}
	if !t.roomy(1, &q) {
		return -1
	}
	// Walk the tree in order, skipping subtrees that cannot hold req: down
	// to the left child when it may, else on to the next subtree to the
	// right, climbing while the node is a right child.
	j, skipped := 1, 0
	for j < t.size {
		j *= 2
		for !t.roomy(j, &q) {
			skipped++
			for j&1 == 1 {
				j /= 2
			}
			if j == 0 { // climbed past the root: no bin holds req
				t.misled(skipped)
				return -1
			}
			j++
		}
	}
	t.misled(skipped)
	return j - t.size
}

// misled builds the proportions after a walk skipped more than misleading
// subtrees, if the index may use them.
func (t *fitIndex) misled(skipped int) {
	if skipped > misleading && t.prop == nil && t.scale[0] > 0 {
		t.buildProps()
	}
}

// query is a request as the walk tests it: exact on CPU and memory, and,
// with proportions, its size at the tracked proportions either side of its
// own. Any bin holding the request holds at least these sizes too: each is
// min(x·s, y), which never decreases as x or y grow, even rounded.
type query struct {
	req    Resources
	k      int // proportions k and k+1; -1: none
	lo, hi float32
}

func (t *fitIndex) propQuery(req Resources) query {
	q := query{req: req}
	x, y := float64(req.MilliCPU)*t.scale[0], float64(req.MemoryBytes)*t.scale[1]
	switch {
	case x <= 0: // no CPU: the steepest pair
		q.k = props - 2
	case y <= 0: // no memory: the flattest
		q.k = 0
	default:
		_, exp := math.Frexp(y / x) // y/x is in [2^(exp-1), 2^exp)
		q.k = min(max(exp-1+props/2, 0), props-2)
	}
	q.lo, q.hi = float32(min(x*slopes[q.k], y)), float32(min(x*slopes[q.k+1], y))
	return q
}

// roomy reports whether node j's subtree may hold q: some bin has its CPU,
// some bin its memory, and, with proportions, some bin each of its two sizes.
// At a leaf that is exact.
func (t *fitIndex) roomy(j int, q *query) bool {
	if t.cpu[j] < q.req.MilliCPU || t.mem[j] < q.req.MemoryBytes {
		return false
	}
	if q.k < 0 {
		return true
	}
	p := t.prop[j*props+q.k:]
	return p[0] >= q.lo && p[1] >= q.hi
}
