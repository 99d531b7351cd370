package docker

import (
	"bufio"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// The node image recipe. Any change to these values or files changes the
// image tag, so a changed recipe builds a new image and an unchanged one is
// reused.
var (
	//go:embed nodeimage/build.sh
	buildScript []byte
	//go:embed nodeimage/init.sh
	initScript []byte
)

const (
	imageRepo  = "provision-node"
	imageSuite = "bookworm"
	// imageInclude is what debootstrap installs into the image.
	imageInclude = "openssh-server,iproute2,iptables,procps,ca-certificates,curl,sudo,kmod"
	// imagePreload is only downloaded into the apt cache, so bootstrap's
	// `apt-get install docker.io` inside a node, and a kubeadm node's
	// install of kubeadmPreload, are real, offline installs.
	imagePreload = "docker.io " + kubeadmPreload
	// kubeadmPreload is what a kubeadm node installs from Debian besides
	// the Kubernetes binaries: the OCI runtime, CNI plugins, the tools
	// kubelet, kube-proxy and kubeadm's preflight call, and haproxy for a
	// control-plane endpoint in front of several API servers.
	kubeadmPreload = "runc containernetworking-plugins conntrack socat ebtables ethtool haproxy"
	defaultMirror  = "http://deb.debian.org/debian"
	// imageBuildTimeout bounds debootstrap + apt downloads + import; the
	// build takes about 2 minutes here.
	imageBuildTimeout = 20 * time.Minute
	initPath          = "/usr/local/sbin/provision-init"
)

// buildMu serialises builds inside one process so parallel tests or pools do
// not debootstrap the same recipe twice at once.
var buildMu sync.Mutex

// ImageTag is the tag of the node image for the current recipe.
func ImageTag() string {
	h := sha256.New()
	for _, part := range [][]byte{buildScript, initScript, []byte(imageSuite), []byte(imageInclude), []byte(imagePreload)} {
		fmt.Fprintf(h, "%d:", len(part))
		h.Write(part)
	}
	return imageRepo + ":" + hex.EncodeToString(h.Sum(nil))[:12]
}

// EnsureImage returns the node image reference, building it first if the
// local docker has no image for the current recipe. Building needs root
// (debootstrap) and network access to the Debian mirror
// (PROVISION_DEBIAN_MIRROR, default http://deb.debian.org/debian); it takes
// about two minutes the first time and is instant afterwards.
func EnsureImage(ctx context.Context, logger *slog.Logger) (string, error) {
	c, err := NewClient()
	if err != nil {
		return "", err
	}
	defer c.Close()
	return ensureImage(ctx, c, logger)
}

func ensureImage(ctx context.Context, api engine, logger *slog.Logger) (string, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	tag := ImageTag()
	buildMu.Lock()
	defer buildMu.Unlock()
	ok, err := imageExists(ctx, api, tag)
	if err != nil {
		return "", err
	}
	if ok {
		return tag, nil
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("build node image %s: must run as root (debootstrap and chroot need it); run `sudo provision image build` once", tag)
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", fmt.Errorf("build node image %s: debootstrap not found (apt-get install debootstrap): %w", tag, err)
	}
	mirror := os.Getenv("PROVISION_DEBIAN_MIRROR")
	if mirror == "" {
		mirror = defaultMirror
	}
	start := time.Now()
	logger.InfoContext(ctx, "building node image; the first build takes about 2 minutes", "image", tag, "mirror", mirror)
	ctx, cancel := context.WithTimeout(ctx, imageBuildTimeout)
	defer cancel()

	dir, err := os.MkdirTemp("", "provision-image-")
	if err != nil {
		return "", fmt.Errorf("build node image: %w", err)
	}
	defer os.RemoveAll(dir)
	rootfs := filepath.Join(dir, "rootfs")
	for name, body := range map[string][]byte{"build.sh": buildScript, "init.sh": initScript} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o755); err != nil {
			return "", fmt.Errorf("build node image: %w", err)
		}
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", filepath.Join(dir, "build.sh"))
	cmd.Env = append(os.Environ(),
		"ROOTFS="+rootfs, "SUITE="+imageSuite, "MIRROR="+mirror, "INCLUDE="+imageInclude,
		"INIT="+filepath.Join(dir, "init.sh"), "PRELOAD="+imagePreload, "DEBIAN_FRONTEND=noninteractive")
	if err := runLogged(ctx, cmd, logger); err != nil {
		return "", fmt.Errorf("build node image %s: %w", tag, err)
	}
	logger.InfoContext(ctx, "importing node image", "image", tag, "elapsed", time.Since(start).Round(time.Second))
	if err := importRootfs(ctx, api, rootfs, tag); err != nil {
		return "", fmt.Errorf("build node image %s: %w", tag, err)
	}
	logger.InfoContext(ctx, "node image ready", "image", tag, "elapsed", time.Since(start).Round(time.Second))
	return tag, nil
}

