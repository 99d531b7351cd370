package scalebench

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// measure runs each scenario in a bubble of its own (a fresh clock and
// cloud) and returns the report, wall times included.
func measure(t *testing.T, m Model, scenarios []Scenario) *Report {
	t.Helper()
	for k, v := range Env {
		t.Setenv(k, v)
	}
	rep := &Report{Model: m, Wall: map[*Result]time.Duration{}}
	for _, s := range scenarios {
		start := time.Now()
		var r *Result
		synctest.Test(t, func(t *testing.T) {
			var err error
			if r, err = Run(t.Context(), s, m); err != nil {
				t.Fatal(err)
			}
		})
		if r == nil {
			t.FailNow()
		}
		rep.Results = append(rep.Results, r)
		rep.Wall[r] = time.Since(start)
	}
	return rep
}

// ratioBound is generous: a hundred machines in the time of one is the
// goal (≤ 1.10 with EC2's published limits, issue 10) and the engine
// measures 1.04-1.08 here; bootstrapping in two waves makes it about 1.6,
// in waves of ten about 6. Time is virtual, so a loaded machine does not
// move the ratio; only the retries' random jitter does, by a few percent.
const ratioBound = 1.5

// TestRatioAt100: provision brings up 100 machines in at most 1.5 times
// the time of one, in the benchmark's model (EC2's published API limits,
// hosts that take minutes to boot and install), so a return to
// bootstrapping in waves, or to waiting for a whole batch, fails here.
func TestRatioAt100(t *testing.T) {
	rep := measure(t, DefaultModel, []Scenario{{Strategy: Provision, N: 1}, {Strategy: Provision, N: 100}})
	one, hundred := rep.Results[0], rep.Results[1]
	ratio := rep.Ratio(one.Name(), 100)
	t.Logf("time to Ready: N = 1 %v, N = 100 %v (ratio %.2f); longest wait for a bootstrap slot %v; EC2 calls %v",
		one.Ready, hundred.Ready, ratio, hundred.SlotWait, hundred.Calls)
	if ratio > ratioBound {
		t.Errorf("time to 100 Ready ÷ time to 1 Ready = %.2f, want ≤ %.1f (most runtime installs at once: %d; longest wait for a bootstrap slot: %v)",
			ratio, ratioBound, hundred.RuntimePeak, hundred.SlotWait)
	}
}

// TestStrategiesCallAsTheySay: the peers' model makes one RunInstances
// per machine, provision one per pool (its worker pool fits one call at
// N = 10); both bring every machine into the cluster.
func TestStrategiesCallAsTheySay(t *testing.T) {
	rep := measure(t, DefaultModel, []Scenario{{Strategy: Provision, N: 10}, {Strategy: PerMachine, N: 10}})
	for _, c := range []struct {
		r    *Result
		want int
	}{{rep.Results[0], 2}, {rep.Results[1], 10}} {
		if got := c.r.Calls["RunInstances"] - c.r.Throttled["RunInstances"]; got != c.want {
			t.Errorf("%s, N = 10: %d RunInstances calls went through, want %d", c.r.Name(), got, c.want)
		}
	}
}

// TestReport: the table has a row per N with its ratios, and the chart
// is a PNG.
func TestReport(t *testing.T) {
	mk := func(s Strategy, n int, ready time.Duration) *Result {
		return &Result{Scenario: Scenario{Strategy: s, N: n}, Ready: ready, Calls: map[string]int{"RunInstances": n}, Throttled: map[string]int{"RunInstances": 1}}
	}
	rep := &Report{Model: DefaultModel, Wall: map[*Result]time.Duration{}, Results: []*Result{
		mk(Provision, 1, 100*time.Second), mk(Provision, 100, 110*time.Second),
		mk(PerMachine, 1, 100*time.Second), mk(PerMachine, 100, 1000*time.Second),
	}}
	table := rep.Table()
	for _, want := range []string{"| 100 | 110 s | 1.10 | 1,000 s | 10.00 | 9.1× |", "RunInstances 100 (1)"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	path := filepath.Join(t.TempDir(), "bench.png")
	if err := rep.Plot(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("chart: %v, %d bytes not a PNG", err, len(b))
	}
}
