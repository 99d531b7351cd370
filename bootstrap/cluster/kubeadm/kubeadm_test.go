package kubeadm

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisionhq/provision/bootstrap"
	"github.com/provisionhq/provision/bootstrap/artifacts"
	"github.com/provisionhq/provision/bootstrap/cluster"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func testDriver(endpoint string) *Driver {
	return New(Config{
		ClusterName: "k8s", Version: "v1.37.2", Endpoint: endpoint,
		PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12",
		Bundle: &artifacts.Bundle{ID: "abc123def456", ImageRepository: "registry.k8s.io",
			Images: map[string]string{"pause": "registry.k8s.io/pause:3.10.2", "coredns": "registry.k8s.io/coredns/coredns:v1.14.6"}},
	})
}

func TestConfigs(t *testing.T) {
	t.Parallel()
	cp := cluster.Node{Name: "k8s-cp-1", Address: "10.0.0.2", Role: "manager"}
	cpPublic := cp
	cpPublic.PublicAddress = "203.0.113.7"
	worker := cluster.Node{Name: "k8s-gpu-1", Address: "10.0.0.3", Role: "worker",
		Taints: []cluster.Taint{{Key: "dedicated", Value: "gpu", Effect: "NoSchedule"}}}
	cred := joinCredential{Token: "abcdef.0123456789abcdef", CACertHash: "sha256:00ff", CertificateKey: "c0ffee"}
	cases := []struct {
		name string
		gen  func() ([]byte, error)
	}{
		{"init-local-lb.golden", func() ([]byte, error) { return testDriver("").initConfig(cp) }},
		{"init-endpoint.golden", func() ([]byte, error) { return testDriver("api.example.com").initConfig(cpPublic) }},
		{"join-worker.golden", func() ([]byte, error) { return testDriver("").joinConfig(worker, cp, cred) }},
		{"join-control-plane.golden", func() ([]byte, error) {
			n := cp
			n.Name, n.Address = "k8s-cp-2", "10.0.0.4"
			return testDriver("").joinConfig(n, cp, cred)
		}},
		{"kube-proxy.golden", func() ([]byte, error) { return testDriver("").proxyConfig(worker) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b, err := c.gen()
			if err != nil {
				t.Fatal(err)
			}
			golden(t, c.name, b)
		})
	}
}

func TestJoinConfigNeedsCertificateKeyForControlPlane(t *testing.T) {
	t.Parallel()
	n := cluster.Node{Name: "cp-2", Address: "10.0.0.4", Role: "manager"}
	_, err := testDriver("").joinConfig(n, n, joinCredential{Token: "t", CACertHash: "h"})
	if err == nil || !strings.Contains(err.Error(), "certificate key") {
		t.Fatalf("want a missing certificate key error, got %v", err)
	}
}

// fakeNode answers commands by the first matching prefix and records them.
type fakeNode struct {
	mu      sync.Mutex
	ran     []string
	stdin   map[string]string // command → what it was fed
	answers []answer
}

type answer struct {
	match string // substring of the command
	out   string
	exit  int
}

type exitErr int

func (e exitErr) Error() string   { return fmt.Sprintf("exit status %d", int(e)) }
func (e exitErr) ExitStatus() int { return int(e) }

func (f *fakeNode) Run(_ context.Context, cmd string, stdin io.Reader, stdout io.Writer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ran = append(f.ran, cmd)
	if stdin != nil {
		b, _ := io.ReadAll(stdin)
		if f.stdin == nil {
			f.stdin = map[string]string{}
		}
		f.stdin[cmd] = string(b)
	}
	for _, a := range f.answers {
		if strings.Contains(cmd, a.match) {
			if stdout != nil {
				io.WriteString(stdout, a.out)
			}
			if a.exit != 0 {
				return exitErr(a.exit)
			}
			return nil
		}
	}
	return nil
}