func imageExists(ctx context.Context, api engine, ref string) (bool, error) {
	ctx, cancel := withDeadline(ctx)
	defer cancel()
	_, err := api.ImageInspect(ctx, ref)
	switch {
	case err == nil:
		return true, nil
	case cerrdefs.IsNotFound(err):
		return false, nil
	case cerrdefs.IsInvalidArgument(err): // not a reference at all
		return false, nil
	default:
		return false, fmt.Errorf("inspect image %s: %w", ref, classify(err, ""))
	}
}

// runLogged runs the build script: progress lines at Info, the rest of its
// chatter at Debug, and the tail of it in the error when it fails.
func runLogged(ctx context.Context, cmd *exec.Cmd, logger *slog.Logger) error {
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return err
	}
	var tail []string
	done := make(chan struct{})
	go func() { // owned here: we wait for done below
		defer close(done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			if rest, ok := strings.CutPrefix(line, "provision-image: "); ok {
				logger.InfoContext(ctx, rest)
			} else {
				logger.DebugContext(ctx, line)
			}
			tail = append(tail, line)
			if len(tail) > 15 {
				tail = tail[1:]
			}
		}
		io.Copy(io.Discard, pr) // a too-long line must not block the writer
	}()
	err := cmd.Wait()
	pw.Close()
	<-done
	if err != nil {
		return fmt.Errorf("%w\n%s", err, strings.Join(tail, "\n"))
	}
	return nil
}

// importRootfs streams `tar -C rootfs -c .` into the Engine API's image
// import (what `docker import` does).
func importRootfs(ctx context.Context, api engine, rootfs, tag string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tarCmd := exec.CommandContext(ctx, "tar", "-C", rootfs, "--numeric-owner", "-c", ".")
	out, err := tarCmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := tarCmd.Start(); err != nil {
		return fmt.Errorf("tar rootfs: %w", err)
	}
	ierr := importStream(ctx, api, out, tag)
	if ierr != nil {
		cancel() // unblock tar if import stopped reading
	}
	terr := tarCmd.Wait()
	if ierr != nil {
		return fmt.Errorf("import image: %w", classify(ierr, ""))
	}
	if terr != nil {
		return fmt.Errorf("tar rootfs: %w", terr)
	}
	return nil
}

// importStream imports a root filesystem tar as image tag. The daemon
// reports failures inside the response's JSON message stream, so the whole
// stream is read.
func importStream(ctx context.Context, api engine, rootfs io.Reader, tag string) error {
	rc, err := api.ImageImport(ctx, client.ImageImportSource{Source: rootfs, SourceName: "-"}, tag, client.ImageImportOptions{
		Changes: []string{fmt.Sprintf(`CMD [%q]`, initPath), "LABEL provision.image=node"},
	})
	if err != nil {
		return err
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	for {
		var msg struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		switch err := dec.Decode(&msg); {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return fmt.Errorf("read import progress: %w", err)
		case msg.ErrorDetail.Message != "":
			return errors.New(msg.ErrorDetail.Message)
		case msg.Error != "":
			return errors.New(msg.Error)
		}
	}
}
