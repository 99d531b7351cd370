package artifacts

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// fakeRelease serves small fake release files in the layout of dl.k8s.io
// and of the etcd, CoreDNS and containerd GitHub releases.
type fakeRelease struct {
	srv      *httptest.Server
	mu       sync.Mutex
	files    map[string][]byte // URL path -> body
	requests atomic.Int64
	// hold, when set, is called for each request before it is answered.
	hold func(r *http.Request)
	// status forces an answer for a path.
	status map[string]int
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func tarGz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, content := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(content))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	return buf.Bytes()
}

const (
	etcdArchive       = "/etcd/v3.7.0/etcd-v3.7.0-linux-amd64.tar.gz"
	corednsArchive    = "/coredns/coredns_1.14.6_linux_amd64.tgz"
	containerdArchive = "/containerd/containerd-static-2.4.2-linux-amd64.tar.gz"
)

func newFakeRelease(t *testing.T) *fakeRelease {
	t.Helper()
	list, err := os.ReadFile(filepath.Join("testdata", "kubeadm-images-v1.37.2.json"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRelease{files: make(map[string][]byte)}
	for _, name := range kubeBinaries {
		body := []byte("#!/bin/sh\necho " + name + "\n")
		if name == "kubeadm" {
			body = []byte(fakeKubeadm(string(list)))
		}
		p := "/release/v1.37.2/bin/linux/amd64/" + name
		f.files[p] = body
		f.files[p+".sha256"] = []byte(sha256Hex(body)) // dl.k8s.io: the bare hash
	}
	etcd := tarGz(t, map[string]string{
		"etcd-v3.7.0-linux-amd64/etcd":      "#!/bin/sh\necho etcd\n",
		"etcd-v3.7.0-linux-amd64/etcdctl":   "#!/bin/sh\necho etcdctl\n",
		"etcd-v3.7.0-linux-amd64/README.md": "etcd\n",
	})
	f.files[etcdArchive] = etcd
	f.files["/etcd/v3.7.0/SHA256SUMS"] = []byte(sha256Hex([]byte("other")) + "  etcd-v3.7.0-darwin-arm64.zip\n" +
		sha256Hex(etcd) + "  etcd-v3.7.0-linux-amd64.tar.gz\n")
	coredns := tarGz(t, map[string]string{"coredns": "#!/bin/sh\necho coredns\n"})
	f.files[corednsArchive] = coredns
	f.files[corednsArchive+".sha256"] = []byte(sha256Hex(coredns) + "  coredns_1.14.6_linux_amd64.tgz\n")
	containerd := tarGz(t, map[string]string{
		"bin/containerd":              "#!/bin/sh\necho containerd\n",
		"bin/containerd-shim-runc-v2": "#!/bin/sh\necho shim\n",
		"bin/ctr":                     "#!/bin/sh\necho ctr\n",
		"bin/containerd-stress":       "#!/bin/sh\necho stress\n",
	})
	f.files[containerdArchive] = containerd
	f.files[containerdArchive+".sha256sum"] = []byte(sha256Hex(containerd) + "  containerd-static-2.4.2-linux-amd64.tar.gz\n")

	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		f.mu.Lock()
		hold, status := f.hold, f.status[r.URL.Path]
		f.mu.Unlock()
		if hold != nil {
			hold(r)
		}
		f.mu.Lock()
		body, ok := f.files[r.URL.Path]
		f.mu.Unlock()
		if status != 0 {
			http.Error(w, "fake failure", status)
			return
		}
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeRelease) setHold(hold func(r *http.Request)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hold = hold
}

func (f *fakeRelease) set(path string, body []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if body == nil {
		delete(f.files, path)
	} else {
		f.files[path] = body
	}
}

func (f *fakeRelease) options(cache string) Options {
	return Options{
		Version:    "v1.37.2",
		Source:     SourceRelease,
		BaseURL:    f.srv.URL + "/release/",
		URLs:       map[string]string{"etcd": f.srv.URL + etcdArchive, "coredns": f.srv.URL + corednsArchive, "containerd": f.srv.URL + containerdArchive},
		CacheDir:   cache,
		HTTPClient: f.srv.Client(),
		Logger:     slog.New(slog.DiscardHandler),
	}
}

// cachedBundles lists the bundle directories in a cache (not locks or
// temporary directories).
func cachedBundles(t *testing.T, cache string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(cache, "kubernetes"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != "build" {
			names = append(names, e.Name())
		}
	}
	return names
}

func TestGatherRelease(t *testing.T) {
	t.Parallel()
	f := newFakeRelease(t)
	cache := t.TempDir()
	ctx := context.Background()
	b, err := Gather(ctx, f.options(cache))
	if err != nil {
		t.Fatal(err)
	}
	checkBundle(t, b, false)
	if got, _ := os.ReadFile(filepath.Join(b.Dir, "bin", "etcd")); string(got) != "#!/bin/sh\necho etcd\n" {
		t.Errorf("bin/etcd = %q, want the archive's etcd", got)
	}
	if _, err := os.Stat(filepath.Join(b.Dir, "bin", "containerd-stress")); err == nil {
		t.Error("bin/ has containerd-stress, which nodes do not need")
	}
	if b.EtcdVersion != "3.7.0-0" || b.CoreDNSVersion != "v1.14.6" || b.PauseVersion != "3.10.2" {
		t.Errorf("versions %s %s %s", b.EtcdVersion, b.CoreDNSVersion, b.PauseVersion)
	}
	if names := cachedBundles(t, cache); len(names) != 1 || !strings.HasPrefix(names[0], "v1.37.2-release-") {
		t.Errorf("cache holds %q, want one v1.37.2-release-* bundle", names)
	}

	// Cached: no request at all.
	before := f.requests.Load()
	again, err := Gather(ctx, f.options(cache))
	if err != nil {
		t.Fatal(err)
	}
	if n := f.requests.Load() - before; n != 0 {
		t.Errorf("second Gather made %d requests, want 0", n)
	}
	if again.ID != b.ID || again.Dir != b.Dir {
		t.Errorf("second Gather gave %s %s, want %s %s", again.Dir, again.ID, b.Dir, b.ID)
	}

	// A damaged cached file is noticed and the bundle gathered again.
	for _, damaged := range []string{"bin/etcd", "images/node.tar", "manifest.json"} {
		p := filepath.Join(b.Dir, filepath.FromSlash(damaged))
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 0xff // same size, other bytes
		if err := os.WriteFile(p, data, 0o755); err != nil {
			t.Fatal(err)
		}
		before := f.requests.Load()
		fixed, err := Gather(ctx, f.options(cache))
		if err != nil {
			t.Fatalf("after damaging %s: %v", damaged, err)
		}
		if f.requests.Load() == before {
			t.Errorf("after damaging %s, Gather used the damaged bundle", damaged)
		}
		checkBundle(t, fixed, false)
		if fixed.ID != b.ID {
			t.Errorf("regathered bundle has ID %s, want %s (same inputs)", fixed.ID, b.ID)
		}
	}
	// So is a missing one.
	if err := os.Remove(filepath.Join(b.Dir, "bin", "kubectl")); err != nil {
		t.Fatal(err)
	}
	before = f.requests.Load()
	if fixed, err := Gather(ctx, f.options(cache)); err != nil {
		t.Fatal(err)
	} else if f.requests.Load() == before || fixed.ID != b.ID {
		t.Errorf("after removing bin/kubectl: %d requests, ID %s; want a new gather of the same bundle", f.requests.Load()-before, fixed.ID)
	}
	if names := cachedBundles(t, cache); len(names) != 1 {
		t.Errorf("cache holds %q after regathering, want one bundle", names)
	}

	// Another containerd is another bundle.
	o := f.options(cache)
	o.Containerd = "v2.4.3"
	other, err := Gather(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if other.Dir == b.Dir {
		t.Error("another containerd version reused the bundle")
	}
}

func TestGatherReleaseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		break_ func(f *fakeRelease)
		is     error
		want   string
	}{
		{"bad kube checksum", func(f *fakeRelease) {
			f.set("/release/v1.37.2/bin/linux/amd64/kubelet", []byte("#!/bin/sh\necho tampered\n"))
		}, ErrChecksum, "kubelet"},
		{"bad archive checksum", func(f *fakeRelease) {
			f.set(containerdArchive+".sha256sum", []byte(sha256Hex([]byte("x"))+"  containerd-static-2.4.2-linux-amd64.tar.gz\n"))
		}, ErrChecksum, "containerd-static"},
		{"no checksum for the archive", func(f *fakeRelease) {
			f.set("/etcd/v3.7.0/SHA256SUMS", []byte(sha256Hex([]byte("x"))+"  etcd-v3.7.0-darwin-arm64.zip\n"))
		}, nil, "no sha256 for etcd-v3.7.0-linux-amd64.tar.gz"},
		{"missing kube binary", func(f *fakeRelease) {
			f.set("/release/v1.37.2/bin/linux/amd64/kube-proxy", nil)
		}, ErrNotFound, "kube-proxy"},
		{"missing checksum", func(f *fakeRelease) {
			f.set("/release/v1.37.2/bin/linux/amd64/kubeadm.sha256", nil)
		}, ErrNotFound, "kubeadm.sha256"},
		{"missing archive", func(f *fakeRelease) {
			f.set(etcdArchive, nil)
		}, ErrNotFound, etcdArchive},
		{"archive lacks a binary", func(f *fakeRelease) {
			a := tarGz(t, map[string]string{"bin/containerd": "x", "bin/containerd-shim-runc-v2": "x"})
			f.set(containerdArchive, a)
			f.set(containerdArchive+".sha256sum", []byte(sha256Hex(a)+"  containerd-static-2.4.2-linux-amd64.tar.gz\n"))
		}, nil, "archive has no bin/ctr"},
		{"server error", func(f *fakeRelease) {
			f.status = map[string]int{"/release/v1.37.2/bin/linux/amd64/kubectl": http.StatusInternalServerError}
		}, nil, "kubectl: HTTP 500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeRelease(t)
			tt.break_(f)
			cache := t.TempDir()
			_, err := Gather(context.Background(), f.options(cache))
			if err == nil || !strings.Contains(err.Error(), tt.want) || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Fatalf("err = %v, want one mentioning %q (errors.Is %v)", err, tt.want, tt.is)
			}
			t.Log(err)
			if names := cachedBundles(t, cache); len(names) != 0 {
				t.Errorf("a failed gather left %q in the cache", names)
			}
		})
	}
}

