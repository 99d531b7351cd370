package artifacts

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Image is a single-layer image built from local files.
type Image struct {
	Ref      string            // e.g. "provision.local/hello:1"
	Files    map[string]string // path in the image (e.g. "/usr/local/bin/hello") -> local file path
	Symlinks map[string]string // path in image -> link target

	Entrypoint, Cmd, Env []string
}

// epoch is every timestamp in an image (layer entries, config): the images
// are then a function of their files alone, so a rebuild gives the same
// digests and containerd keeps the layer it already has.
var epoch = time.Unix(0, 0).UTC()

// WriteImages writes images into one docker-archive tarball at path, importable with
// `ctr -n k8s.io images import` and `docker load`. Identical layers are stored once.
//
// Two images whose Files and Symlinks are equal get the same layer; the
// archive holds it once and containerd stores it once. The images are
// linux/amd64 (the platform of every binary this package gathers): `ctr
// images import` skips images of another platform. The archive's bytes
// depend only on the images, not on their order or on when it was written.
// path is replaced atomically.
func WriteImages(path string, images ...Image) error {
	if len(images) == 0 {
		return fmt.Errorf("write images to %s: no images", path)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".layers-")
	if err != nil {
		return fmt.Errorf("write images to %s: %w", path, err)
	}
	defer os.RemoveAll(tmp)

	refs := make(map[name.Reference]v1.Image, len(images))
	seen := make(map[string]bool, len(images))
	layers := make(map[string]v1.Layer) // by layerKey: equal file sets share one layer
	for _, im := range images {
		tag, err := name.NewTag(im.Ref)
		if err != nil {
			return fmt.Errorf("image %q: %w", im.Ref, err)
		}
		if seen[tag.String()] {
			return fmt.Errorf("image %q: given twice", im.Ref)
		}
		seen[tag.String()] = true
		entries, err := layerEntries(im)
		if err != nil {
			return fmt.Errorf("image %s: %w", im.Ref, err)
		}
		key := layerKey(entries)
		layer, ok := layers[key]
		if !ok {
			if layer, err = writeLayer(tmp, entries); err != nil {
				return fmt.Errorf("image %s: %w", im.Ref, err)
			}
			layers[key] = layer
		}
		img, err := singleLayerImage(layer, im)
		if err != nil {
			return fmt.Errorf("image %s: %w", im.Ref, err)
		}
		refs[tag] = img
	}
	if err := writeArchive(path, refs); err != nil {
		return fmt.Errorf("write images to %s: %w", path, err)
	}
	return nil
}

// layerEntry is one tar entry of a layer: a directory, a file copied from
// local, or a symlink.
type layerEntry struct {
	path   string // absolute, clean
	local  string // regular file: where its content is
	target string // symlink: its target
	dir    bool
}

// layerEntries lists an image's entries sorted by path, with every parent
// directory, so that the layer unpacks the same on any runtime.
func layerEntries(im Image) ([]layerEntry, error) {
	if len(im.Files)+len(im.Symlinks) == 0 {
		return nil, errors.New("no files")
	}
	byPath := make(map[string]layerEntry)
	add := func(e layerEntry) error {
		if !path.IsAbs(e.path) || path.Clean(e.path) != e.path || e.path == "/" {
			return fmt.Errorf("path %q in the image: want an absolute, clean path of a file", e.path)
		}
		if _, dup := byPath[e.path]; dup {
			return fmt.Errorf("path %q is both a file and a symlink", e.path)
		}
		byPath[e.path] = e
		return nil
	}
	for p, local := range im.Files {
		if err := add(layerEntry{path: p, local: local}); err != nil {
			return nil, err
		}
	}
	for p, target := range im.Symlinks {
		if target == "" {
			return nil, fmt.Errorf("symlink %q has no target", p)
		}
		if err := add(layerEntry{path: p, target: target}); err != nil {
			return nil, err
		}
	}
	for p := range byPath {
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if e, ok := byPath[d]; ok {
				if !e.dir {
					return nil, fmt.Errorf("path %q is inside %q, which is not a directory", p, d)
				}
				continue
			}
			byPath[d] = layerEntry{path: d, dir: true}
		}
	}
	entries := make([]layerEntry, 0, len(byPath))
	for _, e := range byPath {
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(a, b layerEntry) int { return strings.Compare(a.path, b.path) })
	return entries, nil
}

