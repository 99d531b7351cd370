package artifacts

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/modfile"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestKubernetesWrapperGoMod: the wrapper's go.mod from Kubernetes' own
// go.mod (testdata/kubernetes-<v>.go.mod is k8s.io/kubernetes's go.mod from
// the module proxy), compared with testdata/wrapper-<v>.go.mod.
func TestKubernetesWrapperGoMod(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"v1.37.2"} {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			src := filepath.Join("testdata", "kubernetes-"+v+".go.mod")
			data, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			f, err := modfile.Parse(src, data, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := kubernetesWrapperGoMod(f, v)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", "wrapper-"+v+".go.mod"), got)
			// It must be a go.mod the go command accepts.
			if _, err := modfile.Parse("go.mod", got, nil); err != nil {
				t.Fatalf("generated go.mod does not parse: %v", err)
			}
		})
	}
}

func TestKubernetesWrapperGoModErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, gomod, version, want string
	}{
		{"local replace outside staging", "module k8s.io/kubernetes\n\nreplace example.com/x => ../x\n", "v1.37.2", "directory ../x"},
		{"not v1", "module k8s.io/kubernetes\n", "v2.0.0", "want v1.MINOR.PATCH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := modfile.Parse("go.mod", []byte(tt.gomod), nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = kubernetesWrapperGoMod(f, tt.version)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

// TestKubernetesVersionFlags: the -X flags, against the ones the first
// working multi-call build used (testdata/ldflags-v1.37.2).
func TestKubernetesVersionFlags(t *testing.T) {
	t.Parallel()
	want, err := os.ReadFile(filepath.Join("testdata", "ldflags-v1.37.2"))
	if err != nil {
		t.Fatal(err)
	}
	got := kubernetesVersionFlags("v1.37.2", zeroCommit, "2026-12-01T00:00:00Z")
	if got != strings.TrimSpace(string(want)) {
		t.Errorf("flags:\n got %s\nwant %s", got, strings.TrimSpace(string(want)))
	}
}

func TestRecipesChangeKeys(t *testing.T) {
	t.Parallel()
	s := &buildSource{o: Options{Version: "v1.37.2", Containerd: "v2.4.2"}}
	k1, _ := s.key(context.Background())
	s.o.Containerd = "v2.4.3"
	k2, _ := s.key(context.Background())
	s.o.Version = "v1.37.3"
	k3, _ := s.key(context.Background())
	if k1 == k2 || k2 == k3 || len(k1) != 12 {
		t.Errorf("keys %q %q %q: want three distinct 12-char keys", k1, k2, k3)
	}
	recipes := map[string]bool{}
	for _, r := range []string{kubernetesRecipe(), etcdRecipe(), corednsRecipe(), containerdRecipe(), pauseRecipe()} {
		if recipes[keyOf(r)] {
			t.Errorf("two components share a recipe key")
		}
		recipes[keyOf(r)] = true
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs (run with -update to accept):\n got:\n%s\nwant:\n%s", path, got, want)
	}
}

// TestGatherBuild builds a real bundle from the module proxy: ~15–20 min
// the first time on two cores, seconds once the binaries are cached. Set
// PROVISION_K8S_BUILD=1 to run it; it uses the default cache
// ($PROVISION_CACHE or ~/.cache/provision) so the result is reused.
// PROVISION_K8S_VERSION picks another version than v1.37.2.
func TestGatherBuild(t *testing.T) {
	if os.Getenv("PROVISION_K8S_BUILD") == "" {
		t.Skip("builds Kubernetes from source (minutes); set PROVISION_K8S_BUILD=1 to run")
	}
	version := os.Getenv("PROVISION_K8S_VERSION")
	if version == "" {
		version = "v1.37.2"
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx := context.Background()
	start := time.Now()
	b, err := Gather(ctx, Options{Version: version, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gathered %s in %s: %+v", b.Dir, time.Since(start).Round(time.Millisecond), b)
	checkBundle(t, b, true)

	start = time.Now()
	again, err := Gather(ctx, Options{Version: version, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("cached Gather took %s, want under a second", took)
	} else {
		t.Logf("cached Gather took %s", took.Round(time.Millisecond))
	}
	if again.ID != b.ID || again.Dir != b.Dir {
		t.Errorf("second Gather: %s %s, want %s %s", again.Dir, again.ID, b.Dir, b.ID)
	}
}

// testWriter sends a logger's lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
