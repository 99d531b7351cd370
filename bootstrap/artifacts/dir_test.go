package artifacts

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

// fakeBin makes a dir source: bin/ with a small script per binary, kubeadm
// answering `config images list`. With multiCall the Kubernetes binaries
// are symlinks to one bin/kubernetes script.
func fakeBin(t *testing.T, multiCall bool) string {
	t.Helper()
	list, err := os.ReadFile(filepath.Join("testdata", "kubeadm-images-v1.37.2.json"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range requiredBinaries {
		body := "#!/bin/sh\necho " + name + "\n"
		if name == "kubeadm" {
			body = fakeKubeadm(string(list))
		}
		if multiCall && slices.Contains(kubeBinaries, name) {
			if err := os.Symlink("kubernetes", filepath.Join(bin, name)); err != nil {
				t.Fatal(err)
			}
			continue
		}
		writeFile(t, bin, name, body, 0o755)
	}
	if multiCall {
		// Dispatches on its name, like the real one: kubeadm lists images.
		writeFile(t, bin, "kubernetes", "#!/bin/sh\ncase $(basename $0) in kubeadm) ;; *) echo $0; exit 0;; esac\n"+
			strings.TrimPrefix(fakeKubeadm(string(list)), "#!/bin/sh\n"), 0o755)
	}
	return dir
}

// recorder is a slog handler keeping messages, to see what Gather did.
type recorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) count(substr string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if strings.Contains(m, substr) {
			n++
		}
	}
	return n
}

func TestGatherDir(t *testing.T) {
	t.Parallel()
	for _, multiCall := range []bool{false, true} {
		t.Run(map[bool]string{false: "binaries", true: "multi-call"}[multiCall], func(t *testing.T) {
			t.Parallel()
			src := fakeBin(t, multiCall)
			rec := &recorder{}
			o := Options{Version: "v1.37.2", Source: SourceDir, Dir: src, CacheDir: t.TempDir(), Logger: slog.New(rec)}
			ctx := context.Background()
			b, err := Gather(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			checkBundle(t, b, multiCall)
			for _, name := range kubeBinaries {
				target, err := os.Readlink(filepath.Join(b.Dir, "bin", name))
				if multiCall && target != "kubernetes" {
					t.Errorf("bin/%s: link %q, %v; want a symlink to kubernetes", name, target, err)
				}
				if !multiCall && err == nil {
					t.Errorf("bin/%s: a symlink, want a file", name)
				}
			}

			// Cached: nothing copied or written again.
			again, err := Gather(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			if n := rec.count("copying"); n != 1 {
				t.Errorf("two Gathers copied %d times, want once", n)
			}
			if again.ID != b.ID {
				t.Errorf("second Gather: ID %s, want %s", again.ID, b.ID)
			}

			// A changed input binary is a new bundle.
			name := "etcd"
			writeFile(t, filepath.Join(src, "bin"), name, "#!/bin/sh\necho new etcd\n", 0o755)
			changed, err := Gather(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			if changed.Dir == b.Dir || changed.ID == b.ID {
				t.Errorf("a changed bin/%s kept bundle %s (%s)", name, changed.Dir, changed.ID)
			}
		})
	}
}

// TestGatherDirFollowsOutsideSymlinks: a symlink leaving bin/ is copied as
// the file it points at (nodes copy bin/ as it is).
func TestGatherDirFollowsOutsideSymlinks(t *testing.T) {
	t.Parallel()
	src := fakeBin(t, false)
	elsewhere := writeFile(t, t.TempDir(), "etcd-3.7.0", "#!/bin/sh\necho real etcd\n", 0o755)
	etcd := filepath.Join(src, "bin", "etcd")
	os.Remove(etcd)
	if err := os.Symlink(elsewhere, etcd); err != nil {
		t.Fatal(err)
	}
	b, err := Gather(context.Background(), Options{Version: "v1.37.2", Source: SourceDir, Dir: src, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(b.Dir, "bin", "etcd"))
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("bin/etcd: %v, %v; want a regular file", fi, err)
	}
	if got, _ := os.ReadFile(filepath.Join(b.Dir, "bin", "etcd")); string(got) != "#!/bin/sh\necho real etcd\n" {
		t.Errorf("bin/etcd = %q", got)
	}
}

func TestGatherDirMissing(t *testing.T) {
	t.Parallel()
	src := fakeBin(t, true)
	for _, name := range []string{"etcd", "ctr", "kubernetes"} {
		os.Remove(filepath.Join(src, "bin", name))
	}
	cache := t.TempDir()
	_, err := Gather(context.Background(), Options{Version: "v1.37.2", Source: SourceDir, Dir: src, CacheDir: cache})
	var missing *MissingBinariesError
	if !errors.As(err, &missing) || !errors.Is(err, ErrMissingBinaries) {
		t.Fatalf("err = %v, want a MissingBinariesError", err)
	}
	t.Log(err)
	if want := []string{"ctr", "etcd", "kubernetes"}; !reflect.DeepEqual(missing.Names, want) {
		t.Errorf("missing %q, want %q in one error", missing.Names, want)
	}
	if names := cachedBundles(t, cache); len(names) != 0 {
		t.Errorf("cache holds %q", names)
	}
}

func TestOptionsValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"no version", Options{}, "Kubernetes version"},
		{"no v", Options{Version: "1.37.2"}, "vMAJOR.MINOR.PATCH"},
		{"no patch", Options{Version: "v1.37"}, "vMAJOR.MINOR.PATCH"},
		{"pre-release", Options{Version: "v1.38.0-beta.0"}, "vMAJOR.MINOR.PATCH"},
		{"unknown source", Options{Version: "v1.37.2", Source: "apt"}, `source "apt"`},
		{"dir without dir", Options{Version: "v1.37.2", Source: SourceDir}, "needs a directory"},
		{"bad containerd", Options{Version: "v1.37.2", Containerd: "2.4.2"}, "containerd version"},
		{"unknown URL key", Options{Version: "v1.37.2", Source: SourceRelease, URLs: map[string]string{"runc": "x"}}, `URLs["runc"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.o.CacheDir = t.TempDir()
			_, err := Gather(context.Background(), tt.o)
			if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrInvalidOptions mentioning %q", err, tt.want)
			}
		})
	}
}

func TestOptionsDefaults(t *testing.T) {
	t.Setenv("PROVISION_CACHE", "/var/cache/p")
	o, err := Options{Version: "v1.37.2", Source: SourceRelease}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.CacheDir != "/var/cache/p" || o.Containerd != DefaultContainerd || o.BaseURL != DefaultBaseURL || o.Logger == nil || o.HTTPClient == nil {
		t.Errorf("defaults: %+v", o)
	}
	t.Setenv("PROVISION_CACHE", "")
	t.Setenv("HOME", "/home/op")
	if o, _ = (Options{Version: "v1.37.2"}).withDefaults(); o.CacheDir != "/home/op/.cache/provision" || o.Source != SourceBuild {
		t.Errorf("without PROVISION_CACHE: cache %q source %q", o.CacheDir, o.Source)
	}
}

// TestGatherBuildNoGo: the build source without a Go toolchain says what
// to do instead.
func TestGatherBuildNoGo(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Gather(context.Background(), Options{Version: "v1.37.2", CacheDir: t.TempDir()})
	if !errors.Is(err, ErrNoToolchain) || !strings.Contains(err.Error(), "use source: release or dir") {
		t.Fatalf("err = %v, want ErrNoToolchain suggesting another source", err)
	}
}
