package progress

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
)

// Handler is a slog.Handler that writes records at level and above in the
// plain Line form: the record's "machine" attribute, when it has one, is
// the subject, the level is the what, and the message and other attributes
// (k=v, quoted when needed) are the text. The CLI logs through it next to a
// plain display, so steps and warnings read as one stream.
func Handler(w io.Writer, level slog.Leveler) slog.Handler {
	return &handler{out: &output{w: w}, level: level}
}

// output is shared by a handler and the handlers derived from it.
type output struct {
	mu sync.Mutex
	w  io.Writer
}

type handler struct {
	out     *output
	level   slog.Leveler
	prefix  string // "group." of WithGroup
	machine string // from WithAttrs
	attrs   string // pre-formatted " k=v" of WithAttrs
}

func (h *handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *handler) Handle(_ context.Context, r slog.Record) error {
	machine := h.machine
	var b strings.Builder
	b.WriteString(oneLine(r.Message))
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		if h.prefix == "" && a.Key == "machine" && machine == "" {
			machine = a.Value.String()
			return true
		}
		writeAttr(&b, h.prefix, a)
		return true
	})
	line := Line(r.Time, machine, strings.ToLower(r.Level.String()), b.String())
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	_, err := fmt.Fprintln(h.out.w, line)
	return err
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *h
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range attrs {
		if h.prefix == "" && a.Key == "machine" && n.machine == "" {
			n.machine = a.Value.String()
			continue
		}
		writeAttr(&b, h.prefix, a)
	}
	n.attrs = b.String()
	return &n
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.prefix += name + "."
	return &n
}

func writeAttr(b *strings.Builder, prefix string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		for _, g := range a.Value.Group() {
			writeAttr(b, prefix+a.Key+".", g)
		}
		return
	}
	v := oneLine(a.Value.String())
	if v == "" || strings.ContainsAny(v, " \t\"=") {
		v = strconv.Quote(v)
	}
	fmt.Fprintf(b, " %s%s=%s", prefix, a.Key, v)
}
