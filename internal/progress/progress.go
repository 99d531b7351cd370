// Package progress shows the apply engine's events: a live block of one
// line per machine for a person at a terminal, one line per machine step
// otherwise, JSON lines for programs. In plain mode the log comes out in the
// same line form (see Handler), so a person reads one stream.
package progress

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/provisionhq/provision/plans/apply"
)

// Mode is how events are shown.
type Mode string

const (
	Live  Mode = "live"  // a block of one line per machine, redrawn in place
	Plain Mode = "plain" // one line per machine step (see Line)
	JSON  Mode = "json"  // one JSON object per event, for programs
	None  Mode = "none"  // nothing
)

// Display renders engine events in one Mode. Event is safe for concurrent
// use, as the engine requires.
type Display struct {
	mu      sync.Mutex
	w       io.Writer
	mode    Mode
	start   time.Time
	rows    map[string]*row
	order   []string
	drawn   int
	stopped chan struct{}
	done    chan struct{}
}

type row struct {
	pool, stage, status, detail, err string
	since                            time.Time
}

// New shows events on w in mode. Close it when the run ends.
func New(w io.Writer, mode Mode) *Display {
	p := &Display{w: w, mode: mode, start: time.Now(), rows: map[string]*row{}}
	if mode == Live {
		p.stopped = make(chan struct{})
		p.done = make(chan struct{})
		go p.tick() // owned by p; Close waits for it
	}
	return p
}

// Line is the plain form shared by steps and log records: time, subject
// (a machine, or "-"), what (a stage, or a log level), then the text.
func Line(t time.Time, subject, what, text string) string {
	if subject == "" {
		subject = "-"
	}
	return fmt.Sprintf("%s %-32s %-8s %s", t.UTC().Format(time.RFC3339), subject, what, text)
}

// Event is the engine's progress callback.
func (p *Display) Event(ev apply.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch p.mode {
	case JSON:
		b, _ := json.Marshal(ev)
		fmt.Fprintf(p.w, "%s\n", b)
		return
	case None:
		return
	case Plain:
		text := string(ev.Status)
		if ev.Detail != "" {
			text += " (" + ev.Detail + ")"
		}
		if ev.Err != "" {
			text += ": " + oneLine(ev.Err)
		}
		fmt.Fprintln(p.w, Line(ev.Time, ev.Machine, string(ev.Stage), text))
		return
	}
	r, ok := p.rows[ev.Machine]
	if !ok {
		r = &row{pool: ev.Pool}
		p.rows[ev.Machine] = r
		p.order = append(p.order, ev.Machine)
		sort.Strings(p.order)
	}
	if r.stage != string(ev.Stage) || ev.Status == apply.StatusStart {
		r.since = ev.Time
	}
	r.stage, r.status, r.detail, r.err = string(ev.Stage), string(ev.Status), ev.Detail, ev.Err
	p.drawLocked()
}

func (p *Display) tick() {
	defer close(p.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.stopped:
			return
		case <-t.C:
			p.mu.Lock()
			p.drawLocked()
			p.mu.Unlock()
		}
	}
}

var symbols = map[string]string{"start": "…", "done": "✓", "fail": "✗", "skip": "·"}

func (p *Display) drawLocked() {
	if p.drawn > 0 {
		fmt.Fprintf(p.w, "\x1b[%dA", p.drawn)
	}
	for _, id := range p.order {
		r := p.rows[id]
		el := time.Since(r.since).Round(time.Second)
		text := fmt.Sprintf("%s %-32s %-10s %-8s %5s", symbols[r.status], id, r.pool, r.stage, el)
		if r.status != "start" {
			text = fmt.Sprintf("%s %-32s %-10s %-8s %5s", symbols[r.status], id, r.pool, r.stage, r.detail)
		}
		if r.err != "" {
			text += "  " + firstLine(r.err)
		}
		fmt.Fprintf(p.w, "\x1b[2K%s\n", text)
	}
	p.drawn = len(p.order)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// oneLine keeps a multi-line error on its line, so every line of the plain
// stream has the one form.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }

// Close stops the live display's clock.
func (p *Display) Close() {
	if p.mode == Live {
		close(p.stopped)
		<-p.done
	}
}
