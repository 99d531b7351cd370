package artifacts

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// want137 is what kubeadm v1.37.2 lists (testdata/kubeadm-images-*).
var want137 = imageList{
	Repository: "registry.k8s.io",
	Refs: map[string]string{
		"kube-apiserver":          "registry.k8s.io/kube-apiserver:v1.37.2",
		"kube-controller-manager": "registry.k8s.io/kube-controller-manager:v1.37.2",
		"kube-scheduler":          "registry.k8s.io/kube-scheduler:v1.37.2",
		"etcd":                    "registry.k8s.io/etcd:3.7.0-0",
		"coredns":                 "registry.k8s.io/coredns/coredns:v1.14.6",
		"pause":                   "registry.k8s.io/pause:3.10.2",
	},
	Etcd: "3.7.0-0", CoreDNS: "v1.14.6", Pause: "3.10.2",
}

func TestParseImageList(t *testing.T) {
	t.Parallel()
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	tests := []struct {
		name, out, version string
		want               imageList
		err                string
	}{
		{name: "json", out: read("kubeadm-images-v1.37.2.json"), version: "v1.37.2", want: want137},
		{name: "text", out: read("kubeadm-images-v1.37.2.txt"), version: "v1.37.2", want: want137},
		{name: "other repository", version: "v1.37.2", out: strings.ReplaceAll(read("kubeadm-images-v1.37.2.txt"), "registry.k8s.io", "registry.example:5000/k8s"),
			want: imageList{Repository: "registry.example:5000/k8s", Refs: map[string]string{
				"kube-apiserver":          "registry.example:5000/k8s/kube-apiserver:v1.37.2",
				"kube-controller-manager": "registry.example:5000/k8s/kube-controller-manager:v1.37.2",
				"kube-scheduler":          "registry.example:5000/k8s/kube-scheduler:v1.37.2",
				"etcd":                    "registry.example:5000/k8s/etcd:3.7.0-0",
				"coredns":                 "registry.example:5000/k8s/coredns/coredns:v1.14.6",
				"pause":                   "registry.example:5000/k8s/pause:3.10.2",
			}, Etcd: "3.7.0-0", CoreDNS: "v1.14.6", Pause: "3.10.2"}},
		{name: "placeholder version", out: strings.ReplaceAll(read("kubeadm-images-v1.37.2.txt"), "v1.37.2", "v1.0.0-placeholder-version"),
			version: "v1.37.2", err: "kubeadm reports the wrong version"},
		{name: "no etcd", out: "registry.k8s.io/kube-apiserver:v1.37.2\nregistry.k8s.io/kube-controller-manager:v1.37.2\nregistry.k8s.io/kube-scheduler:v1.37.2\nregistry.k8s.io/coredns/coredns:v1.14.6\nregistry.k8s.io/pause:3.10.2\n",
			version: "v1.37.2", err: "names no etcd image"},
		{name: "wrong kind", out: `{"kind":"Config","images":[]}`, version: "v1.37.2", err: "want Images"},
		{name: "untagged", out: "registry.k8s.io/pause\n", version: "v1.37.2", err: "no tag"},
		{name: "empty", out: "", version: "v1.37.2", err: "names no"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseImageList([]byte(tt.out), tt.version)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestKnownImagesMatchKubeadm(t *testing.T) {
	t.Parallel()
	got, ok := knownImages("v1.37.2")
	if !ok || !reflect.DeepEqual(got, want137) {
		t.Errorf("knownImages(v1.37.2) = %+v, %t; want what kubeadm lists, %+v", got, ok, want137)
	}
	if _, ok := knownImages("v1.99.0"); ok {
		t.Error("knownImages knows v1.99")
	}
}

func TestEtcdModuleVersion(t *testing.T) {
	t.Parallel()
	for tag, want := range map[string]string{"3.7.0-0": "v3.7.0", "3.5.24-0": "v3.5.24", "3.6.1": "v3.6.1", "latest": "", "3.7-0": ""} {
		got, err := etcdModuleVersion(tag)
		if got != want || (err != nil) != (want == "") {
			t.Errorf("etcdModuleVersion(%q) = %q, %v; want %q", tag, got, err, want)
		}
	}
}

// TestKubeadmImages runs a kubeadm: a script printing the list, one that
// fails, and a file this machine cannot execute (as a linux/amd64 kubeadm
// on a Mac), for which the known versions stand in.
func TestKubeadmImages(t *testing.T) {
	t.Parallel()
	list, err := os.ReadFile(filepath.Join("testdata", "kubeadm-images-v1.37.2.json"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, kubeadm, version string
		err                    string
	}{
		{name: "kubeadm", kubeadm: fakeKubeadm(string(list)), version: "v1.37.2"},
		{name: "cannot execute, known version", kubeadm: "\x7fELF not really", version: "v1.37.2"},
		{name: "cannot execute, unknown version", kubeadm: "\x7fELF not really", version: "v1.99.0", err: "exec format error"},
		{name: "kubeadm fails", kubeadm: "#!/bin/sh\necho 'unknown flag: --kubernetes-version' >&2\nexit 1\n", version: "v1.37.2", err: "unknown flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := writeFile(t, t.TempDir(), "kubeadm", tt.kubeadm, 0o755)
			got, err := kubeadmImages(context.Background(), p, tt.version, slog.New(slog.DiscardHandler))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want137) {
				t.Errorf("got %+v, want %+v", got, want137)
			}
		})
	}
}

// TestKubeadmImagesJustWritten: a kubeadm still open for writing (as it is
// for a moment when another goroutine forks right after this process wrote
// it) cannot start, with ETXTBSY; the list comes once it can.
func TestKubeadmImagesJustWritten(t *testing.T) {
	t.Parallel()
	list, err := os.ReadFile(filepath.Join("testdata", "kubeadm-images-v1.37.2.json"))
	if err != nil {
		t.Fatal(err)
	}
	p := writeFile(t, t.TempDir(), "kubeadm", fakeKubeadm(string(list)), 0o755)
	w, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := exec.Command(p).Run(); !errors.Is(err, syscall.ETXTBSY) {
		w.Close()
		t.Fatalf("exec of a file open for writing: %v, want ETXTBSY (the test proves nothing)", err)
	}
	time.AfterFunc(300*time.Millisecond, func() { w.Close() })
	got, err := kubeadmImages(context.Background(), p, "v1.37.2", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want137) {
		t.Errorf("got %+v, want %+v", got, want137)
	}
}

// fakeKubeadm is a kubeadm script that answers `config images list` with
// out and checks it was asked properly.
func fakeKubeadm(out string) string {
	return "#!/bin/sh\n" +
		`[ "$1 $2 $3 $4" = "config images list --kubernetes-version" ] || { echo "fake kubeadm: unexpected $*" >&2; exit 2; }` + "\n" +
		"cat <<'EOF'\n" + out + "\nEOF\n"
}
