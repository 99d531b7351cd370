package artifacts

import (
	"context"
	"errors"
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

// fakeGo is a go command for TestGatherBuildFake: it logs every call (dir,
// environment, args) to $FAKEGO_LOG, keeps each wrapper go.mod it is asked
// to tidy in $FAKEGO_LOG.gomod, and leaves small fake binaries where go
// build and go install would.
const fakeGo = `#!/bin/sh
echo "$PWD|CGO_ENABLED=$CGO_ENABLED GOOS=$GOOS GOARCH=$GOARCH GOFLAGS=$GOFLAGS GOBIN=$GOBIN GOWORK=$GOWORK|$*" >> "$FAKEGO_LOG"
case "$1 $2" in
"env GOFLAGS") echo "-buildvcs=false"; exit 0;;
"mod download")
	mod=${4%@*} v=${4#*@}
	case $mod in
	k8s.io/kubernetes) gomod=$FAKEGO_K8SMOD;;
	go.etcd.io/etcd/server/v3) gomod=$FAKEGO_ETCDMOD;;
	*) printf '{"Path":"%s","Error":"no such module"}\n' "$mod"; exit 1;;
	esac
	printf '{"Path":"%s","Version":"%s","GoMod":"%s","Info":"%s"}\n' "$mod" "$v" "$gomod" "$FAKEGO_INFO"
	exit 0;;
"mod tidy") { echo "== $PWD"; cat go.mod; } >> "$FAKEGO_LOG.gomod"; exit 0;;
esac
fake() { printf '#!/bin/sh\necho %s\n' "$2" > "$1" && chmod 755 "$1"; }
case $1 in
build)
	out=
	while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done
	case $out in
	*/) cp "$FAKEGO_KUBERNETES" "${out}kubernetes"; fake "${out}pause" pause;;
	*) fake "$out" "$(basename "$out")";;
	esac;;
install)
	for a in "$@"; do
		case $a in *@*) p=${a%@*}; fake "$GOBIN/$(basename "$p")" "$(basename "$p")";; esac
	done;;
*) echo "fake go: unexpected $*" >&2; exit 2;;
esac
`

// TestGatherBuildFake runs the build source against a fake go command: the
// wrapper modules, flags and environment it asks go for, and the caching of
// each component's build (a damaged one is rebuilt alone).
func TestGatherBuildFake(t *testing.T) {
	list, err := os.ReadFile(filepath.Join("testdata", "kubeadm-images-v1.37.2.json"))
	if err != nil {
		t.Fatal(err)
	}
	tools, work := t.TempDir(), t.TempDir()
	writeFile(t, tools, "go", fakeGo, 0o755)
	k8sMod, err := filepath.Abs(filepath.Join("testdata", "kubernetes-v1.37.2.go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(work, "go.log")
	t.Setenv("PATH", tools+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("FAKEGO_LOG", logFile)
	t.Setenv("FAKEGO_K8SMOD", k8sMod)
	t.Setenv("FAKEGO_ETCDMOD", writeFile(t, work, "etcd.mod", "module go.etcd.io/etcd/server/v3\n\ngo 1.26\n\nreplace go.etcd.io/etcd/api/v3 => ../api\n", 0o644))
	t.Setenv("FAKEGO_INFO", writeFile(t, work, "k8s.info", `{"Version":"v1.37.2","Time":"2026-10-27T12:01:04Z"}`, 0o644))
	t.Setenv("FAKEGO_KUBERNETES", writeFile(t, work, "kubernetes",
		"#!/bin/sh\ncase $(basename $0) in kubeadm) ;; *) echo $0; exit 0;; esac\n"+strings.TrimPrefix(fakeKubeadm(string(list)), "#!/bin/sh\n"), 0o755))
	t.Setenv("GOFLAGS", "")

	calls := func() []string {
		data, _ := os.ReadFile(logFile)
		return strings.Split(strings.TrimSpace(string(data)), "\n")
	}
	builds := func(from int) []string {
		var b []string
		for _, c := range calls()[from:] {
			_, args, _ := strings.Cut(c[strings.Index(c, "|")+1:], "|")
			if strings.HasPrefix(args, "build ") || strings.HasPrefix(args, "install ") {
				b = append(b, args)
			}
		}
		return b
	}

	cache := t.TempDir()
	o := Options{Version: "v1.37.2", CacheDir: cache}
	ctx := context.Background()
	b, err := Gather(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	checkBundle(t, b, true)

	var k8s, etcd, coredns, containerd string
	for _, c := range calls() {
		env, args, _ := strings.Cut(c[strings.Index(c, "|")+1:], "|")
		if args == "env GOFLAGS" {
			continue // asked with the caller's environment, to extend it
		}
		if !strings.Contains(env, "CGO_ENABLED=0 GOOS=linux GOARCH=amd64 GOFLAGS=-buildvcs=false -mod=mod") || !strings.Contains(env, "GOWORK=off") {
			t.Errorf("go %s: environment %s, want static linux/amd64 builds, GOFLAGS=<go env GOFLAGS> -mod=mod, no go.work", args, env)
		}
		switch {
		case strings.HasPrefix(args, "build ") && strings.HasSuffix(args, " . ./pause"):
			k8s = args
		case strings.HasPrefix(args, "build ") && strings.Contains(args, "/etcd ."):
			etcd = args
		case strings.HasPrefix(args, "install ") && strings.Contains(args, "coredns@"):
			coredns = env + "|" + args
		case strings.HasPrefix(args, "install ") && strings.Contains(args, "containerd"):
			containerd = env + "|" + args
		}
	}
	for _, want := range []string{"-trimpath", "-ldflags -s -w -X k8s.io/component-base/version.gitVersion=v1.37.2 ",
		"version.buildDate=2026-10-27T12:01:04Z", "k8s.io/client-go/pkg/version.gitMinor=37"} {
		if !strings.Contains(k8s, want) {
			t.Errorf("kubernetes build %q lacks %q", k8s, want)
		}
	}
	if !strings.Contains(etcd, "-trimpath -ldflags -s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=v3.7.0 -o ") {
		t.Errorf("etcd build: %q", etcd)
	}
	if !strings.Contains(coredns, "GOBIN=/") || !strings.HasSuffix(coredns, "install -trimpath -ldflags -s -w github.com/coredns/coredns@v1.14.6") {
		t.Errorf("coredns install: %q", coredns)
	}
	for _, want := range []string{"-X github.com/containerd/containerd/v2/version.Version=v2.4.2",
		"github.com/containerd/containerd/v2/cmd/containerd@v2.4.2", "cmd/containerd-shim-runc-v2@v2.4.2", "cmd/ctr@v2.4.2"} {
		if !strings.Contains(containerd, want) {
			t.Errorf("containerd install %q lacks %q", containerd, want)
		}
	}
	gomods, err := os.ReadFile(logFile + ".gomod")
	if err != nil {
		t.Fatal(err)
	}
	wrapper, _ := os.ReadFile(filepath.Join("testdata", "wrapper-v1.37.2.go.mod"))
	if !strings.Contains(string(gomods), string(wrapper)) {
		t.Errorf("go mod tidy saw:\n%s\nwant the kubernetes wrapper:\n%s", gomods, wrapper)
	}
	if want := "module provision.local/etcd\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 v3.7.0\n"; !strings.Contains(string(gomods), want) {
		t.Errorf("go mod tidy saw:\n%s\nwant the etcd wrapper:\n%s", gomods, want)
	}

	// Cached bundle: go is not even asked.
	n := len(calls())
	if _, err := Gather(ctx, o); err != nil {
		t.Fatal(err)
	}
	if len(calls()) != n {
		t.Errorf("a cached Gather ran go: %q", calls()[n:])
	}

	// Bundle gone, builds cached: nothing is built again.
	if err := os.RemoveAll(b.Dir); err != nil {
		t.Fatal(err)
	}
	if _, err := Gather(ctx, o); err != nil {
		t.Fatal(err)
	}
	if got := builds(n); len(got) != 0 {
		t.Errorf("with every build cached, Gather built %q", got)
	}

	// A damaged cached build is rebuilt, alone.
	n = len(calls())
	etcdBin, err := filepath.Glob(filepath.Join(cache, "kubernetes", "build", "v1.37.2-linux-amd64", "etcd-v3.7.0-*", "etcd"))
	if err != nil || len(etcdBin) != 1 {
		t.Fatalf("cached etcd build: %q, %v", etcdBin, err)
	}
	if err := os.WriteFile(etcdBin[0], []byte("damaged"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(b.Dir); err != nil {
		t.Fatal(err)
	}
	again, err := Gather(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if got := builds(n); len(got) != 1 || !strings.Contains(got[0], "/etcd .") {
		t.Errorf("after damaging the etcd build, Gather built %q, want etcd alone", got)
	}
	if again.ID != b.ID {
		t.Errorf("rebuilt bundle ID %s, want %s", again.ID, b.ID)
	}
}

// TestGoToolCancel: cancelling a go command kills what it started too.
func TestGoToolCancel(t *testing.T) {
	tools, work := t.TempDir(), t.TempDir()
	pidFile := filepath.Join(work, "child")
	writeFile(t, tools, "go", "#!/bin/sh\n[ \"$1\" = env ] && exit 0\nsleep 60 &\necho $! > "+pidFile+"\nwait\n", 0o755)
	t.Setenv("PATH", tools+string(os.PathListSeparator)+os.Getenv("PATH"))
	ctx, cancel := context.WithCancel(context.Background())
	g, err := newGoTool(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := g.run(ctx, work, "build", "."); done <- err }()
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(pidFile); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("go still running 10s after cancel")
	}
	pid, _ := os.ReadFile(pidFile)
	time.Sleep(100 * time.Millisecond)
	if _, err := os.Stat("/proc/" + strings.TrimSpace(string(pid))); err == nil {
		stat, _ := os.ReadFile("/proc/" + strings.TrimSpace(string(pid)) + "/stat")
		if !strings.Contains(string(stat), ") Z ") {
			t.Errorf("go's child %s still runs after cancel", pid)
		}
	}
}
