package artifacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// bundleFormat is the version of a bundle's layout and manifest. Bump it
// when Gather would write something else for the same inputs (image
// layout, manifest fields): cached bundles of the old format are then
// gathered again instead of being trusted.
const bundleFormat = 1

// Paths inside a bundle.
const (
	manifestFile       = "manifest.json"
	binDir             = "bin"
	nodeImages         = "images/node.tar"
	controlPlaneImages = "images/control-plane.tar"
)

// imagePATH is the PATH of every image: kubeadm's static pod manifests run
// `kube-apiserver ...`, `etcd ...` by name.
const imagePATH = "PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// manifest is a bundle's manifest.json: what the bundle is, and the sha256
// of every file in it, so that a cached bundle can be checked complete and
// intact before it is used. Its sha256 is the bundle's ID.
type manifest struct {
	Format            int               `json:"format"`
	Version           string            `json:"version"`
	Source            string            `json:"source"`
	Platform          string            `json:"platform"`
	ImageRepository   string            `json:"imageRepository"`
	Images            map[string]string `json:"images"`
	EtcdVersion       string            `json:"etcdVersion"`
	CoreDNSVersion    string            `json:"coreDNSVersion"`
	PauseVersion      string            `json:"pauseVersion"`
	ContainerdVersion string            `json:"containerdVersion,omitempty"`
	// Files maps each regular file's slash path in the bundle to its
	// sha256 (hex); Symlinks each symlink's path to its target.
	Files    map[string]string `json:"files"`
	Symlinks map[string]string `json:"symlinks,omitempty"`
}

// gatherBundle gathers into a temporary directory beside dir and renames it
// to dir once complete. Files are not fsynced: openBundle checks every one
// against the manifest, so a bundle a power loss left incomplete behind a
// completed rename is caught and gathered again.
func gatherBundle(ctx context.Context, src source, o Options, dir string, log *slog.Logger) (*Bundle, error) {
	start := time.Now()
	log.Info("gathering kubernetes bundle", "dir", dir)
	tmp, err := mkdirTemp(filepath.Dir(dir), ".tmp-"+filepath.Base(dir)+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp) // gone already after a successful rename
	bin := filepath.Join(tmp, binDir)
	if err := os.Mkdir(bin, 0o755); err != nil {
		return nil, err
	}
	g, err := src.gather(ctx, bin)
	if err != nil {
		return nil, err
	}
	if err := checkBin(bin); err != nil {
		return nil, err
	}
	log.Info("writing kubernetes images", "etcd", g.images.Etcd, "coredns", g.images.CoreDNS, "pause", g.images.Pause)
	if err := writeBundleImages(tmp, g.images); err != nil {
		return nil, err
	}
	m := manifest{
		Format:            bundleFormat,
		Version:           o.Version,
		Source:            o.Source,
		Platform:          "linux/amd64",
		ImageRepository:   g.images.Repository,
		Images:            g.images.Refs,
		EtcdVersion:       g.images.Etcd,
		CoreDNSVersion:    g.images.CoreDNS,
		PauseVersion:      g.images.Pause,
		ContainerdVersion: g.containerd,
	}
	if m.Files, m.Symlinks, err = hashTree(ctx, tmp); err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	data = append(data, '\n')
	if err := os.WriteFile(filepath.Join(tmp, manifestFile), data, 0o644); err != nil {
		return nil, err
	}
	if err := replaceDir(tmp, dir); err != nil {
		return nil, err
	}
	b := bundleOf(dir, m, data)
	log.Info("kubernetes bundle ready", "dir", dir, "id", b.ID, "took", time.Since(start).Round(time.Second))
	return b, nil
}

func bundleOf(dir string, m manifest, data []byte) *Bundle {
	sum := sha256.Sum256(data)
	return &Bundle{
		Version:         m.Version,
		Dir:             dir,
		ID:              hex.EncodeToString(sum[:])[:12],
		Images:          m.Images,
		ImageRepository: m.ImageRepository,
		EtcdVersion:     m.EtcdVersion,
		CoreDNSVersion:  m.CoreDNSVersion,
		PauseVersion:    m.PauseVersion,
	}
}

