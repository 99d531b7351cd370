package session

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/provisionhq/provision/plans"
)

// The autoscaler picks up an edited plan's pools, and refuses edits it
// cannot apply while running.
func TestPlanReloader(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "plan.yaml")
	write := func(body string, at time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, at, at); err != nil {
			t.Fatal(err)
		}
	}
	plan := func(cluster string, max int) string {
		return "version: 1\ncluster: {name: " + cluster + "}\nstate: {path: " + filepath.Join(dir, "state") +
			"}\npools:\n  - {name: m, provider: docker, role: manager, count: 1}\n  - {name: w, provider: docker, autoscale: {max: " + strconv.Itoa(max) + "}}\n"
	}
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	write(plan("c", 3), t0)
	s, err := Load(t.Context(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	reload := s.Reloader(path, plans.Options{}, nil)
	if p, err := reload(); p != nil || err != nil {
		t.Fatalf("unchanged file: reload = %v, %v; want nothing", p, err)
	}
	write(plan("c", 7), t0.Add(time.Minute))
	p, err := reload()
	if err != nil || p == nil || p.Pool("w").Autoscale.Max != 7 || s.Plan != p {
		t.Fatalf("edited max: reload = %v, %v; want the new plan with max 7, also in the session", p, err)
	}
	write(plan("c", -1), t0.Add(2*time.Minute))
	if p, err := reload(); p != nil || err == nil || !strings.Contains(err.Error(), "must be ≥ 1") {
		t.Errorf("broken edit: reload = %v, %v; want the loader's error", p, err)
	}
	write(plan("other", 7), t0.Add(3*time.Minute))
	if p, err := reload(); p != nil || err == nil || !strings.Contains(err.Error(), "restart the autoscaler") {
		t.Errorf("renamed cluster: reload = %v, %v; want a refusal", p, err)
	}
	if s.Plan.Pool("w").Autoscale.Max != 7 {
		t.Errorf("a refused reload changed the session's plan")
	}
}
