package artifacts

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/provisionhq/provision/providers/docker/dockertest"
)

// writeFile writes a local file for an image and returns its path.
func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return p
}

// twoImages are two images sharing one layer (same files, other config)
// and a third with a layer of its own.
func twoImages(t *testing.T) []Image {
	dir := t.TempDir()
	hello := writeFile(t, dir, "hello", "#!/bin/sh\necho hello\n", 0o755)
	conf := writeFile(t, dir, "conf", "greeting=hi\n", 0o640)
	shared := map[string]string{"/usr/local/bin/hello": hello, "/etc/hello.conf": conf}
	links := map[string]string{"/usr/local/bin/hi": "hello"}
	return []Image{
		{Ref: "provision.local/hello:1", Files: shared, Symlinks: links, Entrypoint: []string{"hello"}, Env: []string{imagePATH}},
		{Ref: "provision.local/hi:1", Files: shared, Symlinks: links, Cmd: []string{"hi", "there"}, Env: []string{imagePATH, "A=b"}},
		{Ref: "provision.local/other:2", Files: map[string]string{"/other": hello}, Entrypoint: []string{"/other"}},
	}
}

func TestWriteImages(t *testing.T) {
	t.Parallel()
	images := twoImages(t)
	out := filepath.Join(t.TempDir(), "images.tar")
	if err := WriteImages(out, images...); err != nil {
		t.Fatal(err)
	}

	for _, im := range images {
		img, cf := archiveImage(t, out, im.Ref)
		if !slices.Equal(cf.Config.Entrypoint, im.Entrypoint) || !slices.Equal(cf.Config.Cmd, im.Cmd) || !slices.Equal(cf.Config.Env, im.Env) {
			t.Errorf("%s: config entrypoint %q cmd %q env %q, want %q %q %q",
				im.Ref, cf.Config.Entrypoint, cf.Config.Cmd, cf.Config.Env, im.Entrypoint, im.Cmd, im.Env)
		}
		files := readLayer(t, onlyLayer(t, img))
		for p, local := range im.Files {
			want, _ := os.ReadFile(local)
			fi, _ := os.Stat(local)
			e, ok := files[strings.TrimPrefix(p, "/")]
			if !ok || e.typ != tar.TypeReg || !bytes.Equal(e.data, want) || os.FileMode(e.mode) != fi.Mode().Perm() {
				t.Errorf("%s: %s is %+v, want %q with mode %v", im.Ref, p, e, want, fi.Mode().Perm())
			}
		}
		for p, target := range im.Symlinks {
			if e := files[strings.TrimPrefix(p, "/")]; e.typ != tar.TypeSymlink || e.link != target {
				t.Errorf("%s: %s is %+v, want a symlink to %s", im.Ref, p, e, target)
			}
		}
		for p := range im.Files {
			// Parent directories are in the layer, so any runtime unpacks
			// it with sane modes.
			for d := filepath.Dir(p); d != "/"; d = filepath.Dir(d) {
				if e := files[strings.TrimPrefix(d, "/")]; e.typ != tar.TypeDir || e.mode != 0o755 {
					t.Errorf("%s: parent %s is %+v, want a 0755 directory", im.Ref, d, e)
				}
			}
		}
	}

	hello, _ := archiveImage(t, out, images[0].Ref)
	hi, _ := archiveImage(t, out, images[1].Ref)
	d1, _ := onlyLayer(t, hello).Digest()
	d2, _ := onlyLayer(t, hi).Digest()
	if d1 != d2 {
		t.Errorf("images with the same files have layers %s and %s, want one", d1, d2)
	}
	names := archiveEntries(t, out)
	if n := countSuffix(names, ".tar.gz"); n != 2 {
		t.Errorf("archive holds %d layers (%q), want 2: the shared one once", n, names)
	}
	if n := countSuffix(names, d1.Hex+".tar.gz"); n != 1 {
		t.Errorf("shared layer stored %d times, want once", n)
	}

	// The same images in another order give the same bytes: bundle IDs
	// are stable across rebuilds.
	again := filepath.Join(t.TempDir(), "images.tar")
	slices.Reverse(images)
	if err := WriteImages(again, images...); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(again)
	if !bytes.Equal(a, b) {
		t.Error("writing the same images twice gave different archives")
	}
}

func TestWriteImagesErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := writeFile(t, dir, "f", "x", 0o755)
	tests := []struct {
		name   string
		images []Image
		want   string
	}{
		{"none", nil, "no images"},
		{"bad ref", []Image{{Ref: "UPPER/case:1", Files: map[string]string{"/f": f}}}, "UPPER"},
		{"relative path", []Image{{Ref: "x.local/a:1", Files: map[string]string{"usr/f": f}}}, "absolute"},
		{"unclean path", []Image{{Ref: "x.local/a:1", Files: map[string]string{"/usr/../f": f}}}, "clean"},
		{"no files", []Image{{Ref: "x.local/a:1"}}, "no files"},
		{"file and symlink", []Image{{Ref: "x.local/a:1", Files: map[string]string{"/f": f}, Symlinks: map[string]string{"/f": "g"}}}, "both"},
		{"file under file", []Image{{Ref: "x.local/a:1", Files: map[string]string{"/f": f, "/f/g": f}}}, "not a directory"},
		{"missing local file", []Image{{Ref: "x.local/a:1", Files: map[string]string{"/f": filepath.Join(dir, "nope")}}}, "nope"},
		{"duplicate ref", []Image{{Ref: "x.local/a:1", Files: map[string]string{"/f": f}}, {Ref: "x.local/a:1", Files: map[string]string{"/g": f}}}, "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "x.tar")
			err := WriteImages(out, tt.images...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("a failed WriteImages left %s", out)
			}
		})
	}
}

// TestWriteImagesDockerLoad loads an archive into docker, an importer
// independent of go-containerregistry. Skipped only when docker does not
// answer (and PROVISION_REQUIRE_DOCKER is unset).
func TestWriteImagesDockerLoad(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dc := dockertest.Require(t)
	var rnd [4]byte
	rand.Read(rnd[:])
	suffix := hex.EncodeToString(rnd[:])
	images := twoImages(t)
	for i := range images {
		images[i].Ref = strings.Replace(images[i].Ref, ":", "-"+suffix+":", 1)
	}
	out := filepath.Join(t.TempDir(), "images.tar")
	if err := WriteImages(out, images...); err != nil {
		t.Fatal(err)
	}
	loaded, err := dockerLoad(ctx, dc, out)
	if err != nil {
		t.Fatalf("docker load: %v\n%s", err, loaded)
	}
	for _, im := range images {
		t.Cleanup(func() { dc.ImageRemove(context.Background(), im.Ref, client.ImageRemoveOptions{Force: true}) })
		if !strings.Contains(string(loaded), im.Ref) {
			t.Errorf("docker load output lacks %s:\n%s", im.Ref, loaded)
		}
	}
	inspected, err := dc.ImageInspect(ctx, images[0].Ref)
	if err != nil {
		t.Fatalf("docker image inspect: %v", err)
	}
	var entrypoint []string
	if inspected.Config != nil {
		entrypoint = inspected.Config.Entrypoint
	}
	if got, want := fmt.Sprintf("%q %s/%s", entrypoint, inspected.Os, inspected.Architecture), `["hello"] linux/amd64`; got != want {
		t.Errorf("docker sees %s, want %s", got, want)
	}
	// The files as docker unpacked them (the images have no shell to run).
	created, err := dc.ContainerCreate(ctx, client.ContainerCreateOptions{Image: images[0].Ref})
	if err != nil {
		t.Fatalf("docker create: %v", err)
	}
	id := created.ID
	t.Cleanup(func() { dockertest.RemoveContainers(context.Background(), id) })
	cp, err := dc.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: "/etc/hello.conf"})
	if err != nil {
		t.Fatalf("docker cp: %v", err)
	}
	defer cp.Content.Close()
	tr := tar.NewReader(cp.Content)
	hdr, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != "greeting=hi\n" || hdr.Mode&0o777 != 0o640 {
		t.Errorf("docker has /etc/hello.conf %q mode %o, want %q mode 640", data, hdr.Mode, "greeting=hi\n")
	}
}

// dockerLoad loads an image archive, as `docker load -i` does, and returns
// the daemon's progress stream (which names the loaded images).
func dockerLoad(ctx context.Context, dc *client.Client, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res, err := dc.ImageLoad(ctx, f)
	if err != nil {
		return nil, err
	}
	defer res.Close()
	out, err := io.ReadAll(res)
	if err != nil {
		return out, err
	}
	if bytes.Contains(out, []byte(`"errorDetail"`)) {
		return out, errors.New("the daemon reported an error")
	}
	return out, nil
}
