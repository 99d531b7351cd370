package swarm

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// watcher runs Watch in the background and records the calls of changed.
type watcher struct {
	calls  chan time.Time
	count  atomic.Int32
	cancel context.CancelFunc
	done   chan error
}

func startWatch(t *testing.T, s *Source) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	w := &watcher{calls: make(chan time.Time, 100), cancel: cancel, done: make(chan error, 1)}
	go func() {
		w.done <- s.Watch(ctx, func() {
			w.count.Add(1)
			select { // changed must not block; neither does this one
			case w.calls <- time.Now():
			default:
			}
		})
	}()
	t.Cleanup(func() { w.stop(t) })
	return w
}

// stop cancels Watch and checks it returns ctx's error promptly.
func (w *watcher) stop(t *testing.T) {
	t.Helper()
	w.cancel()
	select {
	case err := <-w.done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Watch returned %v, want context.Canceled", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Watch did not return after its ctx was cancelled")
	}
}

// waitCall waits up to d for a call of changed and returns when it came.
func (w *watcher) waitCall(t *testing.T, d time.Duration, what string) time.Time {
	t.Helper()
	select {
	case at := <-w.calls:
		return at
	case <-time.After(d):
		t.Fatalf("changed not called within %v after %s", d, what)
		return time.Time{}
	}
}

// waitFor polls cond until it holds or 5 s passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWatchSeesNewPendingTaskWithinASecond(t *testing.T) {
	t.Parallel()
	f := startFake(t)
	s := newSource(t, f, Options{}) // the default 1 s poll
	w := startWatch(t, s)
	waitFor(t, "the first poll", func() bool { return f.count("GET /v1.41/nodes") >= 1 })

	added := time.Now()
	f.with(func(f *fakeEngine) {
		f.tasks = append(f.tasks, pendingTask("n3wp3nd1ngt4skx8c7v6b5n4m", 2_000_000_000, 4*gib))
	})
	at := w.waitCall(t, 1500*time.Millisecond, "a task went pending")
	if lag := at.Sub(added); lag > 1200*time.Millisecond {
		t.Errorf("changed %v after the task went pending, want about a poll interval (1 s)", lag)
	}
	if n := w.count.Load(); n != 1 {
		t.Errorf("changed called %d times, want once", n)
	}
}

func TestWatchPollCallsOnlyOnChange(t *testing.T) {
	t.Parallel()
	f := startFake(t)
	s := newSource(t, f, Options{PollInterval: 20 * time.Millisecond})
	w := startWatch(t, s)

	waitFor(t, "several polls", func() bool { return f.count("GET /v1.41/tasks") >= 10 })
	if n := w.count.Load(); n != 0 {
		t.Fatalf("changed called %d times while nothing changed", n)
	}

	steps := []struct {
		name   string
		change func(f *fakeEngine)
	}{
		{name: "a node went down", change: func(f *fakeEngine) {
			status(f.node(idW1b2c))["State"] = "down"
		}},
		{name: "a pending task was placed", change: func(f *fakeEngine) {
			st := status(f.task("b1gq0x6wq7w8f0k2z4r5t6y7u"))
			st["State"], st["Err"] = "assigned", ""
			f.task("b1gq0x6wq7w8f0k2z4r5t6y7u")["NodeID"] = idW9f00
		}},
		{name: "a drained node came back", change: func(f *fakeEngine) {
			f.node(idW5511)["Spec"].(map[string]any)["Availability"] = "active"
		}},
		{name: "a service with pending tasks was removed", change: func(f *fakeEngine) {
			f.tasks = removeTasks(f.tasks, "a1pk3m5n7q9s1u3w5y7z9b1d3", "a2pk3m5n7q9s1u3w5y7z9b1d3")
		}},
	}
	for i, st := range steps {
		f.with(st.change)
		w.waitCall(t, time.Second, st.name)
		polls := f.count("GET /v1.41/tasks")
		waitFor(t, "more polls", func() bool { return f.count("GET /v1.41/tasks") >= polls+5 })
		if n := int(w.count.Load()); n != i+1 {
			t.Fatalf("after %q: changed called %d times in all, want %d (once per change)", st.name, n, i+1)
		}
	}
	// A label change alone is not what the poll watches (the node event
	// stream reports it).
	f.with(func(f *fakeEngine) { f.node(idW9f00)["Spec"].(map[string]any)["Labels"] = map[string]any{"zone": "z"} })
	polls := f.count("GET /v1.41/tasks")
	waitFor(t, "more polls", func() bool { return f.count("GET /v1.41/tasks") >= polls+5 })
	if n := int(w.count.Load()); n != len(steps) {
		t.Errorf("changed called %d times, want %d", n, len(steps))
	}
}

func removeTasks(tasks []map[string]any, ids ...string) []map[string]any {
	var out []map[string]any
	for _, t := range tasks {
		keep := true
		for _, id := range ids {
			keep = keep && t["ID"] != id
		}
		if keep {
			out = append(out, t)
		}
	}
	return out
}

func TestWatchEvents(t *testing.T) {
	t.Parallel()
	f := startFake(t)
	// No poll after the first: every call below comes from the stream.
	s := newSource(t, f, Options{PollInterval: time.Hour})
	w := startWatch(t, s)
	waitFor(t, "the event stream", func() bool { return f.openStreams() == 1 })

	f.events <- nodeEvent(idW9f00, "w-9f00", "update")
	w.waitCall(t, time.Second, "a node event")

	// The engine ends the stream (a manager restarting): Watch reopens it
	// and keeps reporting.
	f.dropStreams <- struct{}{}
	waitFor(t, "the stream to be reopened", func() bool { return f.openStreams() == 2 })
	f.events <- `{"Type":"service","Action":"remove","Actor":{"ID":"k1ig0x9c8v7b6n5m4l3k2j1h0","Attributes":{"name":"shop_big"}},"scope":"swarm","time":1764000000,"timeNano":1764000000000000000}`
	w.waitCall(t, time.Second, "a service event after reconnecting")

	// A garbled event is a broken stream: reopened too.
	f.events <- `{"Type":"node",`
	f.events <- `"garbage"}`
	waitFor(t, "the stream to be reopened after garbage", func() bool { return f.openStreams() == 3 })
	f.events <- nodeEvent(idW1b2c, "w-1b2c", "create")
	w.waitCall(t, time.Second, "a node event after garbage")

	if got := f.allRequests(); !containsPrefix(got, `GET /v1.41/events?filters=%7B%22type%22%3A%7B%22node%22%3Atrue%2C%22service%22%3Atrue%7D%7D`) {
		t.Errorf("requests %q, want the event stream filtered to node and service events", got)
	}
	if n := w.count.Load(); n != 3 {
		t.Errorf("changed called %d times, want 3 (one per event)", n)
	}
}

func containsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if len(s) >= len(prefix) && s[:len(prefix)] == prefix {
			return true
		}
	}
	return false
}

func TestWatchWithoutEngineWaitsForCtx(t *testing.T) {
	t.Parallel()
	s := New(UnixDialer(filepath.Join(t.TempDir(), "missing.sock")), Options{PollInterval: 10 * time.Millisecond})
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	var calls atomic.Int32
	start := time.Now()
	err := s.Watch(ctx, func() { calls.Add(1) })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Watch = %v, want ctx's error", err)
	}
	if el := time.Since(start); el < 250*time.Millisecond || el > 2*time.Second {
		t.Errorf("Watch returned after %v, want at ctx's deadline (300 ms)", el)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("changed called %d times with no engine", n)
	}
}
