package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/provisionhq/provision/plans"
)

// Mistakes in `provision autoscale` invocations fail before anything starts,
// saying what to do.
func TestAutoscaleRefusesBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	noAuto := filepath.Join(dir, "fixed.yaml")
	auto := filepath.Join(dir, "auto.yaml")
	base := "version: 1\ncluster: {name: c}\nstate: {path: " + filepath.Join(dir, "state") + "}\npools:\n  - {name: m, provider: docker, role: manager, count: 1}\n"
	if err := os.WriteFile(noAuto, []byte(base+"  - {name: w, provider: docker, count: 2}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(auto, []byte(base+"  - {name: w, provider: docker, autoscale: {max: 3}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"autoscale"}, "name the plan"},
		{[]string{"autoscale", noAuto}, "has no autoscaled pool"},
		{[]string{"autoscale", auto, "--expander", "cheapest"}, `--expander: unknown expander "cheapest"`},
		{[]string{"autoscale", auto, "--scale-down-utilization", "1.5"}, "between 0 and 1"},
		{[]string{"autoscale", auto, "--source", "nomad"}, `--source "nomad": use swarm or kubernetes`},
		{[]string{"autoscale", auto, "--docker-host", "tcp://10.0.0.1:2375"}, "use unix:///path/to/docker.sock"},
	}
	for _, tt := range tests {
		root := newRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(tt.args)
		if err := root.Execute(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("provision %s: err = %v, want it to say %q", strings.Join(tt.args, " "), err, tt.want)
		}
	}
}

// Flags override the plan's autoscale block; unset flags keep it.
func TestAutoscaleFlagsOverridePlan(t *testing.T) {
	t.Parallel()
	p := &plans.Plan{Autoscale: &plans.Autoscale{Expander: "price", MaxNodes: 7, Cooldown: plans.Duration(time.Minute),
		ScaleDown: plans.AutoscaleScaleDown{Utilization: 0.3, UnneededTime: plans.Duration(time.Hour)}}}
	f := &autoscaleFlags{}
	cmd := newAutoscale(&options{})
	if err := cmd.ParseFlags([]string{"--expander", "priority", "--scale-down-unneeded-time", "30s"}); err != nil {
		t.Fatal(err)
	}
	f.expander, _ = cmd.Flags().GetString("expander")
	f.unneeded, _ = cmd.Flags().GetDuration("scale-down-unneeded-time")
	a := f.settings(cmd, p)
	if a.Expander != "priority" || time.Duration(a.ScaleDown.UnneededTime) != 30*time.Second {
		t.Errorf("flags not applied: %+v", a)
	}
	if a.MaxNodes != 7 || a.ScaleDown.Utilization != 0.3 || time.Duration(a.Cooldown) != time.Minute || a.Listen != ":9090" {
		t.Errorf("plan values or defaults lost: %+v", a)
	}
}
