package swarm

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// orchestrate stands in for Swarm's orchestrator: when a node is set to
// drain, its tasks are told to shut down at once and stop (their
// replacements starting on w-1b2c) only after a few task lists, so Drain
// has something to wait for. stopped reports whether that happened.
func orchestrate(f *fakeEngine, stopAfterLists int, nodeUp bool) (stopped func() bool) {
	lists, stopAt := 0, -1
	done := false
	drained := ""
	f.onUpdate = func(f *fakeEngine, id string) {
		if f.node(id)["Spec"].(map[string]any)["Availability"] != "drain" {
			return
		}
		drained = id
		for _, t := range f.tasks {
			if t["NodeID"] == id && t["DesiredState"] == "running" {
				t["DesiredState"] = "shutdown"
			}
		}
		stopAt = lists + stopAfterLists
	}
	f.onTaskList = func(f *fakeEngine) {
		lists++
		if stopAt < 0 || lists < stopAt || done || !nodeUp {
			return
		}
		done = true
		var moved []map[string]any
		for _, t := range f.tasks {
			if t["NodeID"] != drained || t["DesiredState"] != "shutdown" || status(t)["State"] != "running" && status(t)["State"] != "preparing" {
				continue
			}
			status(t)["State"] = "shutdown"
			if t["ServiceID"] == agentService {
				continue // global: it runs on every node already
			}
			moved = append(moved, map[string]any{"ID": "m" + str(t, "ID")[1:], "ServiceID": t["ServiceID"], "NodeID": idW1b2c,
				"Spec": t["Spec"], "DesiredState": "running", "Status": map[string]any{"State": "running", "Message": "started"}})
		}
		f.tasks = append(f.tasks, moved...)
	}
	return func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return done
	}
}

// agentService is the global service of the fixtures.
const agentService = "h5gt7r9e1w3q5a7s9d1f3g5h7"

// liveOn lists the tasks on node that are wanted running or not yet stopped.
func liveOn(f *fakeEngine, node string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for _, t := range f.tasks {
		st := str(status(t), "State")
		if t["NodeID"] == node && (t["DesiredState"] == "running" || st == "running" || st == "preparing") {
			ids = append(ids, str(t, "ID")+" "+str(t, "DesiredState")+"/"+st)
		}
	}
	return ids
}

func (f *fakeEngine) recordedUpdates() []update {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]update(nil), f.updates...)
}

// specOf is node id's spec from the fixtures, as JSON would decode it.
func specOf(t *testing.T, id string) map[string]any {
	t.Helper()
	for _, n := range fixture(t, "nodes.json") {
		if n["ID"] == id {
			return n["Spec"].(map[string]any)
		}
	}
	t.Fatalf("no node %s in the fixtures", id)
	return nil
}

