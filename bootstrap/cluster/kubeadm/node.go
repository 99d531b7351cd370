package kubeadm

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/provisionhq/provision/bootstrap"
	"github.com/provisionhq/provision/bootstrap/artifacts"
	"github.com/provisionhq/provision/bootstrap/cluster"
	"github.com/provisionhq/provision/internal/retry"
)

var (
	//go:embed node/provision-service
	serviceScript []byte
	//go:embed node/provision-node-sync
	nodeSyncScript []byte
)

// The distro packages a node needs besides the pushed artifacts: runc under
// containerd, the CNI plugins (bridge, host-local, portmap), what kubelet,
// kube-proxy and kubeadm call (iptables, conntrack, socat, ebtables,
// ethtool, mount, nsenter) and haproxy for the node-local API balancer.
var (
	aptPackages = []string{"runc", "containernetworking-plugins", "iptables", "conntrack", "socat", "ebtables", "ethtool", "haproxy", "ca-certificates"}
	dnfPackages = []string{"runc", "containernetworking-plugins", "iptables", "conntrack-tools", "socat", "ebtables-legacy", "ethtool", "haproxy"}
)

// NodeArtifacts is where a node keeps what provision pushed: the bundle in
// <ID>/ (and current, a relative link to it) and the plan's image archives
// in plan-images/. An autoscaler running in the cluster mounts it and takes
// its artifacts from there (provision autoscale --kubernetes-artifacts).
const NodeArtifacts = "/opt/provision/kubernetes"

const (
	nodeDir       = NodeArtifacts
	planImages    = NodeArtifacts + "/plan-images"
	containerdCfg = "/etc/containerd/config.toml"
	// ctrTimeout bounds the wait for containerd to answer after a start.
	ctrTimeout = time.Minute
)

// PrepareSteps are the steps that make h a Kubernetes node of role
// ("manager" or "worker") before it inits or joins: distro packages, the
// pushed artifacts, containerd, the images, and the kubelet service (which
// waits for kubeadm's config, as the upstream kubelet unit does). Each is
// skipped when already done.
func (d *Driver) PrepareSteps(h *bootstrap.Host, role string) []bootstrap.Step {
	b := d.cfg.Bundle
	if b == nil {
		return []bootstrap.Step{{Name: "kube-artifacts",
			Check: func(context.Context, *bootstrap.Host) (bool, error) { return false, nil },
			Apply: func(context.Context, *bootstrap.Host) error {
				return errors.New("no Kubernetes artifacts were gathered for this run")
			}}}
	}
	dir := nodeDir + "/" + b.ID
	images := []string{"node.tar"}
	if role == roleManager {
		images = append(images, "control-plane.tar")
	}
	marker := dir + "/.complete-" + role
	scripts := map[string][]byte{"/usr/local/sbin/provision-service": serviceScript, "/usr/local/sbin/provision-node-sync": nodeSyncScript}
	return []bootstrap.Step{
		{Name: "kube-packages",
			Check: succeeds("command -v runc && command -v conntrack && command -v socat && command -v haproxy && command -v iptables && (test -x /usr/lib/cni/bridge || test -x /opt/cni/bin/bridge)"),
			Apply: func(ctx context.Context, h *bootstrap.Host) error {
				return bootstrap.Install(ctx, h, aptPackages, dnfPackages)
			}},
		{Name: "kube-scripts",
			Check: func(ctx context.Context, h *bootstrap.Host) (bool, error) {
				for _, path := range slices.Sorted(maps.Keys(scripts)) {
					if ok, err := succeeds("echo "+sha(scripts[path])+"  "+path+" | sha256sum -c --status")(ctx, h); !ok || err != nil {
						return false, err
					}
				}
				return true, nil
			},
			Apply: func(ctx context.Context, h *bootstrap.Host) error {
				for _, path := range slices.Sorted(maps.Keys(scripts)) {
					if err := writeFile(ctx, h.Run, path, scripts[path], 0o755); err != nil {
						return err
					}
				}
				return nil
			}},
		{Name: "kube-artifacts", Check: succeeds("test -f " + marker),
			Apply: func(ctx context.Context, h *bootstrap.Host) error {
				return d.push(ctx, h.Run, dir, role, images)
			}},
		{Name: "containerd", Check: succeeds("ctr version >/dev/null 2>&1 && cmp -s " + containerdCfg + ".want " + containerdCfg),
			Apply: func(ctx context.Context, h *bootstrap.Host) error {
				return d.startContainerd(ctx, h.Run)
			}},
		{Name: "kube-images", Check: d.imagesPresent(role),
			Apply: func(ctx context.Context, h *bootstrap.Host) error {
				for _, img := range images {
					if err := h.Run.Run(ctx, "ctr -n k8s.io images import "+dir+"/images/"+img, nil, &bytes.Buffer{}); err != nil {
						return fmt.Errorf("import %s: %w", img, err)
					}
				}
				return nil
			}},
		d.imagesStep(),
		{Name: "kubelet", Check: succeeds("provision-service status kubelet"),
			Apply: func(ctx context.Context, h *bootstrap.Host) error {
				return installService(ctx, h.Run, "kubelet", kubeletService)
			}},
	}
}