// errNoBundle: there is no bundle to open (as opposed to a damaged one).
var errNoBundle = errors.New("no bundle")

// openBundle returns the bundle of Kubernetes version in dir after checking
// every file against its manifest. errNoBundle means there is none.
func openBundle(ctx context.Context, dir, version string) (*Bundle, error) {
	data, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", errNoBundle, dir)
	}
	if err != nil {
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", manifestFile, err)
	}
	if m.Format != bundleFormat {
		return nil, fmt.Errorf("%s: format %d, want %d", manifestFile, m.Format, bundleFormat)
	}
	if m.Version != version {
		return nil, fmt.Errorf("%s: Kubernetes %s, want %s", manifestFile, m.Version, version)
	}
	var missing []string
	for _, want := range append(binPaths(requiredBinaries), nodeImages, controlPlaneImages) {
		if _, ok := m.Files[want]; !ok {
			if _, ok := m.Symlinks[want]; !ok {
				missing = append(missing, want)
			}
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s lists no %s", manifestFile, strings.Join(missing, ", "))
	}
	for p, target := range m.Symlinks {
		got, err := os.Readlink(filepath.Join(dir, filepath.FromSlash(p)))
		if err != nil {
			return nil, err
		}
		if got != target {
			return nil, fmt.Errorf("%s: links to %q, manifest says %q", p, got, target)
		}
	}
	g := hashGroup(ctx)
	for p, want := range m.Files {
		g.Go(func() error {
			got, err := FileSHA256(filepath.Join(dir, filepath.FromSlash(p)))
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("%s: sha256 %s, manifest says %s", p, got, want)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return bundleOf(dir, m, data), nil
}

func binPaths(names []string) []string {
	paths := make([]string, len(names))
	for i, n := range names {
		paths[i] = path.Join(binDir, n)
	}
	return paths
}

// checkBin makes sure a source left every required binary in bin, as a
// regular file or a symlink to one in bin (nodes copy bin/ as it is).
func checkBin(bin string) error {
	var missing []string
	for _, name := range requiredBinaries {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return &MissingBinariesError{Dir: bin, Names: missing}
	}
	entries, err := os.ReadDir(bin)
	if err != nil {
		return err
	}
	for _, e := range entries {
		switch {
		case e.Type().IsRegular():
		case e.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(filepath.Join(bin, e.Name()))
			if err != nil {
				return err
			}
			if !localName(target) {
				return fmt.Errorf("bin/%s: symlink to %q, want a file in bin/", e.Name(), target)
			}
		default:
			return fmt.Errorf("bin/%s: not a file", e.Name())
		}
	}
	return nil
}

// localName reports whether a symlink target names a file in the link's
// own directory.
func localName(target string) bool {
	return target != "" && target != "." && target != ".." && !strings.ContainsRune(target, '/')
}

// writeBundleImages writes images/node.tar (pause, CoreDNS) and
// images/control-plane.tar (kube-apiserver, kube-controller-manager,
// kube-scheduler, etcd) from the binaries in dir/bin.
func writeBundleImages(dir string, l imageList) error {
	bin := filepath.Join(dir, binDir)
	env := []string{imagePATH}
	inPath := func(component string) Image {
		return Image{
			Ref:   l.Refs[component],
			Files: map[string]string{"/usr/local/bin/" + component: filepath.Join(bin, component)},
			Cmd:   []string{component},
			Env:   env,
		}
	}
	cp := []Image{inPath("kube-apiserver"), inPath("kube-controller-manager"), inPath("kube-scheduler"), inPath("etcd")}
	if target, ok := multiCallTarget(bin); ok {
		// One identical layer for the three: containerd stores and nodes
		// unpack the multi-call binary once.
		files := map[string]string{"/usr/local/bin/" + target: filepath.Join(bin, target)}
		links := make(map[string]string)
		for _, c := range controlPlaneBinaries {
			links["/usr/local/bin/"+c] = target
		}
		for i := range controlPlaneBinaries {
			cp[i].Files, cp[i].Symlinks = files, links
		}
	}
	node := []Image{
		// kubeadm's CoreDNS Deployment passes only args; kubelet and
		// containerd run pause with no command at all.
		{Ref: l.Refs["pause"], Files: map[string]string{"/pause": filepath.Join(bin, "pause")}, Entrypoint: []string{"/pause"}, Env: env},
		{Ref: l.Refs["coredns"], Files: map[string]string{"/coredns": filepath.Join(bin, "coredns")}, Entrypoint: []string{"/coredns"}, Env: env},
	}
	if err := os.MkdirAll(filepath.Join(dir, "images"), 0o755); err != nil {
		return err
	}
	if err := WriteImages(filepath.Join(dir, filepath.FromSlash(nodeImages)), node...); err != nil {
		return err
	}
	return WriteImages(filepath.Join(dir, filepath.FromSlash(controlPlaneImages)), cp...)
}

// multiCallTarget returns the file the control-plane binaries in bin all
// link to, when they do: one multi-call binary.
func multiCallTarget(bin string) (string, bool) {
	var target string
	for _, c := range controlPlaneBinaries {
		t, err := os.Readlink(filepath.Join(bin, c))
		if err != nil || !localName(t) || (target != "" && t != target) {
			return "", false
		}
		target = t
	}
	return target, true
}

// hashTree returns the sha256 of every regular file under root (keyed by
// slash path) and the target of every symlink.
func hashTree(ctx context.Context, root string) (files, links map[string]string, err error) {
	files, links = make(map[string]string), make(map[string]string)
	var mu sync.Mutex
	g := hashGroup(ctx)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			links[rel] = t
		case d.Type().IsRegular():
			g.Go(func() error {
				sum, err := FileSHA256(p)
				mu.Lock()
				files[rel] = sum
				mu.Unlock()
				return err
			})
		default:
			return fmt.Errorf("%s: not a file", rel)
		}
		return nil
	})
	if werr := g.Wait(); err == nil {
		err = werr
	}
	if err != nil {
		return nil, nil, err
	}
	if len(links) == 0 {
		links = nil
	}
	return files, links, nil
}

