package openstack_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/provisionhq/provision/cloudsim"
	simos "github.com/provisionhq/provision/cloudsim/openstack"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// wire talks to the emulator as raw HTTP, so the tests see the bodies and
// codes a client gets, with no SDK decoding in between.
type wire struct {
	t     *testing.T
	url   string
	token string
}

func newWire(t *testing.T, opts simos.Options) *wire {
	t.Helper()
	opts.PublicURL = "http://cloudsim.test"
	srv := simos.New(cloudsim.NewSim(cloudsim.Faults{}, 1), opts)
	ts := httptest.NewServer(srv)
	t.Cleanup(func() { ts.Close(); srv.Close() })
	w := &wire{t: t, url: ts.URL}
	code, _, h := w.do("POST", "/identity/v3/auth/tokens", nil, passwordAuth("Default"))
	if code != http.StatusCreated {
		t.Fatalf("password auth: %d", code)
	}
	w.token = h.Get("X-Subject-Token")
	return w
}

func passwordAuth(domain string) string {
	return fmt.Sprintf(`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"demo","password":"pw","domain":{"name":%q}}}},
		"scope":{"project":{"name":"demo","domain":{"name":"Default"}}}}}`, domain)
}

func (w *wire) do(method, path string, header map[string]string, body string) (int, string, http.Header) {
	w.t.Helper()
	req, err := http.NewRequestWithContext(w.t.Context(), method, w.url+path, strings.NewReader(body))
	if err != nil {
		w.t.Fatal(err)
	}
	if w.token != "" {
		req.Header.Set("X-Auth-Token", w.token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), resp.Header
}

// decode reads one field path out of a JSON body.
func decode(t *testing.T, body string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
}

const testPublicKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOCVWOxAMGFthx7+Gy6kuoBMQ8aVGjc1t+IrrklOzBGe test@cloudsim"

// TestWireGolden pins discovery documents and every error a client can
// get for a bad reference or request, byte for byte, in testdata/.
func TestWireGolden(t *testing.T) {
	w := newWire(t, simos.Options{})
	v238 := map[string]string{"OpenStack-API-Version": "compute 2.38"}
	server := func(extra string) string {
		return `{"server":{"name":"s","flavorRef":"2","imageRef":"` + simos.ImageDebian12 + `"` + extra + `}}`
	}
	cases := []struct {
		name, method, path string
		header             map[string]string
		body               string
	}{
		{"keystone root", "GET", "/identity", nil, ""},
		{"keystone v3", "GET", "/identity/v3", nil, ""},
		{"nova root", "GET", "/compute/", nil, ""},
		{"nova v2.1", "GET", "/compute/v2.1/", nil, ""},
		{"neutron root", "GET", "/network/", nil, ""},
		{"microversion too new", "GET", "/compute/v2.1/flavors", map[string]string{"X-OpenStack-Nova-API-Version": "2.99"}, ""},
		{"microversion malformed", "GET", "/compute/v2.1/flavors", map[string]string{"OpenStack-API-Version": "compute two"}, ""},
		{"keypair import 2.38", "POST", "/compute/v2.1/os-keypairs", v238, `{"keypair":{"name":"k1","public_key":"` + testPublicKey + `"}}`},
		{"keypair duplicate", "POST", "/compute/v2.1/os-keypairs", nil, `{"keypair":{"name":"k1","public_key":"` + testPublicKey + `"}}`},
		{"keypair bad name", "POST", "/compute/v2.1/os-keypairs", nil, `{"keypair":{"name":"k/1","public_key":"` + testPublicKey + `"}}`},
		{"keypair bad key", "POST", "/compute/v2.1/os-keypairs", nil, `{"keypair":{"name":"k2","public_key":"ssh-rsa nonsense"}}`},
		{"keypair list 2.1", "GET", "/compute/v2.1/os-keypairs", nil, ""},
		{"keypair missing", "GET", "/compute/v2.1/os-keypairs/nope", nil, ""},
		{"server unknown flavor", "POST", "/compute/v2.1/servers", nil, `{"server":{"name":"s","flavorRef":"m9.huge","imageRef":"` + simos.ImageDebian12 + `"}}`},
		{"server unknown image", "POST", "/compute/v2.1/servers", nil, `{"server":{"name":"s","flavorRef":"2","imageRef":"windows"}}`},
		{"server unknown key", "POST", "/compute/v2.1/servers", nil, server(`,"key_name":"nope"`)},
		{"server unknown network", "POST", "/compute/v2.1/servers", nil, server(`,"networks":[{"uuid":"00000000-0000-4000-8000-000000000000"}]`)},
		{"server unknown group", "POST", "/compute/v2.1/servers", nil, server(`,"security_groups":[{"name":"web"}]`)},
		{"server no networks at 2.37+", "POST", "/compute/v2.1/servers", v238, server("")},
		{"server action unknown", "POST", "/compute/v2.1/servers/00000000-0000-4000-8000-000000000000/action", nil, `{"os-stop":null}`},
		{"network by name is not an ID", "GET", "/network/v2.0/networks/private", nil, ""},
		{"rule bad direction", "POST", "/network/v2.0/security-group-rules", nil, `{"security_group_rule":{"security_group_id":"x","direction":"sideways"}}`},
		{"rule ports without protocol", "POST", "/network/v2.0/security-group-rules", nil, `{"security_group_rule":{"security_group_id":"x","direction":"ingress","port_range_min":22,"port_range_max":22}}`},
		{"rule ethertype conflict", "POST", "/network/v2.0/security-group-rules", nil, `{"security_group_rule":{"security_group_id":"x","direction":"ingress","remote_ip_prefix":"::/0"}}`},
		{"rule unknown group", "POST", "/network/v2.0/security-group-rules", nil, `{"security_group_rule":{"security_group_id":"x","direction":"ingress","protocol":"tcp","port_range_min":22,"port_range_max":22}}`},
		{"group named default", "POST", "/network/v2.0/security-groups", nil, `{"security_group":{"name":"default"}}`},
		{"floating ip on a private network", "POST", "/network/v2.0/floatingips", nil, `{"floatingip":{"floating_network_id":"` + simos.NetworkPrivate + `"}}`},
		{"floating ip unknown port", "POST", "/network/v2.0/floatingips", nil, `{"floatingip":{"floating_network_id":"` + simos.NetworkPublic + `","port_id":"nope"}}`},
	}
	var got strings.Builder
	for _, c := range cases {
		code, body, h := w.do(c.method, c.path, c.header, c.body)
		fmt.Fprintf(&got, "## %s: %s %s\n%d", c.name, c.method, c.path, code)
		if v := h.Get("OpenStack-API-Version"); v != "" {
			fmt.Fprintf(&got, " OpenStack-API-Version: %s", v)
		}
		fmt.Fprintf(&got, "\n%s\n\n", body)
	}
	golden := filepath.Join("testdata", "wire.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got.String() != string(want) {
		t.Errorf("wire answers differ from %s (run with -update and review the diff):\n%s", golden, got.String())
	}
}

func TestKeystoneRefusesAnUnknownDomain(t *testing.T) {
	w := newWire(t, simos.Options{})
	w.token = ""
	for _, c := range []struct {
		domain string
		want   int
	}{{"Default", http.StatusCreated}, {"Elsewhere", http.StatusUnauthorized}} {
		if code, body, _ := w.do("POST", "/identity/v3/auth/tokens", nil, passwordAuth(c.domain)); code != c.want {
			t.Errorf("password auth in domain %s: %d %s, want %d", c.domain, code, body, c.want)
		}
	}
}

// powerBacking is a backing whose hosts power off and on; power on moves
// the host to a new address, as a cloud's public address may.
type powerBacking struct {
	mu    sync.Mutex
	boots map[string]cloudsim.Boot
	ons   int
}

func (b *powerBacking) Start(_ context.Context, id string, boot cloudsim.Boot) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.boots[id] = boot
	return "10.1.0.2", nil
}
func (b *powerBacking) Stop(context.Context, string) error     { return nil }
func (b *powerBacking) PowerOff(context.Context, string) error { return nil }
func (b *powerBacking) PowerOn(context.Context, string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ons++
	return fmt.Sprintf("10.1.0.%d", 2+b.ons), nil
}