func (f *fakeNode) ranMatching(s string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.ran {
		if strings.Contains(c, s) {
			out = append(out, c)
		}
	}
	return out
}

func TestInit(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		answers   []answer
		wantInit  bool
		wantReset bool
	}{
		{"fresh node", []answer{{match: "test -f " + doneMarker, exit: 1}, {match: "ls /etc/kubernetes/manifests", exit: 2}, {match: "test -d /run/systemd", exit: 1}}, true, false},
		{"interrupted init is reset first", []answer{{match: "test -f " + doneMarker, exit: 1}, {match: "test -d /run/systemd", exit: 1}}, true, true},
		{"done before: services only", []answer{{match: "test -d /run/systemd", exit: 1}}, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeNode{answers: c.answers}
			n := cluster.Node{Name: "cp-1", Address: "10.0.0.2", Role: "manager", Run: f, Labels: map[string]string{"provision.pool": "cp"}}
			if err := testDriver("").Init(context.Background(), n); err != nil {
				t.Fatal(err)
			}
			if got := len(f.ranMatching("kubeadm init --config")) == 1; got != c.wantInit {
				t.Errorf("kubeadm init ran: %v, want %v; commands:\n%s", got, c.wantInit, strings.Join(f.ran, "\n"))
			}
			if got := len(f.ranMatching("kubeadm reset -f")) > 0; got != c.wantReset {
				t.Errorf("reset ran: %v, want %v", got, c.wantReset)
			}
			if len(f.ranMatching("provision-service restart node-sync")) == 0 && len(f.ranMatching("provision-service start node-sync")) == 0 {
				t.Error("node-sync service not started")
			}
			if len(f.ranMatching("label node --overwrite 'cp-1' 'provision.pool=cp'")) != 1 {
				t.Errorf("pool label not set; commands:\n%s", strings.Join(f.ran, "\n"))
			}
		})
	}
}

func testCA(t *testing.T) ([]byte, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubernetes"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(spki)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), "sha256:" + hex.EncodeToString(sum[:])
}

func TestCredential(t *testing.T) {
	t.Parallel()
	ca, hash := testCA(t)
	mgr := &fakeNode{answers: []answer{
		{match: "kubeadm token create", out: "abcdef.0123456789abcdef\n"},
		{match: "cat /etc/kubernetes/pki/ca.crt", out: string(ca)},
		{match: "upload-certs", out: "[upload-certs] Storing the certificates\n[upload-certs] Using certificate key:\n9f1e2d3c4b5a\n"},
	}}
	d := testDriver("")
	for _, role := range []string{"worker", "manager"} {
		cred, err := d.Credential(context.Background(), cluster.Node{Name: "cp-1", Run: mgr}, role)
		if err != nil {
			t.Fatal(err)
		}
		var c joinCredential
		if err := json.Unmarshal([]byte(cred.Secret()), &c); err != nil {
			t.Fatal(err)
		}
		if c.Token != "abcdef.0123456789abcdef" || c.CACertHash != hash {
			t.Errorf("%s: credential %+v, want the token and CA hash %s", role, c, hash)
		}
		if want := map[string]string{"worker": "", "manager": "9f1e2d3c4b5a"}[role]; c.CertificateKey != want {
			t.Errorf("%s: certificate key %q, want %q", role, c.CertificateKey, want)
		}
		if strings.Contains(fmt.Sprint(cred), c.Token) {
			t.Error("the credential prints its token")
		}
	}
	if _, err := d.Credential(context.Background(), cluster.Node{Run: mgr}, "boss"); err == nil {
		t.Error("an unknown role was accepted")
	}
}

