package etcd

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// TestZapToSlog: the etcd client's zap lines reach slog with their fields,
// at the mapped level; its Info chatter is Debug.
func TestZapToSlog(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		log  func(*zap.Logger)
		want string // "" for nothing written
	}{
		{"warn with fields", func(l *zap.Logger) { l.With(zap.String("endpoint", "e1")).Warn("retrying", zap.Int("attempt", 2)) },
			`level=WARN msg=retrying component=etcd-client endpoint=e1 attempt=2`},
		{"error", func(l *zap.Logger) { l.Error("lost watcher") }, `level=ERROR msg="lost watcher" component=etcd-client`},
		{"info is debug", func(l *zap.Logger) { l.Info("connected") }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			h := slog.NewTextHandler(&buf, &slog.HandlerOptions{
				Level: slog.LevelInfo,
				ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
					if a.Key == slog.TimeKey {
						return slog.Attr{}
					}
					return a
				},
			})
			tt.log(zapToSlog(t.Context(), slog.New(h)))
			if got := strings.TrimSpace(buf.String()); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}
