package provider

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/blang/semver"
	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/integration"
	"github.com/pulumi/pulumi/sdk/v3/go/property"
	"golang.org/x/crypto/ssh"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/provisionhq/provision/bootstrap/sshtest"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/state"
)

// listed is a provider that has exactly the machines it was given.
type listed []providers.Machine

func (listed) Create(context.Context, []providers.MachineSpec) ([]providers.Machine, error) {
	return nil, providers.ErrCapacity
}

func (l listed) List(context.Context, providers.Selector) ([]providers.Machine, error) { return l, nil }

func (listed) Delete(context.Context, []providers.MachineID) error { return nil }

// adminConf is /etc/kubernetes/admin.conf as kubeadm writes it, the server
// being the node's own API address.
const adminConf = `apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0EtREFUQQ==
    server: https://10.0.0.5:6443
  name: kube
contexts:
- context:
    cluster: kube
    user: kubernetes-admin
  name: kubernetes-admin@kube
current-context: kubernetes-admin@kube
kind: Config
preferences: {}
users:
- name: kubernetes-admin
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
`

// TestReadKubeconfig: a refresh of a kubeadm cluster reads its admin
// kubeconfig from the control-plane node over SSH (an in-process server
// here) and returns it as a secret, pointing at the plan's endpoint or the
// node; a swarm has none; a control plane that does not answer keeps the
// kubeconfig read before.
func TestReadKubeconfig(t *testing.T) {
	tests := []struct {
		name       string
		kind       string
		kubernetes map[string]any
		reply      sshtest.Reply
		prior      string
		server     string // the kubeconfig's server; "" for no kubeconfig
		keep       bool   // the prior kubeconfig comes back unchanged
	}{
		{name: "kubeadm", kind: "kubeadm", reply: sshtest.Reply{Stdout: adminConf}, server: "https://127.0.0.1:6443"},
		{name: "kubeadm behind a load balancer", kind: "kubeadm", kubernetes: map[string]any{"endpoint": "api.example.com"},
			reply: sshtest.Reply{Stdout: adminConf}, server: "https://api.example.com:6443"},
		{name: "control plane not answering", kind: "kubeadm", reply: sshtest.Reply{Stderr: "No such file", Exit: 1},
			prior: "apiVersion: v1\nkind: Config\n", keep: true},
		{name: "swarm", kind: "swarm", reply: sshtest.Reply{Stdout: adminConf}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := generateKey()
			if err != nil {
				t.Fatal(err)
			}
			login, err := parseKey(key)
			if err != nil {
				t.Fatal(err)
			}
			_, hk, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			hostKey, err := ssh.NewSignerFromKey(hk)
			if err != nil {
				t.Fatal(err)
			}
			script := (&sshtest.Script{}).On("cat /etc/kubernetes/admin.conf", tt.reply)
			srv := sshtest.Start(t, sshtest.Options{HostKey: hostKey, AuthorizedKeys: []ssh.PublicKey{login.PublicKey()}, Script: script})
			host, portText, _ := net.SplitHostPort(srv.Addr)
			port, _ := strconv.Atoi(portText)

			const id = "kube-managers-ab12"
			reg := func() *providers.Registry {
				r := providers.NewRegistry()
				r.Register("docker", providers.Entry{New: func(context.Context, providers.Env) (providers.Provider, error) {
					return listed{{ID: id, ProviderID: "c0ffee", Cluster: "kube", Pool: "managers", Address: host, Port: port}}, nil
				}})
				return r
			}
			prov, err := New(Options{CacheDir: t.TempDir(), Registry: reg})
			if err != nil {
				t.Fatal(err)
			}
			s, err := integration.NewServer(t.Context(), Name, semver.MustParse("0.1.0"), integration.WithProvider(prov))
			if err != nil {
				t.Fatal(err)
			}
			urn := clusterURN("kube")
			in := map[string]any{"kind": tt.kind, "ssh": map[string]any{"privateKey": key},
				"pools": []any{pool("managers", "docker", "manager", 1)}}
			if tt.kubernetes != nil {
				in["kubernetes"] = tt.kubernetes
			}
			check, err := s.Check(p.CheckRequest{Urn: urn, Inputs: props(in)})
			if err != nil || len(check.Failures) > 0 {
				t.Fatalf("Check: %v %+v", err, check.Failures)
			}
			doc, err := json.Marshal(state.State{Version: state.Version, Serial: 3, Lineage: "l1", Cluster: "kube",
				Machines: []state.Machine{{ID: id, Pool: "managers", Provider: "docker", Role: "manager", ProviderID: "c0ffee",
					Address: host, Port: port, HostKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostKey.PublicKey()))),
					Phase: state.PhaseJoined, CreatedAt: time.Unix(1700000000, 0).UTC()}}})
			if err != nil {
				t.Fatal(err)
			}
			prior := check.Inputs.Set("nodes", property.New([]property.Value{})).
				Set("managerAddress", property.New(host)).Set("publicKey", property.New("")).
				Set("privateKey", property.New(key).WithSecret(true)).
				Set("workerJoinToken", property.New("").WithSecret(true)).
				Set("managerJoinToken", property.New("").WithSecret(true)).
				Set("kubeconfig", property.New(tt.prior).WithSecret(true)).
				Set("state", property.New(string(doc)))

			read, err := s.Read(p.ReadRequest{ID: "kube", Urn: urn, Properties: prior, Inputs: check.Inputs})
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			kc := read.Properties.Get("kubeconfig")
			if !kc.Secret() {
				t.Errorf("kubeconfig output is not secret")
			}
			switch {
			case tt.keep:
				if kc.AsString() != tt.prior {
					t.Fatalf("kubeconfig %q, want the prior one kept", kc.AsString())
				}
			case tt.server == "":
				if kc.AsString() != "" || len(script.Calls()) != 0 {
					t.Fatalf("kubeconfig %q after %d SSH commands; want none read", kc.AsString(), len(script.Calls()))
				}
			default:
				cfg, err := clientcmd.Load([]byte(kc.AsString()))
				if err != nil {
					t.Fatalf("kubeconfig output does not load: %v\n%s", err, kc.AsString())
				}
				cl, user := cfg.Clusters["kube"], cfg.AuthInfos["kubernetes-admin"]
				if cl == nil || cl.Server != tt.server || string(cl.CertificateAuthorityData) != "CA-DATA" ||
					user == nil || string(user.ClientKeyData) != "KEY" || cfg.CurrentContext != "kubernetes-admin@kube" {
					t.Fatalf("kubeconfig %+v: want admin.conf with server %s", cfg, tt.server)
				}
			}
			if n := nodesOf(t, read.Properties); len(n) != 1 || n[0].address != host {
				t.Fatalf("read nodes %+v, want the listed machine", n)
			}
		})
	}
}
