package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/provisionhq/provision/plans/apply"
)

var updateReport = flag.Bool("update-report", false, "rewrite testdata/report.golden")

// TestReportLine: the summary after up/down says how many machines were
// created and which failed at which stage, one line per run (golden).
func TestReportLine(t *testing.T) {
	failed := errors.New("2 machines failed")
	tests := []struct {
		name string
		op   string
		rep  apply.Report
		err  error
	}{
		{"no changes", "up", apply.Report{Unchanged: 3, Duration: 1234 * time.Millisecond}, nil},
		{"all created", "up", apply.Report{Created: 4, Unchanged: 1, Duration: 95 * time.Second}, nil},
		{"some failed", "up", apply.Report{Created: 2, Unchanged: 1, Duration: 95 * time.Second, Failed: []apply.Failure{
			{Machine: "c-spot-1a2b3c", Pool: "spot", Stage: apply.StageCreate, Err: "insufficient capacity"},
			{Machine: "c-workers-4d5e6f", Pool: "workers", Stage: apply.StageRuntime, Err: "apt-get: exit 100"},
		}}, failed},
		{"nothing created, all failed", "up", apply.Report{Duration: 3 * time.Second, Failed: []apply.Failure{
			{Machine: "c-workers-4d5e6f", Pool: "workers", Stage: apply.StageSSH, Err: "timeout"},
		}}, failed},
		{"down", "down", apply.Report{Deleted: 5, Orphans: 1, Adopted: 0, Duration: 20 * time.Second}, nil},
	}
	var got strings.Builder
	for _, tt := range tests {
		line := reportLine(tt.op, &tt.rep, tt.err)
		if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
			t.Errorf("%s: summary is not one line: %q", tt.name, line)
		}
		if n := len(tt.rep.Failed); n > 0 && !strings.Contains(line, fmt.Sprintf("%d failed", n)) {
			t.Errorf("%s: summary does not count the failed machines: %q", tt.name, line)
		}
		fmt.Fprintf(&got, "%s: %s", tt.name, line)
	}
	path := filepath.Join("testdata", "report.golden")
	if *updateReport {
		if err := os.WriteFile(path, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update-report to create it)", err)
	}
	if got.String() != string(want) {
		t.Errorf("summaries differ from %s (run with -update-report after checking):\n--- got\n%s--- want\n%s", path, got.String(), want)
	}
}
