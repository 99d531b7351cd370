package artifacts

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sync/errgroup"
)

// releaseSource downloads the upstream release binaries, each checked
// against the checksum its project publishes beside it. Only pause is
// compiled (upstream ships it in an image only), with the local toolchain.
type releaseSource struct{ o Options }

// releaseDownloads is how many files the release source fetches at once:
// enough to hide per-request latency, few enough to be polite to the
// release sites and not to split a slow link too thin.
const releaseDownloads = 4

// maxChecksumFile bounds a checksum file read into memory.
const maxChecksumFile = 1 << 20

// releaseArchive is one project's release archive, by Options.URLs key.
type releaseArchive struct {
	url     func(version string) string // default archive URL
	sumsURL func(archive string) string // its published checksum file
	// members maps a binary's name in bin/ to its path in the archive
	// (after any top-level directory).
	members map[string]string
}

var releaseArchives = map[string]releaseArchive{
	"etcd": {
		url: func(v string) string {
			return "https://github.com/etcd-io/etcd/releases/download/" + v + "/etcd-" + v + "-linux-amd64.tar.gz"
		},
		sumsURL: func(a string) string { return dirURL(a) + "SHA256SUMS" },
		members: map[string]string{"etcd": "etcd"},
	},
	"coredns": {
		url: func(v string) string {
			return "https://github.com/coredns/coredns/releases/download/" + v + "/coredns_" + strings.TrimPrefix(v, "v") + "_linux_amd64.tgz"
		},
		sumsURL: func(a string) string { return a + ".sha256" },
		members: map[string]string{"coredns": "coredns"},
	},
	"containerd": {
		url: func(v string) string {
			return "https://github.com/containerd/containerd/releases/download/" + v + "/containerd-static-" + strings.TrimPrefix(v, "v") + "-linux-amd64.tar.gz"
		},
		sumsURL: func(a string) string { return a + ".sha256sum" },
		members: map[string]string{"containerd": "bin/containerd", "containerd-shim-runc-v2": "bin/containerd-shim-runc-v2", "ctr": "bin/ctr"},
	},
}

func (s *releaseSource) key(context.Context) (string, error) {
	parts := []string{SourceRelease, strconv.Itoa(bundleFormat), s.o.Version, s.o.BaseURL, s.o.Containerd, pauseRecipe()}
	for _, k := range slices.Sorted(maps.Keys(s.o.URLs)) {
		parts = append(parts, k+"="+s.o.URLs[k])
	}
	return keyOf(parts...), nil
}

func (s *releaseSource) gather(ctx context.Context, bin string) (gathered, error) {
	g, err := newGoTool(ctx, "the release source compiles pause with the local Go toolchain; install Go or use source: dir")
	if err != nil {
		return gathered{}, err
	}
	log := s.o.Logger
	// kubeadm first: it says which etcd, CoreDNS and pause go with it.
	log.Info("downloading kubernetes release binaries (~400 MB)", "from", s.o.BaseURL)
	if err := s.fetchKube(ctx, bin, "kubeadm"); err != nil {
		return gathered{}, err
	}
	images, err := kubeadmImages(ctx, filepath.Join(bin, "kubeadm"), s.o.Version, log)
	if err != nil {
		return gathered{}, err
	}
	etcdV, err := etcdModuleVersion(images.Etcd)
	if err != nil {
		return gathered{}, err
	}
	scratch, err := os.MkdirTemp("", "provision-release-")
	if err != nil {
		return gathered{}, err
	}
	defer os.RemoveAll(scratch)

	eg, ctx := errgroup.WithContext(ctx)
	eg.SetLimit(releaseDownloads)
	for _, name := range kubeBinaries {
		if name != "kubeadm" {
			eg.Go(func() error { return s.fetchKube(ctx, bin, name) })
		}
	}
	for key, version := range map[string]string{"etcd": etcdV, "coredns": images.CoreDNS, "containerd": s.o.Containerd} {
		eg.Go(func() error { return s.fetchArchive(ctx, scratch, bin, key, version) })
	}
	eg.Go(func() error { return buildPause(ctx, g, bin) })
	if err := eg.Wait(); err != nil {
		return gathered{}, err
	}
	return gathered{images: images, containerd: s.o.Containerd}, nil
}

// fetchKube downloads one Kubernetes binary and checks it against the
// .sha256 file dl.k8s.io publishes beside it.
func (s *releaseSource) fetchKube(ctx context.Context, bin, name string) error {
	u := s.o.BaseURL + "/" + s.o.Version + "/bin/linux/amd64/" + name
	want, err := s.checksum(ctx, u+".sha256", "")
	if err != nil {
		return err
	}
	got, err := s.download(ctx, u, filepath.Join(bin, name))
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("%w: %s: sha256 %s, published %s", ErrChecksum, u, got, want)
	}
	return nil
}

