package provider

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	p "github.com/pulumi/pulumi-go-provider"
)

// engineLog sends the engine's log to the Pulumi engine: warnings show in
// `pulumi up`, the rest with --logtostderr -v. The engine logs no secret.
func engineLog(ctx context.Context) *slog.Logger {
	return slog.New(&logHandler{log: p.GetLogger(ctx)})
}

// logHandler is a slog.Handler writing through a Pulumi logger. Errors go
// out as warnings: the engine reports the operation's error itself, and an
// error diagnostic on its own would fail the update.
type logHandler struct {
	log    p.Logger
	prefix string // "group." of WithGroup
	attrs  string // pre-formatted " k=v" of WithAttrs
}

func (h *logHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *logHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		writeAttr(&b, h.prefix, a)
		return true
	})
	if r.Level >= slog.LevelWarn {
		h.log.Warning(b.String())
	} else {
		h.log.Debug(b.String())
	}
	return nil
}

func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range attrs {
		writeAttr(&b, h.prefix, a)
	}
	return &logHandler{log: h.log, prefix: h.prefix, attrs: b.String()}
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &logHandler{log: h.log, prefix: h.prefix + name + ".", attrs: h.attrs}
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
	fmt.Fprintf(b, " %s%s=%v", prefix, a.Key, a.Value.Any())
}
