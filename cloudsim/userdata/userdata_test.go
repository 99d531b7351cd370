package userdata_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/provisionhq/provision/cloudsim/userdata"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/cloudinit"
	"github.com/provisionhq/provision/providers/hostkey"
)

var update = flag.Bool("update", false, "regenerate the golden user-data in testdata from the providers' code")

// goldenKeys are fixed host keys so the providers' user-data is
// reproducible (ssh.MarshalPrivateKey is not deterministic).
func goldenKeys(t *testing.T) []hostkey.Key {
	t.Helper()
	path := filepath.Join("testdata", "hostkeys.json")
	var keys []hostkey.Key
	if *update {
		for range 3 {
			k, err := hostkey.Generate()
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, k)
		}
		var raw []map[string]string
		for _, k := range keys {
			raw = append(raw, map[string]string{"private": string(k.PrivatePEM), "public": k.Public})
		}
		b, _ := json.MarshalIndent(raw, "", "  ")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return keys
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	var raw []map[string]string
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, r := range raw {
		keys = append(keys, hostkey.Key{PrivatePEM: []byte(r["private"]), Public: r["public"]})
	}
	return keys
}

// golden compares what the providers' code produces now with the stored
// input, so a change to what providers send shows up here and its decoded
// expectations get reviewed (-update rewrites the input).
func golden(t *testing.T, name string, produced []byte) []byte {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, produced, 0o644); err != nil {
			t.Fatal(err)
		}
		return produced
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if !bytes.Equal(produced, want) {
		t.Errorf("%s: the providers' user-data changed; review, then go test -update", name)
	}
	return want
}

// TestProviderUserData: what each provider sends for a batch of three,
// decoded as cloud-init on each instance would. AWS (RunInstances) and
// OpenStack (multi-create) share one gzipped MIME document, picked apart
// by launch index; GCE gives each instance its own metadata item and has no
// launch index.
func TestProviderUserData(t *testing.T) {
	keys := goldenKeys(t)
	login := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl login"
	specs := func(user string) []providers.MachineSpec {
		var out []providers.MachineSpec
		for i, k := range keys {
			out = append(out, providers.MachineSpec{ID: providers.MachineID(fmt.Sprintf("c-w-%d", i)), Cluster: "c", Pool: "w",
				SSHUser: user, AuthorizedKeys: []string{login}, HostKey: k})
		}
		return out
	}
	type instance struct {
		name        string
		data        []byte
		launchIndex int
		spec        providers.MachineSpec
	}
	var cases []instance
	for _, cloud := range []struct{ name, user string }{{"aws", "admin"}, {"openstack", "debian"}} {
		ss := specs(cloud.user)
		ud, err := cloudinit.MultiPart(ss) // as providers/aws and providers/openstack send a batch
		if err != nil {
			t.Fatal(err)
		}
		ud = golden(t, cloud.name+"-batch.userdata", ud)
		for i, s := range ss {
			cases = append(cases, instance{fmt.Sprintf("%s/%d", cloud.name, i), ud, i, s})
		}
	}
	for i, s := range specs("root") {
		ud, err := cloudinit.UserData(s) // providers/gcp: one metadata item per machine
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, instance{fmt.Sprintf("gcp/%d", i), golden(t, fmt.Sprintf("gcp-%d.userdata", i), ud), userdata.NoLaunchIndex, s})
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := userdata.Decode(tt.data, tt.launchIndex)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Hostname != string(tt.spec.ID) {
				t.Errorf("hostname %q, want %q", cfg.Hostname, tt.spec.ID)
			}
			hk, err := cfg.HostKey()
			if err != nil {
				t.Fatal(err)
			}
			if hk.Public != tt.spec.HostKey.Public || !bytes.Equal(hk.PrivatePEM, tt.spec.HostKey.PrivatePEM) {
				t.Errorf("host key %s, want this machine's %s", hk.Public, tt.spec.HostKey.Public)
			}
			u, ok := cfg.LoginUser()
			if !ok || u.Name != tt.spec.SSHUser || !slices.Equal(u.SSHAuthorizedKeys, tt.spec.AuthorizedKeys) {
				t.Errorf("login user %+v, want %s with %v", u, tt.spec.SSHUser, tt.spec.AuthorizedKeys)
			}
			if cfg.SSHDeleteKeys == nil || !*cfg.SSHDeleteKeys || cfg.SSHGenKeyTypes == nil || len(cfg.SSHGenKeyTypes) != 0 {
				t.Errorf("ssh_deletekeys %v, ssh_genkeytypes %v: the image's own host keys would survive", cfg.SSHDeleteKeys, cfg.SSHGenKeyTypes)
			}
		})
	}
}

