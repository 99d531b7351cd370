package plans

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/provisionhq/provision/providers"
)

// poolAutoscale fills the defaults of a pool's autoscale block and checks it.
// An autoscaled pool without a count starts at its min.
func (v *validator) poolAutoscale(at string, pool *Pool) {
	a := pool.Autoscale
	if a == nil || v.skip(at+".autoscale") {
		return
	}
	at += ".autoscale"
	if !v.set(at + ".max") {
		v.missing(at+".max", "the most machines the autoscaler may give this pool, e.g. max: 10")
		return
	}
	if pool.Role == providers.RoleManager {
		v.errorf(at, "autoscale worker pools; managers hold the cluster's state and are sized by hand", "manager pools cannot be autoscaled")
	}
	switch {
	case a.Min < 0:
		v.errorf(at+".min", "use 0 to let the pool empty out", "must be ≥ 0, got %d", a.Min)
	case a.Max < 1:
		v.errorf(at+".max", "use a max of 1 or more, or remove autoscale", "must be ≥ 1, got %d", a.Max)
	case a.Min > a.Max:
		v.errorf(at+".min", fmt.Sprintf("use a min of at most %d, or raise max", a.Max), "min %d is above max %d", a.Min, a.Max)
	}
	if !v.set(strings.TrimSuffix(at, ".autoscale") + ".count") {
		pool.Count = a.Min
	} else if pool.Count < a.Min || pool.Count > a.Max {
		v.errorf(strings.TrimSuffix(at, ".autoscale")+".count", fmt.Sprintf("count is the starting size: keep it within min %d and max %d, or remove it to start at min", a.Min, a.Max),
			"%d is outside the autoscale range", pool.Count)
	}
	if a.Price < 0 {
		v.errorf(at+".price", "the price of one machine per hour, e.g. price: 0.0416", "must be ≥ 0")
	}
	if a.CPU != "" {
		m, err := ParseCPU(a.CPU)
		if err != nil {
			v.errorf(at+".cpu", `cores a machine offers, e.g. cpu: 2 or cpu: "1500m"`, "%v", err)
		}
		a.MilliCPU = m
	}
	if a.Memory != "" {
		b, err := ParseMemory(a.Memory)
		if err != nil {
			v.errorf(at+".memory", `memory a machine offers, e.g. memory: 4GiB or memory: 512MiB`, "%v", err)
		}
		a.MemoryBytes = b
	}
}

// autoscale checks the plan's autoscale block.
func (v *validator) autoscale() {
	a := v.plan.Autoscale
	if a == nil || v.skip("autoscale") {
		return
	}
	if a.Expander != "" && !slices.Contains(expanders, a.Expander) {
		v.errorf("autoscale.expander", unknownHint(a.Expander, expanders, "expanders"), "unknown expander %q", a.Expander)
	}
	if a.MaxNodes < 0 {
		v.errorf("autoscale.max_nodes", "use 0 for no cluster-wide cap", "must be ≥ 0, got %d", a.MaxNodes)
	}
	if u := a.ScaleDown.Utilization; u < 0 || u > 1 {
		v.errorf("autoscale.scale_down.utilization", "a fraction of reserved CPU and memory, e.g. utilization: 0.5", "must be between 0 and 1, got %g", u)
	}
	if a.BackoffMax > 0 && a.BackoffInitial > a.BackoffMax {
		v.errorf("autoscale.backoff_initial", "keep it at most backoff_max", "%v is above backoff_max %v", a.BackoffInitial, a.BackoffMax)
	}
}

var quantity = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)$`)

// ParseCPU reads cores as "2", "0.5" or "500m" into millicores.
func ParseCPU(s string) (int64, error) {
	m := quantity.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil || (m[2] != "" && m[2] != "m") {
		return 0, fmt.Errorf("%q is not a CPU amount", s)
	}
	f, _ := strconv.ParseFloat(m[1], 64)
	if m[2] == "" {
		f *= 1000
	}
	if f < 1 || f > math.MaxInt32 {
		return 0, fmt.Errorf("%q is out of range", s)
	}
	return int64(f), nil
}

var memUnits = map[string]float64{
	"": 1, "B": 1,
	"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
	"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
	"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
}

// ParseMemory reads "4GiB", "512Mi", "2G" or a byte count into bytes.
func ParseMemory(s string) (int64, error) {
	m := quantity.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("%q is not a memory amount", s)
	}
	unit, ok := memUnits[m[2]]
	if !ok {
		return 0, fmt.Errorf("%q has an unknown unit %q (use MiB, GiB, …)", s, m[2])
	}
	f, _ := strconv.ParseFloat(m[1], 64)
	b := f * unit
	if b < 1 || b > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is out of range", s)
	}
	return int64(b), nil
}
