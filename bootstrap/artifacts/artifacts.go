// Package artifacts owns the Kubernetes bundle: everything a kubeadm node
// needs beyond its distro packages (the Kubernetes, etcd, CoreDNS, pause and
// containerd binaries, and the control-plane and node images built from
// them), gathered once on the operator's machine, verified, and cached by
// version, so that nodes never reach the internet or a registry.
//
// Gather produces a bundle on local disk; pushing it to nodes and driving
// kubeadm belong to bootstrap/cluster. WriteImages, the image builder the
// bundle uses, is exported for tests and other single-binary images.
//
// The cache, under <CacheDir>/kubernetes/:
//
//	<version>-<source>-<key>/       a bundle (Bundle.Dir); key hashes what decides its content
//	  bin/                          the binaries: files, or symlinks to a file in bin/
//	  images/node.tar               pause, CoreDNS (docker archive)
//	  images/control-plane.tar      kube-apiserver, kube-controller-manager, kube-scheduler, etcd
//	  manifest.json                 what it is and the sha256 of every file; its sha256 is Bundle.ID
//	<version>-<source>-<key>.lock   held while it is gathered
//	build/<version>-linux-amd64/<component>-<version>-<recipe>/
//	                                the build source's binaries with their SHA256SUMS,
//	                                reused by later gathers (a relink instead of a rebuild)
//
// Every entry is written to a temporary directory and renamed into place
// when complete, and checked against its checksums before it is used.
package artifacts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
)

// Sources of a bundle's binaries.
const (
	// SourceBuild compiles everything from the Go module proxy with the
	// local Go toolchain (~15–20 min the first time; then cached).
	SourceBuild = "build"
	// SourceRelease downloads the upstream release binaries and checks
	// them against their published checksums.
	SourceRelease = "release"
	// SourceDir takes the binaries from a local directory.
	SourceDir = "dir"
)

// Defaults of Options.
const (
	DefaultBaseURL    = "https://dl.k8s.io/release"
	DefaultContainerd = "v2.4.2"
)

// Options says which bundle to gather and where from.
type Options struct {
	Version    string            // Kubernetes version, e.g. "v1.37.2" (required, validated: vMAJOR.MINOR.PATCH)
	Source     string            // build (default) | release | dir
	Dir        string            // dir source: a directory laid out like Bundle.Dir (bin/ with the binaries below)
	BaseURL    string            // release source: base of the Kubernetes binaries, default "https://dl.k8s.io/release"
	URLs       map[string]string // release source: optional overrides of the etcd/coredns/containerd archive URLs (keys "etcd", "coredns", "containerd"); tests point them at httptest
	Containerd string            // containerd version, default "v2.4.2" (build and release sources)
	CacheDir   string            // default: $PROVISION_CACHE or ~/.cache/provision; bundles go under <CacheDir>/kubernetes/
	Logger     *slog.Logger      // progress lines ("building kube binaries (first time: ~15 min)") at Info
	HTTPClient *http.Client      // release source; default http.DefaultClient
}

// Bundle is a gathered, verified bundle on local disk.
type Bundle struct {
	Version string
	Dir     string            // absolute path: bin/, images/node.tar, images/control-plane.tar, manifest.json
	ID      string            // 12 hex chars: sha256 of manifest.json; names the bundle on nodes
	Images  map[string]string // component -> image ref: "kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "coredns", "pause"
	// ImageRepository is the kubeadm imageRepository those refs use
	// ("registry.k8s.io").
	ImageRepository string
	// Image tags as kubeadm expects them, e.g. "3.7.0-0", "v1.14.6", "3.10.2".
	EtcdVersion, CoreDNSVersion, PauseVersion string
}

// The binaries in a bundle's bin/, by use.
var (
	// nodeBinaries run on every node.
	nodeBinaries = []string{"kubeadm", "kubelet", "kubectl", "kube-proxy"}
	// controlPlaneBinaries go into the control-plane images.
	controlPlaneBinaries = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"}
	// addonBinaries go into the etcd, CoreDNS and pause images.
	addonBinaries = []string{"etcd", "coredns", "pause"}
	// containerdBinaries run on every node beside the kubelet.
	containerdBinaries = []string{"containerd", "containerd-shim-runc-v2", "ctr"}

	kubeBinaries     = slices.Concat(nodeBinaries, controlPlaneBinaries)
	requiredBinaries = slices.Concat(kubeBinaries, addonBinaries, containerdBinaries)
)

var versionRE = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)

