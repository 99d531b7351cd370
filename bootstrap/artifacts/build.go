package artifacts

import (
	"bufio"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
)

// The wrapper modules' sources. They are .txt so that gofmt and `go vet
// ./...` leave them alone: kubernetes-main.go.txt must stay byte for byte
// the main.go already built on this machine, whose compiled packages the
// Go build cache then reuses.
var (
	//go:embed recipe/kubernetes-main.go.txt
	kubernetesMain []byte
	//go:embed recipe/pause-main.go.txt
	pauseMain []byte
	//go:embed recipe/etcd-main.go.txt
	etcdMain []byte
)

// recipeRevision names the build commands and flags below. Bump it when
// they change: the binaries cached under the old recipe are then rebuilt.
// (A change to an embedded source rebuilds by itself: it is hashed too.)
const recipeRevision = "1"

// buildSource compiles every binary from the Go module proxy with the local
// toolchain: static (CGO_ENABLED=0), -trimpath, stripped. Kubernetes is one
// multi-call binary (like the old hyperkube), in bin/ as "kubernetes" with
// a symlink per command; it dispatches on the name it runs as.
type buildSource struct{ o Options }

func (s *buildSource) key(context.Context) (string, error) {
	return keyOf(SourceBuild, strconv.Itoa(bundleFormat), s.o.Version, s.o.Containerd,
		kubernetesRecipe(), etcdRecipe(), corednsRecipe(), containerdRecipe()), nil
}

// component is one build step, whose output is cached under the build
// directory by name and recipe.
type component struct {
	name    string   // "etcd"
	version string   // "v3.7.0"
	recipe  string   // everything besides name that decides the output
	files   []string // what build leaves in its output directory
	cold    string   // how long the first build takes here, for the log
	build   func(ctx context.Context, g *goTool, out string) error
}

func (s *buildSource) gather(ctx context.Context, bin string) (gathered, error) {
	g, err := newGoTool(ctx, "the build source needs a Go toolchain; use source: release or dir")
	if err != nil {
		return gathered{}, err
	}
	root := filepath.Join(s.o.CacheDir, "kubernetes", "build", s.o.Version+"-linux-amd64")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return gathered{}, err
	}
	removeStale(root, s.o.Logger)
	v := s.o.Version

	kube, err := s.ensure(ctx, g, root, component{
		name: "kubernetes", version: v, recipe: kubernetesRecipe(), files: []string{"kubernetes", "pause"}, cold: "~10 min",
		build: func(ctx context.Context, g *goTool, out string) error { return buildKubernetes(ctx, g, v, out) },
	})
	if err != nil {
		return gathered{}, err
	}
	for _, f := range []string{"kubernetes", "pause"} {
		if err := copyFile(filepath.Join(bin, f), filepath.Join(kube, f), 0o755); err != nil {
			return gathered{}, err
		}
	}
	for _, name := range kubeBinaries {
		if err := os.Symlink("kubernetes", filepath.Join(bin, name)); err != nil {
			return gathered{}, err
		}
	}

	images, err := kubeadmImages(ctx, filepath.Join(bin, "kubeadm"), v, s.o.Logger)
	if err != nil {
		return gathered{}, err
	}
	etcdV, err := etcdModuleVersion(images.Etcd)
	if err != nil {
		return gathered{}, err
	}
	corednsV := images.CoreDNS
	if !versionRE.MatchString(corednsV) {
		return gathered{}, fmt.Errorf("coredns image tag %q is no module version", corednsV)
	}
	containerdV := s.o.Containerd
	steps := []component{{
		name: "etcd", version: etcdV, recipe: etcdRecipe(), files: []string{"etcd"}, cold: "~1 min",
		build: func(ctx context.Context, g *goTool, out string) error { return buildEtcd(ctx, g, etcdV, out) },
	}, {
		name: "coredns", version: corednsV, recipe: corednsRecipe(), files: []string{"coredns"}, cold: "~3 min",
		build: func(ctx context.Context, g *goTool, out string) error { return buildCoreDNS(ctx, g, corednsV, out) },
	}, {
		name: "containerd", version: containerdV, recipe: containerdRecipe(), files: containerdBinaries, cold: "~2 min",
		build: func(ctx context.Context, g *goTool, out string) error {
			return buildContainerd(ctx, g, containerdV, out)
		},
	}}
	for _, c := range steps {
		dir, err := s.ensure(ctx, g, root, c)
		if err != nil {
			return gathered{}, err
		}
		for _, f := range c.files {
			if err := copyFile(filepath.Join(bin, f), filepath.Join(dir, f), 0o755); err != nil {
				return gathered{}, err
			}
		}
	}
	return gathered{images: images, containerd: containerdV}, nil
}