// layerKey identifies a layer by what goes into it, so equal file sets are
// read and compressed once (the archive would dedupe them by digest anyway).
func layerKey(entries []layerEntry) string {
	var b strings.Builder
	for _, e := range entries {
		fmt.Fprintf(&b, "%q %q %q %t\n", e.path, e.local, e.target, e.dir)
	}
	return b.String()
}

// writeLayer writes the layer's tar under dir and returns it as a gzipped
// layer. The compressed bytes are kept in memory: they are needed twice
// (digest, then archive) and gzip is the slow part.
func writeLayer(dir string, entries []layerEntry) (v1.Layer, error) {
	f, err := os.CreateTemp(dir, "layer-*.tar")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	for _, e := range entries {
		if err := writeLayerEntry(tw, e); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return tarball.LayerFromFile(f.Name(), tarball.WithCompressedCaching)
}

func writeLayerEntry(tw *tar.Writer, e layerEntry) error {
	name := strings.TrimPrefix(e.path, "/")
	hdr := &tar.Header{Name: name, ModTime: epoch}
	switch {
	case e.dir:
		hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, name+"/", 0o755
		return tw.WriteHeader(hdr)
	case e.target != "":
		hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, e.target, 0o777
		return tw.WriteHeader(hdr)
	}
	src, err := os.Open(e.local)
	if err != nil {
		return err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s (for %s): not a regular file", e.local, e.path)
	}
	hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, int64(fi.Mode().Perm()), fi.Size()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if n, err := io.Copy(tw, src); err != nil {
		return fmt.Errorf("copy %s: %w", e.local, err)
	} else if n != fi.Size() {
		return fmt.Errorf("copy %s: changed while read", e.local)
	}
	return nil
}

func singleLayerImage(layer v1.Layer, im Image) (v1.Image, error) {
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: epoch}
	for i := range cf.History {
		cf.History[i].Created = v1.Time{Time: epoch}
	}
	cf.Config.Entrypoint = im.Entrypoint
	cf.Config.Cmd = im.Cmd
	cf.Config.Env = im.Env
	return mutate.ConfigFile(img, cf)
}

// writeArchive writes what tarball.MultiRefWriteToFile writes — the same
// manifest.json, config and layer entries, each layer once — but in the
// manifest's order: that function walks a map, so its archive's bytes (and
// the bundle's checksums and ID) would change from one run to the next.
func writeArchive(dst string, refs map[name.Reference]v1.Image) (err error) {
	m, err := tarball.ComputeManifest(refs)
	if err != nil {
		return err
	}
	byConfig := make(map[string]v1.Image, len(refs))
	for _, img := range refs {
		cfg, err := img.ConfigName()
		if err != nil {
			return err
		}
		byConfig[cfg.String()] = img
	}
	f, err := os.CreateTemp(filepath.Dir(dst), ".images-*.tar")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	written := make(map[string]bool)
	for _, d := range m {
		img := byConfig[d.Config]
		if !written[d.Config] {
			raw, err := img.RawConfigFile()
			if err != nil {
				return err
			}
			if err := archiveEntry(tw, d.Config, int64(len(raw)), bytes.NewReader(raw)); err != nil {
				return err
			}
			written[d.Config] = true
		}
		layers, err := img.Layers()
		if err != nil {
			return err
		}
		for i, l := range layers {
			if written[d.Layers[i]] {
				continue
			}
			if err := archiveLayer(tw, d.Layers[i], l); err != nil {
				return err
			}
			written[d.Layers[i]] = true
		}
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := archiveEntry(tw, "manifest.json", int64(len(mb)), bytes.NewReader(mb)); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil { // CreateTemp's 0600 is for secrets
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), dst)
}

func archiveLayer(tw *tar.Writer, name string, l v1.Layer) error {
	size, err := l.Size()
	if err != nil {
		return err
	}
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	return archiveEntry(tw, name, size, rc)
}

// archiveEntry writes one file of the archive with the header
// go-containerregistry's writer uses.
func archiveEntry(tw *tar.Writer, name string, size int64, r io.Reader) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg, Size: size}); err != nil {
		return err
	}
	n, err := io.Copy(tw, r)
	if err == nil && n != size {
		err = fmt.Errorf("%s: wrote %d bytes, want %d", name, n, size)
	}
	return err
}