func gz(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestDocumentedFormats: hand-written cases from cloud-init's user-data
// format documentation.
func TestDocumentedFormats(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	mimeDoc := read("docs-mime-launch-index.txt")
	type want struct {
		hostname   string
		users      []string
		runcmd     int
		writeFiles []string
		scripts    int
	}
	tests := []struct {
		name  string
		data  []byte
		index int
		want  want
	}{
		{"plain cloud-config", read("docs-cloud-config.txt"), 0, want{hostname: "plain", users: []string{"root"}}},
		{"gzip cloud-config", gz(t, read("docs-cloud-config.txt")), 0, want{hostname: "plain", users: []string{"root"}}},
		{"script", read("docs-script.txt"), 0, want{scripts: 1}},
		{"mime index 0: shared part and its own", mimeDoc, 0, want{hostname: "node-0", users: []string{"default", "ops"}, runcmd: 2}},
		{"mime index 1: base64 part, script", mimeDoc, 1, want{hostname: "node-1", users: []string{"default", "ops"}, runcmd: 2, writeFiles: []string{"/etc/node"}, scripts: 1}},
		{"mime index 2: shared part only", mimeDoc, 2, want{hostname: "shared", users: []string{"default", "ops"}, runcmd: 2}},
		{"mime without launch index: every part, later replaces", mimeDoc, userdata.NoLaunchIndex, want{hostname: "node-1", users: []string{"default", "ops"}, runcmd: 2, writeFiles: []string{"/etc/node"}, scripts: 1}},
		{"gzipped mime", gz(t, mimeDoc), 1, want{hostname: "node-1", users: []string{"default", "ops"}, runcmd: 2, writeFiles: []string{"/etc/node"}, scripts: 1}},
		{"launch-index key, other instance", read("docs-launch-index-key.txt"), 0, want{hostname: "everyone"}},
		{"launch-index key, its instance", read("docs-launch-index-key.txt"), 5, want{hostname: "five"}},
		{"empty", nil, 0, want{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := userdata.Decode(tt.data, tt.index)
			if err != nil {
				t.Fatal(err)
			}
			var users, files []string
			for _, u := range cfg.Users {
				users = append(users, u.Name)
			}
			for _, f := range cfg.WriteFiles {
				files = append(files, f.Path)
			}
			got := want{cfg.Hostname, users, len(cfg.RunCmd), files, len(cfg.Scripts)}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("decoded %+v, want %+v", got, tt.want)
			}
		})
	}
	cfg, err := userdata.Decode(mimeDoc, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := [][]string{{"sh", "-c", "echo shared"}, {"touch", "/tmp/argv"}}; fmt.Sprint(cfg.RunCmd) != fmt.Sprint(want) {
		t.Errorf("runcmd %q, want %q (strings run by sh, lists as argv)", cfg.RunCmd, want)
	}
	if u, ok := cfg.LoginUser(); !ok || u.Name != "ops" || !slices.Equal(u.SSHAuthorizedKeys, []string{"ssh-ed25519 AAAAshared"}) {
		t.Errorf("login user %+v, want ops (\"default\" is cloud-init's placeholder)", u)
	}
}

func TestRefused(t *testing.T) {
	t.Parallel()
	k, err := hostkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	other, err := hostkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data string
		want error
	}{
		{"include", "#include\nhttp://example.com/ud\n", userdata.ErrUnsupported},
		{"boothook", "#cloud-boothook\necho\n", userdata.ErrUnsupported},
		{"merge_how", "#cloud-config\nmerge_how: list(append)\n", userdata.ErrUnsupported},
		{"untyped text", "hello\n", userdata.ErrUnsupported},
		{"bad yaml", "#cloud-config\nusers: [\n", userdata.ErrMalformed},
		{"truncated gzip", string(gz(t, []byte("#cloud-config\n"))[:8]), userdata.ErrMalformed},
		{"multipart without boundary", "Content-Type: multipart/mixed\n\n--x--\n", userdata.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := userdata.Decode([]byte(tt.data), 0); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
	// A host key whose halves disagree would fail every pinned dial: the
	// decoder says so instead of starting a host nobody can verify.
	cc := fmt.Sprintf("#cloud-config\nssh_keys:\n  ed25519_private: |\n%s  ed25519_public: %s\n", indent(string(k.PrivatePEM)), other.Public)
	cfg, err := userdata.Decode([]byte(cc), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.HostKey(); !errors.Is(err, hostkey.ErrMismatch) {
		t.Errorf("mismatched host key halves: %v, want ErrMismatch", err)
	}
}

func indent(s string) string {
	var b bytes.Buffer
	for _, l := range bytes.SplitAfter([]byte(s), []byte("\n")) {
		if len(l) > 0 {
			b.WriteString("    ")
			b.Write(l)
		}
	}
	return b.String()
}