type serverView struct {
	Server struct {
		ID        string                      `json:"id"`
		Status    string                      `json:"status"`
		Addresses map[string][]map[string]any `json:"addresses"`
		Fault     map[string]any              `json:"fault"`
		Groups    []map[string]string         `json:"security_groups"`
		Other     map[string]json.RawMessage  `json:"-"`
	} `json:"server"`
}

func (w *wire) waitServer(id, status string) serverView {
	w.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var v serverView
		code, body, _ := w.do("GET", "/compute/v2.1/servers/"+id, nil, "")
		if code == http.StatusOK {
			decode(w.t, body, &v)
			if v.Server.Status == status {
				return v
			}
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("server %s: %d %s, want status %s", id, code, body, status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestKeyPairServerPowerAndFloatingIP: a generated key pair's private key
// matches its public key; a server booted with it hands the key to the
// image's default user; os-stop/os-start go through the backing's power;
// a floating IP associated with the server's port shows in its addresses
// as the backed host's own address; deleting the server frees it.
func TestKeyPairServerPowerAndFloatingIP(t *testing.T) {
	back := &powerBacking{boots: map[string]cloudsim.Boot{}}
	w := newWire(t, simos.Options{Backing: back})

	code, body, _ := w.do("POST", "/compute/v2.1/os-keypairs", nil, `{"keypair":{"name":"gen"}}`)
	var kp struct {
		Keypair struct{ PublicKey, PrivateKey string } `json:"keypair"`
	}
	decode(t, strings.NewReplacer(`"public_key"`, `"PublicKey"`, `"private_key"`, `"PrivateKey"`).Replace(body), &kp)
	if code != http.StatusOK || kp.Keypair.PrivateKey == "" {
		t.Fatalf("generate key pair: %d %s", code, body)
	}
	signer, err := ssh.ParsePrivateKey([]byte(kp.Keypair.PrivateKey))
	if err != nil {
		t.Fatalf("generated private key: %v", err)
	}
	if got := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))); !strings.HasPrefix(kp.Keypair.PublicKey, got) {
		t.Errorf("generated public key %q does not match the private key (%q)", kp.Keypair.PublicKey, got)
	}

	code, body, _ = w.do("POST", "/compute/v2.1/servers", nil, `{"server":{"name":"s","flavorRef":"2","imageRef":"`+simos.ImageDebian12+`","key_name":"gen"}}`)
	if code != http.StatusAccepted {
		t.Fatalf("create: %d %s", code, body)
	}
	var created serverView
	decode(t, body, &created)
	id := created.Server.ID
	v := w.waitServer(id, "ACTIVE")
	back.mu.Lock()
	boot := back.boots[id]
	back.mu.Unlock()
	if len(boot.PublicKeys) != 1 || boot.PublicKeys[0] != kp.Keypair.PublicKey || boot.KeyUser != "debian" {
		t.Errorf("backing boot keys %v for %q, want the key pair for debian", boot.PublicKeys, boot.KeyUser)
	}
	if len(v.Server.Groups) != 1 || v.Server.Groups[0]["name"] != "default" {
		t.Errorf("security groups %v, want default", v.Server.Groups)
	}

	// Power: stop, a second stop conflicts, start moves the address.
	if code, body, _ := w.do("POST", "/compute/v2.1/servers/"+id+"/action", nil, `{"os-stop":null}`); code != http.StatusAccepted {
		t.Fatalf("os-stop: %d %s", code, body)
	}
	w.waitServer(id, "SHUTOFF")
	if code, body, _ := w.do("POST", "/compute/v2.1/servers/"+id+"/action", nil, `{"os-stop":null}`); code != http.StatusConflict ||
		!strings.Contains(body, "while it is in vm_state stopped") {
		t.Errorf("os-stop of a stopped server: %d %s, want 409 conflictingRequest", code, body)
	}
	if code, body, _ := w.do("POST", "/compute/v2.1/servers/"+id+"/action", nil, `{"os-start":null}`); code != http.StatusAccepted {
		t.Fatalf("os-start: %d %s", code, body)
	}
	v = w.waitServer(id, "ACTIVE")
	if a := v.Server.Addresses["private"]; len(a) != 1 || a[0]["addr"] != "10.1.0.3" {
		t.Errorf("addresses after start %v, want the powered-on host's 10.1.0.3", v.Server.Addresses)
	}

	// Floating IP: associate with the server's port.
	code, body, _ = w.do("GET", "/network/v2.0/ports?device_id="+id, nil, "")
	var ports struct {
		Ports []struct{ ID string } `json:"ports"`
	}
	decode(t, body, &ports)
	if code != http.StatusOK || len(ports.Ports) != 1 {
		t.Fatalf("ports of the server: %d %s", code, body)
	}
	code, body, _ = w.do("POST", "/network/v2.0/floatingips", nil, `{"floatingip":{"floating_network_id":"`+simos.NetworkPublic+`"}}`)
	var fip struct {
		FloatingIP struct {
			ID      string `json:"id"`
			Address string `json:"floating_ip_address"`
			Port    any    `json:"port_id"`
		} `json:"floatingip"`
	}
	decode(t, body, &fip)
	if code != http.StatusCreated || fip.FloatingIP.Address != "172.24.4.11" {
		t.Fatalf("floating ip create: %d %s", code, body)
	}
	code, body, _ = w.do("PUT", "/network/v2.0/floatingips/"+fip.FloatingIP.ID, nil, `{"floatingip":{"port_id":"`+ports.Ports[0].ID+`"}}`)
	decode(t, body, &fip)
	if code != http.StatusOK || fip.FloatingIP.Address != "10.1.0.3" {
		t.Errorf("associate: %d %s, want the backed host's own address (no NAT in cloudsim)", code, body)
	}
	v = w.waitServer(id, "ACTIVE")
	if a := v.Server.Addresses["private"]; len(a) != 2 || a[1]["OS-EXT-IPS:type"] != "floating" {
		t.Errorf("addresses %v, want a fixed and a floating entry", v.Server.Addresses)
	}

	// The project's default group cannot be deleted; deleting the server
	// frees the floating IP.
	code, body, _ = w.do("GET", "/network/v2.0/security-groups?name=default", nil, "")
	var groups struct {
		Groups []struct{ ID string } `json:"security_groups"`
	}
	decode(t, body, &groups)
	if code != http.StatusOK || len(groups.Groups) != 1 {
		t.Fatalf("default groups: %d %s", code, body)
	}
	if code, body, _ := w.do("DELETE", "/network/v2.0/security-groups/"+groups.Groups[0].ID, nil, ""); code != http.StatusConflict ||
		!strings.Contains(body, "SecurityGroupCannotRemoveDefault") {
		t.Errorf("delete default group: %d %s, want 409", code, body)
	}
	if code, body, _ := w.do("DELETE", "/compute/v2.1/servers/"+id, nil, ""); code != http.StatusNoContent {
		t.Fatalf("delete server: %d %s", code, body)
	}
	_, body, _ = w.do("GET", "/network/v2.0/floatingips/"+fip.FloatingIP.ID, nil, "")
	decode(t, body, &fip)
	if fip.FloatingIP.Port != nil || fip.FloatingIP.Address != "172.24.4.11" {
		t.Errorf("floating ip after server delete: %s, want unassociated at its own address", body)
	}
}
