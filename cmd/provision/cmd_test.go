package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/provisionhq/provision/plans/apply"
	"github.com/provisionhq/provision/state"
)

func TestFindMachine(t *testing.T) {
	t.Parallel()
	st := &state.State{Machines: []state.Machine{
		{ID: "c-managers-aaaaaa", Pool: "managers"},
		{ID: "c-workers-bbbbbb", Pool: "workers"},
		{ID: "c-workers-bbcccc", Pool: "workers"},
	}}
	tests := []struct {
		query, want, wantErr string
	}{
		{query: "c-workers-bbcccc", want: "c-workers-bbcccc"},
		{query: "managers", want: "c-managers-aaaaaa"},
		{query: "workers", want: "c-workers-bbbbbb"},
		{query: "cccc", want: "c-workers-bbcccc"},
		{query: "bb", wantErr: "matches 2 machines"},
		{query: "nope", wantErr: `no machine "nope"`},
	}
	for _, tt := range tests {
		m, err := findMachine(st, tt.query)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("findMachine(%q) err = %v, want %q", tt.query, err, tt.wantErr)
			}
			continue
		}
		if err != nil || m.ID != tt.want {
			t.Errorf("findMachine(%q) = %q, %v; want %q", tt.query, m.ID, err, tt.want)
		}
	}
}

func TestPlainProgressLines(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := newProgress(&buf, &options{output: "text", progress: "plain"})
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	p.Event(apply.Event{Time: at, Machine: "c-workers-bbbbbb", Stage: apply.StageCreate, Status: apply.StatusDone, Detail: "10.0.0.3"})
	p.Event(apply.Event{Time: at, Machine: "c-workers-bbbbbb", Stage: apply.StageJoin, Status: apply.StatusFail, Err: "manager gone"})
	p.Close()
	want := "2026-11-24T12:00:00Z c-workers-bbbbbb                 create   done (10.0.0.3)\n" +
		"2026-11-24T12:00:00Z c-workers-bbbbbb                 join     fail: manager gone\n"
	if buf.String() != want {
		t.Errorf("plain progress:\n%q\nwant\n%q", buf.String(), want)
	}
}

func TestValidateReportsPosition(t *testing.T) {
	t.Parallel()
	plan := filepath.Join(t.TempDir(), "plan.yaml")
	if err := os.WriteFile(plan, []byte("version: 1\ncluster:\n  name: c\npools:\n  - name: m\n    provider: docker\n    role: manager\n    count: -1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"validate", plan})
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), plan+":8:12") {
		t.Fatalf("validate of a negative count: err = %v, want an error at %s:8:12", err, plan)
	}
}