func TestDrain(t *testing.T) {
	t.Parallel()
	const poll = 10 * time.Millisecond
	tests := []struct {
		name     string
		hostname string
		setup    func(f *fakeEngine) (stopped func() bool)
		timeout  time.Duration
		// wantVersions are the ?version= of the updates sent, in order.
		wantVersions []string
		wantErr      []string
		wantIs       error
		check        func(t *testing.T, f *fakeEngine)
	}{
		{
			name: "drains keeping the rest of the spec and waits for the tasks to stop", hostname: "w-9f00",
			setup:        func(f *fakeEngine) func() bool { return orchestrate(f, 3, true) },
			wantVersions: []string{"31"},
			check: func(t *testing.T, f *fakeEngine) {
				if live := liveOn(f, idW9f00); len(live) != 0 {
					t.Errorf("Drain returned with tasks still on the node: %v", live)
				}
				var moved []string
				for _, task := range liveOn(f, idW1b2c) {
					if strings.HasPrefix(task, "m") {
						moved = append(moved, task)
					}
				}
				if len(moved) != 3 {
					t.Errorf("replacements on w-1b2c: %v, want web.1, web.2 and db's", moved)
				}
			},
		},
		{
			name: "a down node only waits for Swarm to give its tasks up", hostname: "w-77ee",
			setup:        func(f *fakeEngine) func() bool { return orchestrate(f, 3, false) },
			wantVersions: []string{"35"},
		},
		{
			name: "already drained and empty: no update", hostname: "w-5511",
		},
		{
			name: "unknown hostname: nothing to drain", hostname: "w-gone",
		},
		{
			name: "another writer updated the node first: read it again", hostname: "w-9f00",
			setup: func(f *fakeEngine) func() bool {
				raced := false
				f.beforeUpdate = func(f *fakeEngine, id string, _ int) *reply {
					if !raced {
						raced = true
						bumpVersion(f.node(id)) // someone added a label meanwhile
					}
					return nil
				}
				return orchestrate(f, 1, true)
			},
			wantVersions: []string{"31", "32"},
		},
		{
			name: "tasks that never leave: ctx's deadline, with how many are left", hostname: "w-9f00",
			timeout:      300 * time.Millisecond,
			wantVersions: []string{"31"},
			wantErr:      []string{"drain swarm node w-9f00: 4 tasks still on it", "context deadline exceeded"},
			wantIs:       context.DeadlineExceeded,
		},
		{
			name: "update refused: the engine's reason at once", hostname: "w-9f00",
			setup: func(f *fakeEngine) func() bool {
				f.beforeUpdate = func(*fakeEngine, string, int) *reply {
					return &reply{500, "rpc error: code = Unknown desc = raft: no elected cluster leader"}
				}
				return nil
			},
			wantVersions: []string{"31"},
			wantErr:      []string{"drain swarm node w-9f00: set swarm node " + idW9f00 + " to drain", "no elected cluster leader"},
		},
		{
			name: "not a manager", hostname: "w-9f00",
			setup: func(f *fakeEngine) func() bool {
				f.override["/nodes"] = reply{503, `{"message":"This node is not a swarm manager."}`}
				return nil
			},
			wantErr: []string{"drain swarm node w-9f00: list swarm nodes", "This node is not a swarm manager"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := startFake(t)
			var stopped func() bool
			if tt.setup != nil {
				f.mu.Lock()
				stopped = tt.setup(f)
				f.mu.Unlock()
			}
			s := newSource(t, f, Options{PollInterval: poll})
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			err := s.Drain(ctxTimeout(t, timeout), tt.hostname)

			if len(tt.wantErr) == 0 && err != nil {
				t.Fatalf("Drain: %v", err)
			}
			for _, w := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want it to contain %q", err, w)
				}
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("err = %v, want errors.Is %v", err, tt.wantIs)
			}
			updates := f.recordedUpdates()
			var versions []string
			for _, u := range updates {
				versions = append(versions, u.version)
				want := specOf(t, u.id)
				want["Availability"] = "drain"
				if !reflect.DeepEqual(u.body, want) {
					got, _ := json.Marshal(u.body)
					exp, _ := json.Marshal(want)
					t.Errorf("update body of %s:\n got %s\nwant %s (the spec as read, drained)", u.id, got, exp)
				}
			}
			if !reflect.DeepEqual(versions, tt.wantVersions) {
				t.Errorf("updates at versions %v, want %v", versions, tt.wantVersions)
			}
			if err == nil && stopped != nil && tt.hostname != "w-77ee" && !stopped() {
				t.Errorf("Drain returned before the orchestrator stopped the node's tasks")
			}
			if tt.check != nil {
				tt.check(t, f)
			}
			if err != nil {
				return
			}
			// Again: idempotent, and no second update.
			if err := s.Drain(ctxTimeout(t, 10*time.Second), tt.hostname); err != nil {
				t.Errorf("second Drain: %v", err)
			}
			if n := len(f.recordedUpdates()); n != len(updates) {
				t.Errorf("second Drain sent %d more updates, want none", n-len(updates))
			}
		})
	}
}
