package etcd

import (
	"context"
	"log/slog"
	"slices"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapToSlog returns a zap logger for the etcd client that writes to log,
// the one logger provision uses. The client's Info lines describe its
// connection internals, so they go out at Debug.
func zapToSlog(ctx context.Context, log *slog.Logger) *zap.Logger {
	h := log.With("component", "etcd-client").Handler()
	return zap.New(slogCore{ctx: ctx, h: h})
}

// slogCore is a zapcore.Core over a slog.Handler.
type slogCore struct {
	ctx context.Context // for the handler's values only
	h   slog.Handler
}

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.InfoLevel:
		return slog.LevelDebug
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (c slogCore) Enabled(l zapcore.Level) bool { return c.h.Enabled(c.ctx, slogLevel(l)) }

func (c slogCore) With(fields []zapcore.Field) zapcore.Core {
	return slogCore{ctx: c.ctx, h: c.h.WithAttrs(attrs(fields))}
}

func (c slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(e.Time, slogLevel(e.Level), e.Message, 0)
	r.AddAttrs(attrs(fields)...)
	return c.h.Handle(c.ctx, r)
}

func (c slogCore) Sync() error { return nil }

// attrs turns zap fields into slog attributes, sorted by key so that lines
// read the same every time.
func attrs(fields []zapcore.Field) []slog.Attr {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	out := make([]slog.Attr, 0, len(enc.Fields))
	for k, v := range enc.Fields {
		out = append(out, slog.Any(k, v))
	}
	slices.SortFunc(out, func(a, b slog.Attr) int { return strings.Compare(a.Key, b.Key) })
	return out
}
