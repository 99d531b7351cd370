package artifacts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/provisionhq/provision/internal/retry"
)

// imageList is the images kubeadm pulls for one Kubernetes version, as
// `kubeadm config images list` prints them.
type imageList struct {
	Repository string            // kubeadm's imageRepository, "registry.k8s.io"
	Refs       map[string]string // component (see imageComponents) -> ref
	// Tags as kubeadm expects them: "3.7.0-0", "v1.14.6", "3.10.2".
	Etcd, CoreDNS, Pause string
}

// imageComponents are the images a bundle holds. kube-proxy is left out:
// kubeadm's kube-proxy DaemonSet needs iptables userland in its image,
// which is not something this package builds from Go binaries.
var imageComponents = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "coredns", "pause"}

// kubeadmImagesTimeout bounds `kubeadm config images list`, which reads
// nothing from the network when given a version.
const kubeadmImagesTimeout = time.Minute

// kubeadmImages asks kubeadm which images it uses for version. Where kubeadm
// cannot run at all (a linux/amd64 binary on another platform) the versions
// known for that minor release stand in, with a warning.
func kubeadmImages(ctx context.Context, kubeadm, version string, log *slog.Logger) (imageList, error) {
	ctx, cancel := context.WithTimeout(ctx, kubeadmImagesTimeout)
	defer cancel()
	var (
		stderr bytes.Buffer
		out    []byte
	)
	// A kubeadm this process has just written can fail to start with
	// ETXTBSY for a moment: a child that another goroutine forks then holds
	// a copy of the file's write descriptor until it execs
	// (golang/go#22315). It is started again until ctx ends.
	err := retry.Do(ctx, retry.Policy{Initial: 10 * time.Millisecond, Max: 500 * time.Millisecond}, func(ctx context.Context) (bool, error) {
		stderr.Reset()
		cmd := exec.CommandContext(ctx, kubeadm, "config", "images", "list", "--kubernetes-version", version, "-o", "json")
		cmd.Stderr = &stderr
		var err error
		out, err = cmd.Output()
		return !errors.Is(err, syscall.ETXTBSY), err
	})
	if err != nil {
		if errors.Is(err, syscall.ENOEXEC) {
			if l, ok := knownImages(version); ok {
				log.Warn("kubeadm cannot run on this machine; using the image versions known for this Kubernetes release",
					"kubeadm", kubeadm, "etcd", l.Etcd, "coredns", l.CoreDNS, "pause", l.Pause)
				return l, nil
			}
		}
		return imageList{}, fmt.Errorf("kubeadm config images list: %w: %s", err, tail(stderr.Bytes()))
	}
	l, err := parseImageList(out, version)
	if err != nil {
		return imageList{}, fmt.Errorf("kubeadm config images list: %w", err)
	}
	return l, nil
}

// parseImageList reads `kubeadm config images list` output, JSON (-o json)
// or text (one ref a line), and checks that it names every image a bundle
// holds, the Kubernetes ones at version.
func parseImageList(out []byte, version string) (imageList, error) {
	var refs []string
	out = bytes.TrimSpace(out)
	if bytes.HasPrefix(out, []byte("{")) {
		var doc struct {
			Kind   string   `json:"kind"`
			Images []string `json:"images"`
		}
		if err := json.Unmarshal(out, &doc); err != nil {
			return imageList{}, fmt.Errorf("parse image list: %w", err)
		}
		if doc.Kind != "Images" {
			return imageList{}, fmt.Errorf("parse image list: kind %q, want Images", doc.Kind)
		}
		refs = doc.Images
	} else {
		for _, line := range strings.Split(string(out), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				refs = append(refs, line)
			}
		}
	}
	l := imageList{Refs: make(map[string]string)}
	tags := make(map[string]string)
	for _, ref := range refs {
		repo, tag, ok := splitRef(ref)
		if !ok {
			return imageList{}, fmt.Errorf("image %q: no tag", ref)
		}
		c := path.Base(repo)
		if !slices.Contains(imageComponents, c) {
			continue // kube-proxy, and whatever a later kubeadm adds
		}
		l.Refs[c], tags[c] = ref, tag
		if c == "kube-apiserver" {
			l.Repository = path.Dir(repo)
		}
	}
	var missing []string
	for _, c := range imageComponents {
		if _, ok := l.Refs[c]; !ok {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return imageList{}, fmt.Errorf("image list names no %s image (got %q)", strings.Join(missing, ", "), refs)
	}
	for _, c := range controlPlaneBinaries {
		if tags[c] != version {
			// A kubeadm built without version ldflags says
			// v1.0.0-placeholder-version here.
			return imageList{}, fmt.Errorf("image list has %s for %s, want %s (kubeadm reports the wrong version)", l.Refs[c], c, version)
		}
	}
	l.Etcd, l.CoreDNS, l.Pause = tags["etcd"], tags["coredns"], tags["pause"]
	return l, nil
}

// splitRef splits "registry.k8s.io/coredns/coredns:v1.14.6" into repository
// and tag (a registry's :port is not a tag).
func splitRef(ref string) (repo, tag string, ok bool) {
	i := strings.LastIndexByte(ref, ':')
	if i < 0 || strings.Contains(ref[i:], "/") {
		return "", "", false
	}
	return ref[:i], ref[i+1:], ref[i+1:] != ""
}

// knownImageTags are the etcd, CoreDNS and pause tags kubeadm uses per minor
// release, from `kubeadm config images list`. Only a fallback for machines
// that cannot run the linux/amd64 kubeadm (and for tests): kubeadm itself is
// the source of truth and is asked whenever it runs.
var knownImageTags = map[string]struct{ etcd, coredns, pause string }{
	"v1.37": {etcd: "3.7.0-0", coredns: "v1.14.6", pause: "3.10.2"},
}

// defaultImageRepository is kubeadm's default imageRepository.
const defaultImageRepository = "registry.k8s.io"

func knownImages(version string) (imageList, bool) {
	minor := version
	if i := strings.LastIndexByte(version, '.'); i > 0 {
		minor = version[:i]
	}
	t, ok := knownImageTags[minor]
	if !ok {
		return imageList{}, false
	}
	r := defaultImageRepository
	l := imageList{
		Repository: r,
		Refs: map[string]string{
			"etcd":    r + "/etcd:" + t.etcd,
			"coredns": r + "/coredns/coredns:" + t.coredns,
			"pause":   r + "/pause:" + t.pause,
		},
		Etcd: t.etcd, CoreDNS: t.coredns, Pause: t.pause,
	}
	for _, c := range controlPlaneBinaries {
		l.Refs[c] = r + "/" + c + ":" + version
	}
	return l, true
}

// etcdModuleVersion turns kubeadm's etcd image tag ("3.7.0-0": version and
// image revision) into the etcd module version ("v3.7.0").
func etcdModuleVersion(tag string) (string, error) {
	v, _, _ := strings.Cut(tag, "-")
	v = "v" + v
	if !versionRE.MatchString(v) {
		return "", fmt.Errorf("etcd image tag %q: want MAJOR.MINOR.PATCH-REVISION", tag)
	}
	return v, nil
}