// fetchArchive downloads a project's release archive into scratch, checks
// it against the project's checksum file and extracts its binaries to bin.
func (s *releaseSource) fetchArchive(ctx context.Context, scratch, bin, key, version string) error {
	a := releaseArchives[key]
	u := a.url(version)
	if o, ok := s.o.URLs[key]; ok {
		u = o
	}
	want, err := s.checksum(ctx, a.sumsURL(u), path.Base(urlPath(u)))
	if err != nil {
		return err
	}
	file := filepath.Join(scratch, key+".tar.gz")
	got, err := s.download(ctx, u, file)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("%w: %s: sha256 %s, published %s", ErrChecksum, u, got, want)
	}
	if err := extract(file, bin, a.members); err != nil {
		return fmt.Errorf("%s %s (%s): %w", key, version, u, err)
	}
	return nil
}

// download writes url's body to dst (mode 0755) and returns its sha256.
func (s *releaseSource) download(ctx context.Context, u, dst string) (string, error) {
	body, err := s.get(ctx, u)
	if err != nil {
		return "", err
	}
	defer body.Close()
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), body); err != nil {
		f.Close()
		return "", fmt.Errorf("download %s: %w", u, err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// checksum fetches a checksum file and returns the sha256 it gives for
// name: a line "<hex>  <name>" (or "<hex> *<name>"), or, with name "" or
// in a file of one bare hash, that hash.
func (s *releaseSource) checksum(ctx context.Context, u, name string) (string, error) {
	body, err := s.get(ctx, u)
	if err != nil {
		return "", err
	}
	defer body.Close()
	data, err := io.ReadAll(io.LimitReader(body, maxChecksumFile))
	if err != nil {
		return "", fmt.Errorf("download %s: %w", u, err)
	}
	sum, err := parseChecksum(string(data), name)
	if err != nil {
		return "", fmt.Errorf("%s: %w", u, err)
	}
	return sum, nil
}

func parseChecksum(data, name string) (string, error) {
	lines := strings.FieldsFunc(data, func(r rune) bool { return r == '\n' || r == '\r' })
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) == 0 || !isSHA256(f[0]) {
			continue
		}
		if len(f) == 1 && (name == "" || len(lines) == 1) {
			return strings.ToLower(f[0]), nil
		}
		if len(f) == 2 && (name == "" || strings.TrimPrefix(f[1], "*") == name) {
			return strings.ToLower(f[0]), nil
		}
	}
	if name == "" {
		return "", errors.New("no sha256 in the checksum file")
	}
	return "", fmt.Errorf("no sha256 for %s in the checksum file", name)
}

func isSHA256(s string) bool {
	_, err := hex.DecodeString(s)
	return len(s) == 64 && err == nil
}

// get GETs u and returns the body of a 200 answer.
func (s *releaseSource) get(ctx context.Context, u string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", u, err)
	}
	resp, err := s.o.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("download: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return resp.Body, nil
	case http.StatusNotFound:
		resp.Body.Close()
		return nil, fmt.Errorf("download %s: %w (HTTP 404)", u, ErrNotFound)
	}
	resp.Body.Close()
	return nil, fmt.Errorf("download %s: HTTP %s", u, resp.Status)
}

// extract writes the archive members named in members (bin name -> path
// in the archive, below any single top-level directory) into bin.
func extract(archive, bin string, members map[string]string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("read archive: %w", err)
	}
	byPath := make(map[string]string, len(members))
	for name, p := range members {
		byPath[p] = name
	}
	found := make(map[string]bool)
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		p := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		name, ok := byPath[p]
		if !ok {
			// Below one top-level directory, as in etcd-v3.7.0-linux-amd64/etcd.
			if _, rest, cut := strings.Cut(p, "/"); cut {
				name, ok = byPath[rest]
			}
		}
		if !ok || found[name] {
			continue
		}
		out, err := os.OpenFile(filepath.Join(bin, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, tr); err != nil {
			out.Close()
			return fmt.Errorf("extract %s: %w", hdr.Name, err)
		}
		if err := out.Close(); err != nil {
			return err
		}
		found[name] = true
	}
	var missing []string
	for name, p := range members {
		if !found[name] {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("archive has no %s", strings.Join(missing, ", "))
	}
	return nil
}

func urlPath(u string) string {
	if pu, err := url.Parse(u); err == nil {
		return pu.Path
	}
	return u
}

// dirURL is u up to and including its last slash.
func dirURL(u string) string { return u[:strings.LastIndexByte(u, '/')+1] }

func pauseRecipe() string {
	return strings.Join([]string{recipeRevision, "pause", string(pauseMain)}, "\x00")
}

// buildPause compiles the Go pause (standard library only, so no download)
// into bin.
func buildPause(ctx context.Context, g *goTool, bin string) error {
	work, err := os.MkdirTemp("", "provision-pause-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	gomod := []byte("module provision.local/pause\n\ngo 1.22\n")
	if err := writeModule(work, map[string][]byte{"go.mod": gomod, "main.go": pauseMain}); err != nil {
		return err
	}
	if _, err := g.run(ctx, work, "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(bin, "pause"), "."); err != nil {
		return fmt.Errorf("build pause: %w", err)
	}
	return nil
}