// withDefaults validates o and fills in its defaults.
func (o Options) withDefaults() (Options, error) {
	if !versionRE.MatchString(o.Version) {
		return o, fmt.Errorf("%w: Kubernetes version %q: want vMAJOR.MINOR.PATCH, e.g. v1.37.2", ErrInvalidOptions, o.Version)
	}
	if o.Source == "" {
		o.Source = SourceBuild
	}
	switch o.Source {
	case SourceBuild, SourceRelease:
		if o.Containerd == "" {
			o.Containerd = DefaultContainerd
		}
		if !versionRE.MatchString(o.Containerd) {
			return o, fmt.Errorf("%w: containerd version %q: want vMAJOR.MINOR.PATCH, e.g. %s", ErrInvalidOptions, o.Containerd, DefaultContainerd)
		}
	case SourceDir:
		if o.Dir == "" {
			return o, fmt.Errorf("%w: the dir source needs a directory", ErrInvalidOptions)
		}
		dir, err := filepath.Abs(o.Dir)
		if err != nil {
			return o, fmt.Errorf("%w: dir %q: %v", ErrInvalidOptions, o.Dir, err)
		}
		o.Dir = dir
	default:
		return o, fmt.Errorf("%w: source %q: want %s, %s or %s", ErrInvalidOptions, o.Source, SourceBuild, SourceRelease, SourceDir)
	}
	if o.Source == SourceRelease {
		if o.BaseURL == "" {
			o.BaseURL = DefaultBaseURL
		}
		o.BaseURL = strings.TrimSuffix(o.BaseURL, "/")
		for k := range o.URLs {
			if _, ok := releaseArchives[k]; !ok {
				return o, fmt.Errorf("%w: URLs[%q]: want one of etcd, coredns, containerd", ErrInvalidOptions, k)
			}
		}
		if o.HTTPClient == nil {
			o.HTTPClient = http.DefaultClient
		}
	}
	if o.CacheDir == "" {
		o.CacheDir = os.Getenv("PROVISION_CACHE")
	}
	if o.CacheDir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return o, fmt.Errorf("%w: no cache directory: set PROVISION_CACHE (%v)", ErrInvalidOptions, err)
		}
		o.CacheDir = filepath.Join(home, ".cache", "provision")
	}
	cache, err := filepath.Abs(o.CacheDir)
	if err != nil {
		return o, fmt.Errorf("%w: cache dir %q: %v", ErrInvalidOptions, o.CacheDir, err)
	}
	o.CacheDir = cache
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// source is where a bundle's binaries come from.
type source interface {
	// key names the bundle in the cache: it changes whenever what gather
	// would produce changes (version, recipe, URLs, input files).
	key(ctx context.Context) (string, error)
	// gather writes every binary of requiredBinaries into bin (an empty
	// directory) as a regular file or a symlink to a file in bin, and says
	// which images kubeadm expects.
	gather(ctx context.Context, bin string) (gathered, error)
}

// gathered is what a source found out while gathering.
type gathered struct {
	images     imageList
	containerd string // containerd version, "" when unknown (dir source)
}

func newSource(o Options) (source, error) {
	switch o.Source {
	case SourceBuild:
		return &buildSource{o: o}, nil
	case SourceRelease:
		return &releaseSource{o: o}, nil
	case SourceDir:
		return &dirSource{o: o}, nil
	}
	return nil, fmt.Errorf("%w: source %q", ErrInvalidOptions, o.Source)
}

// Gather returns the bundle o describes, from the cache when a complete
// bundle is there (a second call is instant), else gathering it from
// o.Source. A bundle is written to a temporary directory and renamed into
// place when complete, so a killed gather never leaves one that looks
// complete; a cached bundle whose files no longer match its manifest is
// gathered again. Concurrent gathers of one bundle, in or across
// processes, wait for each other.
func Gather(ctx context.Context, o Options) (*Bundle, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if o.Source == SourceBuild && (runtime.GOOS != "linux" || runtime.GOARCH != "amd64") {
		// It runs the kubeadm it built, and `go install` refuses GOBIN when
		// cross-compiling: say so rather than fail obscurely.
		return nil, fmt.Errorf("%w: the build source runs on linux/amd64 only; use source: release or dir", ErrInvalidOptions)
	}
	src, err := newSource(o)
	if err != nil {
		return nil, err
	}
	key, err := src.key(ctx)
	if err != nil {
		return nil, fmt.Errorf("kubernetes %s bundle (%s source): %w", o.Version, o.Source, err)
	}
	root := filepath.Join(o.CacheDir, "kubernetes")
	dir := filepath.Join(root, fmt.Sprintf("%s-%s-%s", o.Version, o.Source, key))
	log := o.Logger.With("version", o.Version, "source", o.Source)

	b, err := openBundle(ctx, dir, o.Version)
	if err == nil {
		return b, nil
	}
	if !errors.Is(err, errNoBundle) {
		log.Warn("cached kubernetes bundle is damaged; gathering it again", "dir", dir, "err", err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("kubernetes bundle cache: %w", err)
	}
	unlock, err := lockFile(ctx, dir+".lock", log)
	if err != nil {
		return nil, fmt.Errorf("kubernetes %s bundle: %w", o.Version, err)
	}
	defer unlock()
	// Another gather may have finished it while we waited for the lock.
	if b, err := openBundle(ctx, dir, o.Version); err == nil {
		return b, nil
	}
	removeStale(root, log)
	b, err = gatherBundle(ctx, src, o, dir, log)
	if err != nil {
		return nil, fmt.Errorf("kubernetes %s bundle (%s source): %w", o.Version, o.Source, err)
	}
	return b, nil
}
