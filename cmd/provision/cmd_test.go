package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/provisionhq/provision/internal/session"
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

// A plain up on a non-terminal is one stream: a line per machine step and
// log lines in the same form, with info logs (`level=INFO msg="step
// applied"`) left out unless --log-level debug.
func TestPlainUpIsOneStream(t *testing.T) {
	t.Parallel()
	line := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \S+ +(create|ssh|runtime|join|drain|delete|debug|info|warn|error) +\S.*$`)
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		logLevel  string
		wantLines int
		wantDebug bool
	}{
		{logLevel: "info", wantLines: 5},
		{logLevel: "warn", wantLines: 5},
		{logLevel: "debug", wantLines: 7, wantDebug: true},
	}
	for _, tt := range tests {
		t.Run(tt.logLevel, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer // stdout and stderr interleaved, as on a terminal
			o := &options{output: "text", progress: "auto", logLevel: tt.logLevel}
			s := &session.Session{}
			prog := o.display(&out, &out, s)
			// What the engine and bootstrap send during one machine's up.
			prog.Event(apply.Event{Time: at, Machine: "c-workers-bbbbbb", Pool: "workers", Stage: apply.StageCreate, Status: apply.StatusDone, Detail: "10.0.0.3"})
			s.Log.Info("step applied", "machine", "c-workers-bbbbbb", "step", "install docker", "duration", time.Second)
			prog.Event(apply.Event{Time: at, Machine: "c-workers-bbbbbb", Pool: "workers", Stage: apply.StageRuntime, Status: apply.StatusDone})
			s.Log.Debug("ssh dial", "machine", "c-workers-bbbbbb", "addr", "10.0.0.3:22")
			s.Log.Warn("manager does not answer; going through another", "manager", "c-managers-aaaaaa", "instead", "c-managers-cccccc")
			s.Log.Error("unlock state", "err", errors.New("lock file gone\nreally"))
			prog.Event(apply.Event{Time: at, Machine: "c-workers-bbbbbb", Pool: "workers", Stage: apply.StageJoin, Status: apply.StatusFail, Err: "join: manager gone\nretry later"})
			prog.Close()
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			for _, l := range lines {
				if !line.MatchString(l) || strings.Contains(l, "level=") {
					t.Errorf("line not in the plain form: %q", l)
				}
			}
			if len(lines) != tt.wantLines {
				t.Errorf("%d lines, want %d:\n%s", len(lines), tt.wantLines, out.String())
			}
			if got := strings.Contains(out.String(), "step applied"); got != tt.wantDebug {
				t.Errorf("info log shown = %v, want %v:\n%s", got, tt.wantDebug, out.String())
			}
		})
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