// TestGatherReleaseCancel: a gather cancelled halfway leaves nothing that
// looks like a bundle, and the next one completes.
func TestGatherReleaseCancel(t *testing.T) {
	t.Parallel()
	f := newFakeRelease(t)
	ctx, cancel := context.WithCancel(context.Background())
	f.setHold(func(r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/kube-apiserver") {
			cancel()
			<-r.Context().Done()
		}
	})
	cache := t.TempDir()
	if _, err := Gather(ctx, f.options(cache)); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if names := cachedBundles(t, cache); len(names) != 0 {
		t.Errorf("a cancelled gather left %q in the cache", names)
	}
	f.setHold(nil)
	b, err := Gather(context.Background(), f.options(cache))
	if err != nil {
		t.Fatal(err)
	}
	checkBundle(t, b, false)
}

func TestParseChecksum(t *testing.T) {
	t.Parallel()
	h1, h2 := sha256Hex([]byte("1")), sha256Hex([]byte("2"))
	tests := []struct {
		name, data, file, want string
	}{
		{"bare", h1 + "\n", "", h1},
		{"bare, named file asked", h1, "a.tgz", h1},
		{"sha256sum", h1 + "  a.tgz\n" + h2 + "  b.tgz\n", "b.tgz", h2},
		{"binary mode", h2 + " *b.tgz\n", "b.tgz", h2},
		{"upper case", strings.ToUpper(h1) + "  a.tgz\n", "a.tgz", h1},
		{"absent", h1 + "  a.tgz\n" + h2 + "  c.tgz\n", "b.tgz", ""},
		{"not a hash", "deadbeef  b.tgz\n", "b.tgz", ""},
	}
	for _, tt := range tests {
		got, err := parseChecksum(tt.data, tt.file)
		if got != tt.want || (err != nil) != (tt.want == "") {
			t.Errorf("%s: got %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}
