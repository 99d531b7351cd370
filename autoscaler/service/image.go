package service

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/provisionhq/provision/bootstrap/artifacts"
)

// Repository is the autoscaler image's name; provision.local is no
// registry, so nothing ever tries to pull it.
const Repository = "provision.local/provision"

// Image is the autoscaler's image: the provision binary at exe (statically
// linked: the image has no C library) and this machine's CA certificates,
// for the cloud APIs.
func Image(exe, ref string) (artifacts.Image, error) {
	if err := requireStatic(exe); err != nil {
		return artifacts.Image{}, err
	}
	im := artifacts.Image{
		Ref:        ref,
		Files:      map[string]string{"/usr/local/bin/provision": exe},
		Entrypoint: []string{"/usr/local/bin/provision"},
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + WorkDir},
	}
	for _, ca := range []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"} {
		if _, err := os.Stat(ca); err == nil {
			im.Files["/etc/ssl/certs/ca-certificates.crt"] = ca
			break
		}
	}
	return im, nil
}

// ContentRef is Repository tagged with a digest of the binary at exe, so
// a new binary is a new image and the service is updated to it, while the
// same binary deploys nothing new.
func ContentRef(exe string) (string, error) {
	f, err := os.Open(exe)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", exe, err)
	}
	return Repository + ":" + hex.EncodeToString(h.Sum(nil))[:12], nil
}

// requireStatic refuses a dynamically linked binary.
func requireStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked and the image has no C library: rebuild it with CGO_ENABLED=0 (make build does)", path)
		}
	}
	return nil
}
