package autoscaler

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestFitIndexMatchesLinearScan: the index finds the same first fit as a scan
// in order, through random updates.
func TestFitIndexMatchesLinearScan(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 2, 7, 64, 1000} {
		r := rand.New(rand.NewPCG(uint64(n), 7))
		free := make([]Resources, n)
		idx := newFitIndex(n)
		for i := range free {
			free[i] = Resources{r.Int64N(4000), r.Int64N(16 * gib)}
			idx.set(i, free[i])
		}
		for range 2000 {
			req := Resources{r.Int64N(4000), r.Int64N(16 * gib)}
			want := -1
			for i, f := range free {
				if req.FitsIn(f) {
					want = i
					break
				}
			}
			if got := idx.first(req); got != want {
				t.Fatalf("n=%d first(%v) = %d, want %d", n, req, got, want)
			}
			if want >= 0 {
				free[want] = free[want].Sub(req)
				idx.set(want, free[want])
			}
		}
	}
}

// TestPackBinsFirstFit: identical tasks fill the first node before the next,
// so unconstrained tasks taking the labelled nodes first leave one zone task
// without room; selectors skip nodes that lack the label.
func TestPackBinsFirstFit(t *testing.T) {
	t.Parallel()
	zone := map[string]string{"zone": "a"}
	bins := []bin{
		{free: res(2000, 8)},
		{free: res(3000, 8), labels: zone},
		{free: res(4000, 8), labels: zone},
	}
	// "any" sorts first (equal size, ID order): 2 on bin 0, 3 on bin 1, 1 on
	// bin 2; then the zone tasks get bin 2's last 3000m.
	pending := append(tasks("z", 4, res(1000, 1), zone), tasks("any", 6, res(1000, 1), nil)...)
	groups := groupTasks(pending, res(4000, 16))
	if got := packBins(groups, bins); got != 9 {
		t.Fatalf("placed %d, want 9", got)
	}
	left := map[string]int{}
	for _, g := range groups {
		left[g.ids[0]] = g.left()
	}
	if left["any-0"] != 0 || left["z-0"] != 1 {
		t.Errorf("left = %v, want any 0, z 1", left)
	}
	if bins[0].free != res(2000, 8) {
		t.Errorf("packBins changed its input")
	}
}

// TestPropFitIndexMatchesLinearScan: with proportions, the index still finds
// the same first fit as a scan in order, through random updates that shrink
// and grow bins, on ragged free capacity (CPU-rich and memory-rich bins,
// over-committed ones, empty leaves past the last bin) and requests of every
// proportion, zero CPU or zero memory included. Proportions only rule
// subtrees out; a wrong one would show here as a fit missed.
func TestPropFitIndexMatchesLinearScan(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 2, 7, 64, 1000} {
		r := rand.New(rand.NewPCG(uint64(n), 11))
		scale := res(16000, 64)
		free := make([]Resources, n)
		for i := range free {
			switch r.IntN(4) {
			case 0: // CPU-rich
				free[i] = Resources{r.Int64N(16000), r.Int64N(2 * gib)}
			case 1: // memory-rich
				free[i] = Resources{r.Int64N(1000), r.Int64N(64 * gib)}
			case 2: // over-committed on one dimension
				free[i] = Resources{r.Int64N(8000) - 4000, r.Int64N(32*gib) - 8*gib}
			default:
				free[i] = Resources{r.Int64N(16000), r.Int64N(64 * gib)}
			}
		}
		idx := newFitIndexOf(free)
		idx.useProportions(scale)
		idx.buildProps()
		for q := range 3000 {
			if q%100 == 99 { // a bin grows (a machine opens, say)
				i := r.IntN(n)
				free[i] = free[i].Add(res(1000, 4))
				idx.set(i, free[i])
			}
			req := Resources{r.Int64N(8000), r.Int64N(32 * gib)}
			switch r.IntN(5) {
			case 0:
				req.MilliCPU = 0
			case 1:
				req.MemoryBytes = 0
			case 2:
				req = Resources{r.Int64N(200), r.Int64N(32 * gib)} // steeper than any slope
			}
			want := -1
			for i, f := range free {
				if req.FitsIn(f) {
					want = i
					break
				}
			}
			if got := idx.first(req); got != want {
				t.Fatalf("n=%d first(%v) = %d, want %d", n, req, got, want)
			}
			if want >= 0 {
				free[want] = free[want].Sub(req)
				idx.set(want, free[want])
			}
		}
	}
}

// TestSortByShare: the radix sort orders like a stable comparison sort,
// largest share first, negative shares (negative requests) and ties included.
func TestSortByShare(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 5))
	for _, n := range []int{0, 1, 2, 100, 5000} {
		es := make([]entry, n)
		for i := range es {
			es[i] = entry{share: float64(r.IntN(50)-10) / 7, gi: int32(i)}
			if r.IntN(3) == 0 {
				es[i].share = r.Float64() * 3
			}
		}
		want := slices.Clone(es)
		slices.SortStableFunc(want, func(a, b entry) int { return cmp.Compare(b.share, a.share) })
		if got := sortByShare(es); !slices.Equal(got, want) {
			t.Fatalf("n=%d: radix order differs from a stable sort", n)
		}
	}
}