// ensure returns the directory holding c's files, building them first
// unless an intact earlier build is cached. A build goes to a temporary
// directory renamed into place when done.
func (s *buildSource) ensure(ctx context.Context, g *goTool, root string, c component) (string, error) {
	log := s.o.Logger.With("component", c.name, "version", c.version)
	dir := filepath.Join(root, c.name+"-"+c.version+"-"+keyOf(c.recipe))
	if err := checkSums(dir, c.files); err == nil {
		log.Debug("using cached build", "dir", dir)
		return dir, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		log.Warn("cached build is damaged; building again", "dir", dir, "err", err)
	}
	tmp, err := mkdirTemp(root, ".tmp-"+c.name+"-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	log.Info(fmt.Sprintf("building %s %s (first time: %s)", c.name, c.version, c.cold))
	start := time.Now()
	if err := c.build(ctx, g, tmp); err != nil {
		return "", fmt.Errorf("build %s %s: %w", c.name, c.version, err)
	}
	if err := writeSums(tmp, c.files); err != nil {
		return "", err
	}
	if err := replaceDir(tmp, dir); err != nil {
		return "", err
	}
	log.Info(fmt.Sprintf("built %s %s", c.name, c.version), "took", time.Since(start).Round(time.Second))
	return dir, nil
}

// sumsFile lists the sha256 of a cached build's files, to tell an intact
// build from a damaged or half-written one.
const sumsFile = "SHA256SUMS"

func writeSums(dir string, files []string) error {
	var b strings.Builder
	for _, f := range files {
		sum, err := FileSHA256(filepath.Join(dir, f))
		if err != nil {
			return fmt.Errorf("build left no %s: %w", f, err)
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, f)
	}
	return os.WriteFile(filepath.Join(dir, sumsFile), []byte(b.String()), 0o644)
}

func checkSums(dir string, files []string) error {
	f, err := os.Open(filepath.Join(dir, sumsFile))
	if err != nil {
		return err
	}
	defer f.Close()
	want := make(map[string]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if sum, name, ok := strings.Cut(sc.Text(), "  "); ok {
			want[name] = sum
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	for _, name := range files {
		got, err := FileSHA256(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if got != want[name] {
			return fmt.Errorf("%s: sha256 %s, %s says %q", name, got, sumsFile, want[name])
		}
	}
	return nil
}

// zeroCommit stands for the git commit in version ldflags: the module
// proxy does not say which commit a tag is.
const zeroCommit = "0000000000000000000000000000000000000000"

// kubernetesBuildFlags is the recipe's go build flags but -ldflags.
var kubernetesBuildFlags = []string{"-trimpath"}

func kubernetesRecipe() string {
	return strings.Join([]string{recipeRevision, "kubernetes", string(kubernetesMain), string(pauseMain),
		strings.Join(kubernetesBuildFlags, " "), kubernetesVersionFlags("vX.Y.Z", zeroCommit, "DATE")}, "\x00")
}

// buildKubernetes builds the multi-call binary and pause in a wrapper
// module: k8s.io/kubernetes cannot be built with `go install` (its go.mod
// replaces the staging modules with ./staging/... paths).
func buildKubernetes(ctx context.Context, g *goTool, version, out string) error {
	work, err := os.MkdirTemp("", "provision-kubernetes-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	info, k8sMod, err := g.download(ctx, work, "k8s.io/kubernetes@"+version)
	if err != nil {
		return err
	}
	gomod, err := kubernetesWrapperGoMod(k8sMod, version)
	if err != nil {
		return err
	}
	date, err := releaseTime(info)
	if err != nil {
		return err
	}
	if err := writeModule(work, map[string][]byte{"go.mod": gomod, "main.go": kubernetesMain, "pause/main.go": pauseMain}); err != nil {
		return err
	}
	if _, err := g.run(ctx, work, "mod", "tidy"); err != nil {
		return err
	}
	args := append([]string{"build"}, kubernetesBuildFlags...)
	args = append(args, "-ldflags", "-s -w "+kubernetesVersionFlags(version, zeroCommit, date),
		"-o", out+string(filepath.Separator), ".", "./pause")
	_, err = g.run(ctx, work, args...)
	return err
}

// kubernetesWrapperGoMod is the wrapper module's go.mod before `go mod
// tidy`: it requires k8s.io/kubernetes at version and points every staging
// module it replaces with ./staging/src/k8s.io/X at the published
// k8s.io/X v0.MINOR.PATCH, the same code. Other replaces are kept as they
// are; its go version is Kubernetes'.
func kubernetesWrapperGoMod(k8s *modfile.File, version string) ([]byte, error) {
	major, minorPatch, _ := strings.Cut(strings.TrimPrefix(version, "v"), ".")
	if major != "1" || !versionRE.MatchString(version) {
		return nil, fmt.Errorf("kubernetes version %q: want v1.MINOR.PATCH", version)
	}
	staging := "v0." + minorPatch
	var b strings.Builder
	b.WriteString("module provision.local/kubernetes\n\n")
	if k8s.Go != nil {
		fmt.Fprintf(&b, "go %s\n\n", k8s.Go.Version)
	}
	fmt.Fprintf(&b, "require k8s.io/kubernetes %s\n", version)
	if len(k8s.Replace) > 0 {
		b.WriteString("\nreplace (\n")
		for _, r := range k8s.Replace {
			oldPath := r.Old.Path
			if r.Old.Version != "" {
				oldPath += " " + r.Old.Version
			}
			switch {
			case r.New.Version != "":
				fmt.Fprintf(&b, "\t%s => %s %s\n", oldPath, r.New.Path, r.New.Version)
			case r.New.Path == "./staging/src/"+r.Old.Path:
				fmt.Fprintf(&b, "\t%s => %s %s\n", oldPath, r.Old.Path, staging)
			default:
				return nil, fmt.Errorf("k8s.io/kubernetes %s replaces %s with the directory %s, which no wrapper module can reach", version, r.Old.Path, r.New.Path)
			}
		}
		b.WriteString(")\n")
	}
	return []byte(b.String()), nil
}

// kubernetesVersionFlags are the -X flags that give every component its
// version; without them kubeadm says v1.0.0-placeholder-version and asks
// for images of that tag.
func kubernetesVersionFlags(version, commit, date string) string {
	major, rest, _ := strings.Cut(strings.TrimPrefix(version, "v"), ".")
	minor, _, _ := strings.Cut(rest, ".")
	var flags []string
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		for _, kv := range [][2]string{
			{"gitVersion", version}, {"gitMajor", major}, {"gitMinor", minor},
			{"gitTreeState", "clean"}, {"gitCommit", commit}, {"buildDate", date},
		} {
			flags = append(flags, fmt.Sprintf("-X %s.%s=%s", pkg, kv[0], kv[1]))
		}
	}
	return strings.Join(flags, " ")
}

func etcdRecipe() string {
	return strings.Join([]string{recipeRevision, "etcd", string(etcdMain), etcdLDFlags("vX.Y.Z")}, "\x00")
}

// etcdLDFlags: etcd's version is a constant; its git SHA (the only -X its
// own build sets) becomes the module version the proxy served.
func etcdLDFlags(version string) string {
	return "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=" + version
}

// buildEtcd builds etcd's server in a wrapper module:
// go.etcd.io/etcd/server/v3's go.mod has ../ replaces, so `go install`
// fails. The wrapper takes etcd's go version.
func buildEtcd(ctx context.Context, g *goTool, version, out string) error {
	work, err := os.MkdirTemp("", "provision-etcd-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	const server = "go.etcd.io/etcd/server/v3"
	_, mod, err := g.download(ctx, work, server+"@"+version)
	if err != nil {
		return err
	}
	gomod := "module provision.local/etcd\n\n"
	if mod.Go != nil {
		gomod += "go " + mod.Go.Version + "\n\n"
	}
	gomod += "require " + server + " " + version + "\n"
	if err := writeModule(work, map[string][]byte{"go.mod": []byte(gomod), "main.go": etcdMain}); err != nil {
		return err
	}
	if _, err := g.run(ctx, work, "mod", "tidy"); err != nil {
		return err
	}
	_, err = g.run(ctx, work, "build", "-trimpath", "-ldflags", etcdLDFlags(version), "-o", filepath.Join(out, "etcd"), ".")
	return err
}

func corednsRecipe() string {
	return strings.Join([]string{recipeRevision, "coredns", "-s -w"}, "\x00")
}

// buildCoreDNS: CoreDNS's module builds with a plain `go install`.
func buildCoreDNS(ctx context.Context, g *goTool, version, out string) error {
	_, err := g.runEnv(ctx, os.TempDir(), []string{"GOBIN=" + out},
		"install", "-trimpath", "-ldflags", "-s -w", "github.com/coredns/coredns@"+version)
	return err
}

// containerdVersionPkg holds containerd's version variables.
const containerdVersionPkg = "github.com/containerd/containerd/v2/version"

func containerdRecipe() string {
	return strings.Join([]string{recipeRevision, "containerd", containerdLDFlags("vX.Y.Z")}, "\x00")
}

func containerdLDFlags(version string) string {
	return "-s -w -X " + containerdVersionPkg + ".Version=" + version
}

// buildContainerd: containerd's module builds with a plain `go install`.
func buildContainerd(ctx context.Context, g *goTool, version, out string) error {
	args := []string{"install", "-trimpath", "-ldflags", containerdLDFlags(version)}
	for _, cmd := range containerdBinaries {
		args = append(args, "github.com/containerd/containerd/v2/cmd/"+cmd+"@"+version)
	}
	_, err := g.runEnv(ctx, os.TempDir(), []string{"GOBIN=" + out}, args...)
	return err
}

// writeModule writes a wrapper module's files into dir.
func writeModule(dir string, files map[string][]byte) error {
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
