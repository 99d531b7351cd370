package main

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

// progress renders engine events: a live block of one line per machine on a
// terminal, timestamped lines otherwise, JSON lines for machines.
type progress struct {
	mu      sync.Mutex
	w       io.Writer
	mode    string // live, plain, json, none
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

func newProgress(w io.Writer, o *options) *progress {
	p := &progress{w: w, start: time.Now(), rows: map[string]*row{}}
	switch {
	case o.output == "json":
		p.mode = "json"
	case o.progress == "none":
		p.mode = "none"
	case o.liveDisplay():
		p.mode = "live"
		p.stopped = make(chan struct{})
		p.done = make(chan struct{})
		go p.tick() // owned by p; Close waits for it
	default:
		p.mode = "plain"
	}
	return p
}

// Event is the engine's progress callback.
func (p *progress) Event(ev apply.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch p.mode {
	case "json":
		b, _ := json.Marshal(ev)
		fmt.Fprintf(p.w, "%s\n", b)
		return
	case "none":
		return
	case "plain":
		line := fmt.Sprintf("%s %-32s %-8s %s", ev.Time.UTC().Format(time.RFC3339), ev.Machine, ev.Stage, ev.Status)
		if ev.Detail != "" {
			line += " (" + ev.Detail + ")"
		}
		if ev.Err != "" {
			line += ": " + ev.Err
		}
		fmt.Fprintln(p.w, line)
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

func (p *progress) tick() {
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

func (p *progress) drawLocked() {
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

// Close stops the live display's clock.
func (p *progress) Close() {
	if p.mode == "live" {
		close(p.stopped)
		<-p.done
	}
}
