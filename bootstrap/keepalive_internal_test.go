package bootstrap

import (
	"testing"
	"time"
)

// TestKeepaliveOnByDefault: every client provision opens (session, engine,
// autoscaler, Pulumi all pass a Config without Keepalive) pings its peer,
// so a vanished machine is detected (TestKeepaliveClosesDeadConnection)
// rather than hanging a Run until TCP gives up.
func TestKeepaliveOnByDefault(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		set  time.Duration
		want time.Duration
	}{
		{"unset is the default", 0, DefaultKeepalive},
		{"explicit interval", 2 * time.Second, 2 * time.Second},
		{"negative disables", -1, 0},
	}
	for _, tt := range tests {
		if got := (Config{Keepalive: tt.set}).keepaliveInterval(); got != tt.want {
			t.Errorf("%s: interval %v, want %v", tt.name, got, tt.want)
		}
	}
	if DefaultKeepalive*keepaliveMisses > time.Minute {
		t.Errorf("a dead peer is detected after %v; want within a minute", DefaultKeepalive*keepaliveMisses)
	}
}
