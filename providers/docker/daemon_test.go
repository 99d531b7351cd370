package docker

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/provisionhq/provision/providers/docker/dockertest"
)

// requireDocker skips the test when dockerd is unreachable, unless
// PROVISION_REQUIRE_DOCKER is set (CI sets it), in which case it fails.
func requireDocker(t *testing.T) { dockertest.Require(t) }

// dockerClient is the local daemon's client, for tests that need dockerd.
func dockerClient(t *testing.T) *client.Client { return dockertest.Require(t) }

// nodeImage builds the node image on the first run on a machine (about two
// minutes, needs root and the Debian mirror) and reuses it afterwards.
func nodeImage(t *testing.T) string {
	t.Helper()
	requireDocker(t)
	ctx, cancel := context.WithTimeout(t.Context(), imageBuildTimeout)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	ref, err := EnsureImage(ctx, logger)
	if err != nil {
		t.Fatalf("EnsureImage: %v", err)
	}
	return ref
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }

func TestEnsureImageIsCached(t *testing.T) {
	ref := nodeImage(t)
	if ref != ImageTag() {
		t.Fatalf("EnsureImage = %q, want %q", ref, ImageTag())
	}
	start := time.Now()
	again := nodeImage(t)
	if again != ref {
		t.Fatalf("second EnsureImage = %q, want %q", again, ref)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("second EnsureImage took %v; want a cache hit", d)
	}
}
