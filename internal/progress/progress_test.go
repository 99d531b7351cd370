package progress

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/provisionhq/provision/plans/apply"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n%s\nwant:\n%s", name, got, want)
	}
}

// recorded is what the engine and the log send during a small up: two
// machines, a warning about a manager, a failed join with a multi-line
// error.
func recorded(d *Display, log *slog.Logger, at time.Time) {
	m, w := "c-managers-aaaaaa", "c-workers-bbbbbb"
	ev := func(machine, pool string, stage apply.Stage, status apply.Status, detail, err string) {
		d.Event(apply.Event{Time: at, Machine: machine, Pool: pool, Stage: stage, Status: status, Detail: detail, Err: err})
	}
	ev(m, "managers", apply.StageCreate, apply.StatusStart, "", "")
	ev(w, "workers", apply.StageCreate, apply.StatusStart, "", "")
	ev(m, "managers", apply.StageCreate, apply.StatusDone, "10.0.0.2", "")
	ev(w, "workers", apply.StageCreate, apply.StatusDone, "10.0.0.3", "")
	ev(m, "managers", apply.StageSSH, apply.StatusDone, "", "")
	log.Info("step applied", "machine", w, "step", "install docker")
	ev(m, "managers", apply.StageRuntime, apply.StatusSkip, "already installed", "")
	log.With("machine", m).Warn("node has leftovers of an interrupted run; resetting it", "why", "a=b c")
	log.Warn("deleting machines of this cluster that state does not know", "provider", "docker", "machines", []string{"c-workers-zzzzzz"})
	ev(m, "managers", apply.StageJoin, apply.StatusDone, "", "")
	ev(w, "workers", apply.StageJoin, apply.StatusFail, "", "join through c-managers-aaaaaa: connection reset\nmanager gone")
	log.WithGroup("ssh").Error("dial", "err", errors.New("refused"))
}

// The plain stream a person reads from a non-terminal `up`: every line in
// one form, info logs left out.
func TestPlainGolden(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	d := New(&out, Plain)
	log := slog.New(&fixedTime{Handler: Handler(&out, slog.LevelWarn), at: at})
	recorded(d, log, at)
	d.Close()
	golden(t, "plain.golden", out.Bytes())
}

// JSON events for programs stay as they were: one object per event, no log.
func TestJSONGolden(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	d := New(&out, JSON)
	recorded(d, slog.New(slog.DiscardHandler), at)
	d.Close()
	golden(t, "json.golden", out.Bytes())
}

// fixedTime stamps records with a fixed time, for golden output.
type fixedTime struct {
	slog.Handler
	at time.Time
}

func (f *fixedTime) Handle(ctx context.Context, r slog.Record) error {
	r.Time = f.at
	return f.Handler.Handle(ctx, r)
}

func (f *fixedTime) WithAttrs(as []slog.Attr) slog.Handler {
	return &fixedTime{Handler: f.Handler.WithAttrs(as), at: f.at}
}

func (f *fixedTime) WithGroup(name string) slog.Handler {
	return &fixedTime{Handler: f.Handler.WithGroup(name), at: f.at}
}