// hashGroup runs file hashes in parallel, one per CPU: checking a cached
// bundle (~0.5 GB) is what makes a second Gather take a second or less.
func hashGroup(ctx context.Context) *errgroup.Group {
	g, _ := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	return g
}

// FileSHA256 is the hex sha256 of the file at p: how bundles and image
// archives are known, here and on nodes.
func FileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// replaceDir renames the complete directory tmp to dir, first moving aside
// a damaged dir left from an earlier gather.
func replaceDir(tmp, dir string) error {
	err := os.Rename(tmp, dir)
	if err == nil {
		return nil
	}
	if _, serr := os.Lstat(dir); serr != nil {
		return err
	}
	old, err := os.MkdirTemp(filepath.Dir(dir), ".old-"+filepath.Base(dir)+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(old)
	if err := os.Rename(dir, filepath.Join(old, "d")); err != nil {
		return fmt.Errorf("move damaged %s aside: %w", dir, err)
	}
	return os.Rename(tmp, dir)
}

// mkdirTemp is os.MkdirTemp for a directory that becomes a cache entry:
// readable by all like the rest of the cache, not 0700.
func mkdirTemp(dir, pattern string) (string, error) {
	tmp, err := os.MkdirTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	return tmp, nil
}

// staleAge is when a temporary directory left in the cache is surely a
// killed gather's, not a running one's (a cold build takes ~20 min).
const staleAge = 24 * time.Hour

// removeStale deletes temporary directories killed gathers left in dir.
func removeStale(dir string, log *slog.Logger) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".tmp-") && !strings.HasPrefix(e.Name(), ".old-") {
			continue
		}
		fi, err := e.Info()
		if err != nil || time.Since(fi.ModTime()) < staleAge {
			continue
		}
		log.Debug("removing a killed gather's leftovers", "dir", filepath.Join(dir, e.Name()))
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// keyOf hashes the parts that decide a cached item's content into a short
// name for it.
func keyOf(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// copyFile copies src (following symlinks) to dst with mode.
func copyFile(dst, src string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

// tail returns the last lines of a command's output for an error message.
func tail(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 20 {
		lines = slices.Concat([]string{"..."}, lines[len(lines)-20:])
	}
	return strings.Join(lines, "\n")
}