func TestJoinKeepsTokenOffArgvAndOutOfErrors(t *testing.T) {
	t.Parallel()
	token := "abcdef.0123456789abcdef"
	cred, _ := json.Marshal(joinCredential{Token: token, CACertHash: "sha256:00"})
	n := &fakeNode{answers: []answer{
		{match: "test -f " + doneMarker, exit: 1},
		{match: "ls /etc/kubernetes/manifests", exit: 2},
		{match: "test -d /run/systemd", exit: 1},
		{match: "kubeadm join", out: "", exit: 1},
	}}
	mgr := &fakeNode{answers: []answer{{match: "get nodes -o json", out: `{"items":[{"metadata":{"name":"cp-1","labels":{"node-role.kubernetes.io/control-plane":""}},"status":{"addresses":[{"type":"InternalIP","address":"10.0.0.2"}]}}]}`}}}
	err := testDriver("").Join(context.Background(),
		cluster.Node{Name: "w-1", Address: "10.0.0.3", Role: "worker", Run: n},
		cluster.Node{Name: "cp-1", Address: "10.0.0.2", Role: "manager", Run: mgr},
		cluster.NewCredential(string(cred)))
	if err == nil {
		t.Fatal("a failed kubeadm join returned no error")
	}
	for _, c := range append(n.ran, mgr.ran...) {
		if strings.Contains(c, token) {
			t.Errorf("token in a command line: %s", c)
		}
	}
	var fed bool
	for _, in := range n.stdin {
		fed = fed || strings.Contains(in, token)
	}
	if !fed {
		t.Error("the token never reached the node on stdin")
	}
	if j := n.ranMatching("kubeadm join"); len(j) != 1 || !strings.Contains(j[0], "rm -f "+joinConf) {
		t.Errorf("join must remove its config (it holds the token) whatever happens: %q", j)
	}
	if lb := n.stdin["provision-node-sync write-lb"]; lb != "cp-1 10.0.0.2\n" {
		t.Errorf("local balancer got %q, want the control-plane node", lb)
	}
}

func TestMembers(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("testdata/nodes.json")
	if err != nil {
		t.Fatal(err)
	}
	mgr := &fakeNode{answers: []answer{{match: "get nodes -o json", out: string(b)}}}
	got, err := testDriver("").Members(context.Background(), cluster.Node{Name: "cp-1", Run: mgr})
	if err != nil {
		t.Fatal(err)
	}
	want := []cluster.Member{
		{Name: "k8s-cp-1", Role: "manager", Status: "ready", Availability: "active"},
		{Name: "k8s-workers-1", Role: "worker", Status: "notready", Availability: "active"},
		{Name: "k8s-workers-2", Role: "worker", Status: "ready", Availability: "drain"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("members\n got %+v\nwant %+v", got, want)
	}
}

// The plan's image archives reach every node on stdin, are imported and
// kept where an in-cluster autoscaler finds them, and a node that has one
// is not sent it again.
func TestPlanImagesStep(t *testing.T) {
	t.Parallel()
	archive := filepath.Join(t.TempDir(), "hello.tar")
	if err := os.WriteFile(archive, []byte("image archive bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := testDriver("")
	d.cfg.Images = []string{archive}
	step := d.imagesStep()

	fresh := &fakeNode{answers: []answer{{match: "test -f /var/lib/provision/images/", exit: 1}}}
	h := &bootstrap.Host{Name: "w-1", Run: fresh}
	if done, err := step.Check(context.Background(), h); err != nil || done {
		t.Fatalf("check on a fresh node: done=%v err=%v", done, err)
	}
	if err := step.Apply(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	var cmd string
	for c, in := range fresh.stdin {
		if in == "image archive bytes" {
			cmd = c
		}
	}
	if cmd == "" {
		t.Fatalf("the archive never went to the node on stdin: %v", fresh.ran)
	}
	for _, want := range []string{NodeArtifacts + "/plan-images/hello.tar", "ctr -n k8s.io images import"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("import command %q lacks %q", cmd, want)
		}
	}

	imported := &fakeNode{}
	if done, err := step.Check(context.Background(), &bootstrap.Host{Name: "w-2", Run: imported}); err != nil || !done {
		t.Errorf("check on a node that has it: done=%v err=%v", done, err)
	}
}