// kubeletService runs the kubelet the way kubeadm's systemd drop-in does:
// with the flags kubeadm wrote, once kubeadm has written its config.
const kubeletService = `[ -f /var/lib/kubelet/config.yaml ] || { sleep 2; exit 1; }
KUBELET_KUBEADM_ARGS=
[ -f /var/lib/kubelet/kubeadm-flags.env ] && . /var/lib/kubelet/kubeadm-flags.env
exec kubelet --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml $KUBELET_KUBEADM_ARGS
`

// installService writes the service's script and (re)starts it when the
// script changed, else makes sure it runs.
func installService(ctx context.Context, r cluster.Runner, name, script string) error {
	path := "/etc/provision/services/" + name
	cmd := `set -e
mkdir -p /etc/provision/services
cat > ` + path + `.new
if cmp -s ` + path + `.new ` + path + `; then
	rm -f ` + path + `.new
	provision-service start ` + name + `
else
	mv -f ` + path + `.new ` + path + `
	provision-service restart ` + name + `
fi`
	if err := r.Run(ctx, cmd, strings.NewReader(script), &bytes.Buffer{}); err != nil {
		return fmt.Errorf("service %s: %w", name, err)
	}
	return nil
}

// push streams the bundle's binaries and the role's images to dir on the
// node as one tar over the SSH session, then links the binaries into
// /usr/local/bin. A partial push (killed mid-stream) lacks the marker and
// is pushed again.
func (d *Driver) push(ctx context.Context, r cluster.Runner, dir, role string, images []string) error {
	b := d.cfg.Bundle
	files := []string{"manifest.json"}
	bins, err := os.ReadDir(filepath.Join(b.Dir, "bin"))
	if err != nil {
		return fmt.Errorf("read artifacts: %w", err)
	}
	for _, e := range bins {
		files = append(files, "bin/"+e.Name())
	}
	for _, img := range images {
		files = append(files, "images/"+img)
	}
	pr, pw := io.Pipe()
	var g errgroup.Group
	g.Go(func() error {
		err := writeTar(pw, b.Dir, files)
		pw.CloseWithError(err)
		return err
	})
	tmp := dir + ".tmp-" + role
	cmd := `set -e
rm -rf ` + tmp + ` && mkdir -p ` + tmp + `
tar -x -C ` + tmp + `
mkdir -p ` + dir + `
cp -a ` + tmp + `/. ` + dir + `/
rm -rf ` + tmp + `
for f in ` + dir + `/bin/*; do ln -sfn "$f" /usr/local/bin/; done
ln -sfn ` + b.ID + ` ` + nodeDir + `/current
touch ` + dir + `/.complete-` + role
	start := time.Now()
	rerr := r.Run(ctx, cmd, pr, &bytes.Buffer{})
	pr.CloseWithError(errors.New("remote tar ended"))
	werr := g.Wait()
	if rerr != nil {
		return fmt.Errorf("push Kubernetes artifacts: %w", rerr)
	}
	if werr != nil {
		return fmt.Errorf("push Kubernetes artifacts: %w", werr)
	}
	d.log.Info("kubernetes artifacts pushed", "bundle", b.ID, "role", role, "duration", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// writeTar writes the named files under root as a tar stream, symlinks as
// symlinks (the multi-call binary's names).
func writeTar(w io.Writer, root string, files []string) error {
	tw := tar.NewWriter(w)
	dirs := map[string]bool{}
	for _, name := range files {
		if dir := filepath.Dir(name); dir != "." && !dirs[dir] {
			dirs[dir] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755}); err != nil {
				return err
			}
		}
		path := filepath.Join(root, name)
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: name, Mode: int64(fi.Mode().Perm()), ModTime: fi.ModTime()}
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			continue
		}
		hdr.Typeflag, hdr.Size = tar.TypeReg, fi.Size()
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return tw.Close()
}

// containerdConfig is containerd 2.x's config (version 3) for a kubelet:
// runc from the distro, the pause image from the bundle (never pulled), CNI
// plugins where Debian and upstream put them, and oom_score_adj left to
// what the process may set (a node in a container lacks CAP_SYS_RESOURCE).
func (d *Driver) containerdConfig(cgroupDriver string) string {
	return `version = 3

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = '` + d.cfg.Bundle.Images["pause"] + `'

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true

[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ['/usr/lib/cni', '/opt/cni/bin']
  conf_dir = '/etc/cni/net.d'

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = 'io.containerd.runc.v2'

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  BinaryName = '/usr/sbin/runc'
  SystemdCgroup = ` + fmt.Sprint(cgroupDriver == "systemd") + `
`
}

