package apply

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/provisionhq/provision/providers"
)

// syncBuffer is a log sink safe for the engine's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// loggingProvider logs as every real provider does: on the logger it was
// built with, tagged with its own name.
type loggingProvider struct {
	*fakeProvider
	log *slog.Logger
}

func (p *loggingProvider) Create(ctx context.Context, specs []providers.MachineSpec) ([]providers.Machine, error) {
	p.log.InfoContext(ctx, "launched instances", "count", len(specs))
	return p.fakeProvider.Create(ctx, specs)
}

// TestProviderLogLinesNameTheProviderOnce: a provider's log lines during an
// apply carry provider=<name> once, not once from the provider and again
// from the engine.
func TestProviderLogLinesNameTheProviderOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var out syncBuffer
	f.engine.Logger = slog.New(slog.NewTextHandler(&out, nil))
	reg := providers.NewRegistry()
	reg.Register("fake", providers.Entry{New: func(_ context.Context, env providers.Env) (providers.Provider, error) {
		return &loggingProvider{fakeProvider: f.prov, log: env.Logger.With("provider", "fake")}, nil
	}})
	f.engine.Providers = reg
	if _, err := f.engine.Apply(t.Context(), testPlan(1, 1)); err != nil {
		t.Fatal(err)
	}
	lines := 0
	for _, line := range strings.Split(out.String(), "\n") {
		if !strings.Contains(line, "launched instances") {
			continue
		}
		lines++
		if n := strings.Count(line, "provider="); n != 1 {
			t.Errorf("log line names its provider %d times: %s", n, line)
		}
	}
	if lines == 0 {
		t.Fatalf("the provider logged nothing through the engine's logger:\n%s", out.String())
	}
}
