package artifacts

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// tarEntry is a file in a layer as the test reads it back.
type tarEntry struct {
	typ    byte
	mode   int64
	link   string
	sha256 string
	data   []byte // small files only
}

// readLayer lists a layer's entries by path (without the leading slash).
func readLayer(t *testing.T, l v1.Layer) map[string]tarEntry {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	entries := make(map[string]tarEntry)
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		e := tarEntry{typ: hdr.Typeflag, mode: hdr.Mode, link: hdr.Linkname}
		if hdr.Typeflag == tar.TypeReg {
			h := sha256.New()
			var small []byte
			if hdr.Size <= 1<<16 {
				small, _ = io.ReadAll(io.TeeReader(tr, h))
			} else if _, err := io.Copy(h, tr); err != nil {
				t.Fatal(err)
			}
			e.sha256, e.data = hex.EncodeToString(h.Sum(nil)), small
		}
		entries[strings.TrimSuffix(hdr.Name, "/")] = e
	}
	return entries
}

// archiveImage reads one image of a docker archive with
// go-containerregistry's reader.
func archiveImage(t *testing.T, path, ref string) (v1.Image, *v1.ConfigFile) {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(path, &tag)
	if err != nil {
		t.Fatalf("%s in %s: %v", ref, path, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("%s: platform %s/%s, want linux/amd64", ref, cf.OS, cf.Architecture)
	}
	return img, cf
}

func onlyLayer(t *testing.T, img v1.Image) v1.Layer {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	return layers[0]
}

// archiveEntries lists the names of a docker archive's entries.
func archiveEntries(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
	}
}

func countSuffix(names []string, suffix string) int {
	n := 0
	for _, s := range names {
		if strings.HasSuffix(s, suffix) {
			n++
		}
	}
	return n
}

// checkBundle checks a gathered bundle the way a node would use it.
func checkBundle(t *testing.T, b *Bundle, multiCall bool) {
	t.Helper()
	if !filepath.IsAbs(b.Dir) {
		t.Errorf("Dir %q is not absolute", b.Dir)
	}
	if _, err := hex.DecodeString(b.ID); err != nil || len(b.ID) != 12 {
		t.Errorf("ID %q: want 12 hex chars", b.ID)
	}
	if b.ImageRepository != "registry.k8s.io" {
		t.Errorf("ImageRepository %q", b.ImageRepository)
	}
	want := map[string]string{
		"kube-apiserver":          "registry.k8s.io/kube-apiserver:" + b.Version,
		"kube-controller-manager": "registry.k8s.io/kube-controller-manager:" + b.Version,
		"kube-scheduler":          "registry.k8s.io/kube-scheduler:" + b.Version,
		"etcd":                    "registry.k8s.io/etcd:" + b.EtcdVersion,
		"coredns":                 "registry.k8s.io/coredns/coredns:" + b.CoreDNSVersion,
		"pause":                   "registry.k8s.io/pause:" + b.PauseVersion,
	}
	if len(b.Images) != len(want) {
		t.Errorf("Images = %v, want %v", b.Images, want)
	}
	for c, ref := range want {
		if b.Images[c] != ref {
			t.Errorf("Images[%s] = %q, want %q", c, b.Images[c], ref)
		}
	}
	bin := filepath.Join(b.Dir, "bin")
	for _, n := range requiredBinaries {
		fi, err := os.Stat(filepath.Join(bin, n))
		if err != nil {
			t.Errorf("bin/%s: %v", n, err)
		} else if fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("bin/%s: mode %v, not executable", n, fi.Mode())
		}
	}
	sum := func(p string) string {
		s, err := FileSHA256(p)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	node := filepath.Join(b.Dir, "images", "node.tar")
	for _, c := range []string{"pause", "coredns"} {
		img, cf := archiveImage(t, node, b.Images[c])
		if !slices.Equal(cf.Config.Entrypoint, []string{"/" + c}) {
			t.Errorf("%s: entrypoint %q, want [/%s]", c, cf.Config.Entrypoint, c)
		}
		files := readLayer(t, onlyLayer(t, img))
		if e := files[c]; e.typ != tar.TypeReg || e.sha256 != sum(filepath.Join(bin, c)) || e.mode&0o111 == 0 {
			t.Errorf("%s: /%s in the layer is %+v, want bin/%s, executable", c, c, e, c)
		}
	}

	cp := filepath.Join(b.Dir, "images", "control-plane.tar")
	digests := map[v1.Hash]bool{}
	for _, c := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"} {
		img, cf := archiveImage(t, cp, b.Images[c])
		if !slices.Contains(cf.Config.Env, imagePATH) {
			t.Errorf("%s: env %q lacks %s", c, cf.Config.Env, imagePATH)
		}
		l := onlyLayer(t, img)
		d, _ := l.Digest()
		digests[d] = true
		files := readLayer(t, l)
		e := files["usr/local/bin/"+c]
		if e.typ == tar.TypeSymlink {
			e = files["usr/local/bin/"+e.link]
		}
		if e.typ != tar.TypeReg || e.sha256 != sum(filepath.Join(bin, c)) || e.mode&0o111 == 0 {
			t.Errorf("%s: /usr/local/bin/%s in the layer is %+v, want bin/%s, executable", c, c, e, c)
		}
	}
	layers := countSuffix(archiveEntries(t, cp), ".tar.gz")
	if wantLayers := 4; multiCall {
		wantLayers = 2
		if len(digests) != 2 || layers != 2 {
			t.Errorf("multi-call control plane: %d distinct layers, %d in the archive; want 2 (one shared by the three)", len(digests), layers)
		}
	} else if layers != wantLayers {
		t.Errorf("control-plane.tar holds %d layers, want %d", layers, wantLayers)
	}
}