func (d *Driver) startContainerd(ctx context.Context, r cluster.Runner) error {
	cgroupDriver := cgroupDriverFor(ctx, cluster.Node{Run: r})
	cfg := d.containerdConfig(cgroupDriver)
	// The .want copy lets the step's check see a config changed since.
	cmd := `set -e
mkdir -p /etc/containerd
cat > ` + containerdCfg + `.want
cp ` + containerdCfg + `.want ` + containerdCfg
	if err := r.Run(ctx, cmd, strings.NewReader(cfg), &bytes.Buffer{}); err != nil {
		return fmt.Errorf("containerd config: %w", err)
	}
	if err := installService(ctx, r, "containerd", "exec containerd --config "+containerdCfg+"\n"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, ctrTimeout)
	defer cancel()
	err := retry.Do(ctx, retry.Policy{Initial: 300 * time.Millisecond, Max: 2 * time.Second}, func(ctx context.Context) (bool, error) {
		err := r.Run(ctx, "ctr version >/dev/null", nil, &bytes.Buffer{})
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("wait for containerd (see /var/log/provision/containerd.log): %w", err)
	}
	return nil
}

// imagesPresent checks that containerd has every image the role needs.
func (d *Driver) imagesPresent(role string) func(ctx context.Context, h *bootstrap.Host) (bool, error) {
	want := []string{d.cfg.Bundle.Images["pause"], d.cfg.Bundle.Images["coredns"]}
	if role == roleManager {
		for _, c := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"} {
			want = append(want, d.cfg.Bundle.Images[c])
		}
	}
	return func(ctx context.Context, h *bootstrap.Host) (bool, error) {
		var out bytes.Buffer
		err := h.Run.Run(ctx, "ctr -n k8s.io images ls -q", nil, &out)
		if _, exited := cluster.ExitStatus(err); err != nil && !exited {
			return false, err
		}
		have := strings.Fields(out.String())
		for _, w := range want {
			if !slices.Contains(have, w) {
				return false, nil
			}
		}
		return true, nil
	}
}

// imagesStep imports the plan's own image archives into containerd. Each
// is known on the node by its content hash, so a changed file is imported
// again and an unchanged one never is.
func (d *Driver) imagesStep() bootstrap.Step {
	images, sumErr := d.planImages()
	marker := func(im planImage) string { return "/var/lib/provision/images/" + im.sum }
	return bootstrap.Step{Name: "plan-images",
		Check: func(ctx context.Context, h *bootstrap.Host) (bool, error) {
			if sumErr != nil {
				return false, nil
			}
			for _, im := range images {
				if ok, err := succeeds("test -f "+marker(im))(ctx, h); !ok || err != nil {
					return false, err
				}
			}
			return true, nil
		},
		Apply: func(ctx context.Context, h *bootstrap.Host) error {
			if sumErr != nil {
				return sumErr
			}
			for _, im := range images {
				f, err := os.Open(im.path)
				if err != nil {
					return err
				}
				// The archive stays on the node: an autoscaler running in the
				// cluster hands it to the nodes it adds (see NodeArtifacts).
				dst := planImages + "/" + filepath.Base(im.path)
				cmd := "set -e; mkdir -p " + planImages + " /var/lib/provision/images; cat > " + shellQuote(dst+".tmp") +
					"; mv -f " + shellQuote(dst+".tmp") + " " + shellQuote(dst) + "; ctr -n k8s.io images import " + shellQuote(dst) + " >/dev/null; touch " + marker(im)
				err = h.Run.Run(ctx, cmd, f, &bytes.Buffer{})
				f.Close()
				if err != nil {
					return fmt.Errorf("import %s: %w", filepath.Base(im.path), err)
				}
			}
			return nil
		}}
}

type planImage struct{ path, sum string }

// planImages hashes the plan's image archives once per driver, not once
// per machine.
func (d *Driver) planImages() ([]planImage, error) {
	d.imagesOnce.Do(func() {
		for _, p := range d.cfg.Images {
			sum, err := artifacts.FileSHA256(p)
			if err != nil {
				d.imagesErr = errors.Join(d.imagesErr, fmt.Errorf("image archive %s: %w", p, err))
				continue
			}
			d.images = append(d.images, planImage{p, sum})
		}
	})
	return d.images, d.imagesErr
}

// succeeds is a check that passes when cmd exits 0; another exit is "not
// done", a failure to run it at all an error.
func succeeds(cmd string) func(ctx context.Context, h *bootstrap.Host) (bool, error) {
	return func(ctx context.Context, h *bootstrap.Host) (bool, error) { return cluster.Succeeds(ctx, h.Run, cmd) }
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
