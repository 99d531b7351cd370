package scalebench

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	benchRun  = flag.Bool("scalebench", false, "run TestBench, the whole scale benchmark (make bench)")
	benchPNG  = flag.String("scalebench.png", "", "write the chart of time to Ready against N to this PNG file")
	benchMD   = flag.String("scalebench.md", "", "also write the table to this Markdown file")
	benchSize = flag.String("scalebench.n", "1,10,100,1000", "the Ns to run, comma-separated")
	benchPar  = flag.Int("scalebench.parallelism", 1000, "also run provision with this --parallelism (0: not)")
	benchJoin = flag.Duration("scalebench.join-serial", DefaultModel.JoinSerial, "the manager's one-at-a-time share of each join")
)

// TestBench is `make bench`: for each N, provision as it is, provision
// with its bootstrap bound lifted (--parallelism), and the peers' way, in
// one run; it prints the table and writes the chart.
func TestBench(t *testing.T) {
	if !*benchRun {
		t.Skip("the scale benchmark runs with -scalebench (make bench)")
	}
	var sizes []int
	for _, f := range strings.Split(*benchSize, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			t.Fatalf("-scalebench.n: %q is not a machine count", f)
		}
		sizes = append(sizes, n)
	}
	if sizes[0] != 1 {
		sizes = append([]int{1}, sizes...) // every ratio is to N = 1
	}
	m := DefaultModel
	m.JoinSerial = *benchJoin
	var scenarios []Scenario
	for _, st := range []Scenario{{Strategy: Provision}, {Strategy: Provision, Parallelism: *benchPar}, {Strategy: PerMachine}} {
		if st.Strategy == Provision && st.Parallelism == 0 && *benchPar == 0 {
			continue
		}
		for _, n := range sizes {
			s := st
			s.N = n
			scenarios = append(scenarios, s)
		}
	}
	start := time.Now()
	rep := measure(t, m, scenarios)
	table := rep.Table()
	fmt.Printf("\nTime to N machines Ready, model time (EC2's published API rate limits; %s).\n\n%s\nThe whole benchmark took %.0f s of wall time.\n",
		describe(m), table, time.Since(start).Seconds())
	if *benchMD != "" {
		if err := os.WriteFile(*benchMD, []byte(table), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if *benchPNG != "" {
		if err := rep.Plot(*benchPNG); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("Chart: %s\n", *benchPNG)
	}
}

func describe(m Model) string {
	return fmt.Sprintf("API latency %v, pending %v, invisible %v, boot %v, SSH handshake %v, runtime %v, init %v, join %v of which %v on the manager one at a time",
		m.APILatency, m.PendingFor, m.InvisibleFor, m.Boot, m.Handshake, m.Runtime, m.Init, m.Join, m.JoinSerial)
}
