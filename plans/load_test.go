package plans

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/builtin"
)

var update = flag.Bool("update", false, "rewrite testdata/invalid/*.golden")

// knownProviders stands in for the built-in registry where a test is about
// the plan itself: it knows the names and accepts any settings.
type knownProviders []string

func (k knownProviders) Has(name string) bool {
	for _, n := range k {
		if n == name {
			return true
		}
	}
	return false
}

func (k knownProviders) Names() []string { return k }

func (k knownProviders) CheckSettings(string, providers.Settings) []providers.SettingError {
	return nil
}

func (k knownProviders) Spot(string) bool { return false }

var testOpts = Options{Providers: knownProviders{"aws", "docker", "gcp", "openstack", "static"}}

// TestLoadInvalid loads every testdata/invalid/*.yaml and compares the whole
// error text with its .golden file; -update rewrites them.
func TestLoadInvalid(t *testing.T) {
	// The goldens assume neither is set.
	t.Setenv("PROVISION_ETCD_ENDPOINTS", "")
	t.Setenv("PROVISION_ETCD_PASSWORD", "")
	files, err := filepath.Glob(filepath.Join("testdata", "invalid", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no invalid plans found: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			// The real registry: the settings-* plans are about the
			// providers' own settings checks.
			p, err := Load(file, Options{Providers: builtin.Registry()})
			if err == nil {
				t.Fatalf("Load(%s) = %+v, want an error", file, p)
			}
			checkErr(t, err)
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("Load(%s) error:\n%s\nwant:\n%s", file, got, want)
			}
		})
	}
}

// checkErr asserts the error contract: an ErrorList of *Error, each with a
// position, reachable with errors.As.
func checkErr(t *testing.T, err error) {
	t.Helper()
	var list ErrorList
	if !errors.As(err, &list) || len(list) == 0 {
		t.Fatalf("error %T is not a non-empty ErrorList: %v", err, err)
	}
	var first *Error
	if !errors.As(err, &first) || first != list[0] {
		t.Errorf("errors.As(*Error) did not find the first error of the list")
	}
	for i, e := range list {
		if e.Line < 1 || e.Col < 0 || e.File == "" || e.Msg == "" {
			t.Errorf("error without a position: %#v", e)
		}
		if i > 0 && (e.Line < list[i-1].Line || e.Line == list[i-1].Line && e.Col < list[i-1].Col) {
			t.Errorf("errors not sorted by position: %v before %v", list[i-1], e)
		}
	}
}

// withHome points $HOME at a temporary directory holding ~/.ssh/bastion, the
// key full.yaml names, so "~" expansion and the key check run for real.
func withHome(t *testing.T) string {
	home := t.TempDir()
	t.Setenv("HOME", home)
	if err := os.Mkdir(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".ssh", "bastion"), []byte("placeholder\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return home
}

func TestLoadValid(t *testing.T) {
	home := withHome(t)
	dir := filepath.Join("testdata", "valid")
	tests := []struct {
		file string
		want *Plan
	}{
		{"minimal.yaml", &Plan{
			Version: 1,
			Cluster: Cluster{Name: "dev", Kind: "swarm"},
			SSH:     SSH{User: "root", Port: 22},
			State:   StateConf{Backend: "file"},
			Pools:   []Pool{{Name: "managers", Provider: "docker", Count: 1, Role: providers.RoleManager}},
		}},
		{"full.yaml", &Plan{
			Version: 1,
			Cluster: Cluster{Name: "prod-eu", Kind: "swarm"},
			SSH: SSH{
				User: "admin",
				Key:  filepath.Join(dir, "id_test"),
				Port: 2222,
				Bastion: &Bastion{
					Host:    "bastion.example.com",
					Port:    22,
					User:    "admin",
					Key:     filepath.Join(home, ".ssh", "bastion"),
					HostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICG2OUdC/c1RIELywEjRuBjrxazNfCDIrKzuXdcYQxh4 bastion",
				},
			},
			State: StateConf{Backend: "file", Path: filepath.Join(dir, "state", "prod-eu")},
			Pools: []Pool{
				{Name: "managers", Provider: "aws", Role: providers.RoleManager, Count: 3, Settings: providers.Settings{
					"region": "eu-west-1", "instance_type": "t3.small",
					"volumes": []any{map[string]any{"size": 20, "type": "gp3"}},
				}},
				{Name: "workers", Provider: "gcp", Role: providers.RoleWorker, Count: 0, Settings: providers.Settings{
					"region": "eu-west-1", "instance_type": "t3.large",
					"volumes": []any{map[string]any{"size": 20, "type": "gp3"}},
				}, Labels: map[string]string{"tier": "app", "2024": "yes"}},
			},
		}},
		{"etcd.yaml", &Plan{
			Version: 1,
			Cluster: Cluster{Name: "team", Kind: "swarm"},
			SSH:     SSH{User: "root", Port: 22},
			State: StateConf{
				Backend:   "etcd",
				Endpoints: []string{"https://etcd-1.example.com:2379", "etcd-2.example.com:2379"},
				Prefix:    "/teams/infra",
				TLS: &StateTLS{
					CA:   filepath.Join("testdata", "tls", "ca.pem"),
					Cert: filepath.Join("testdata", "tls", "client.pem"),
					Key:  filepath.Join("testdata", "tls", "client-key.pem"),
				},
				Username:     "provision",
				PasswordFile: filepath.Join(dir, "etcd-password"),
			},
			Pools: []Pool{{Name: "managers", Provider: "docker", Count: 1, Role: providers.RoleManager}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join(dir, tt.file)
			got, err := Load(path, testOpts)
			if err != nil {
				t.Fatalf("Load(%s): %v", path, err)
			}
			tt.want.Path = path
			got.pos = nil // positions are checked in TestPosition
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Load(%s) =\n%#v\nwant\n%#v", path, got, tt.want)
			}
		})
	}
}

func TestLoadNilProvidersSkipsCheck(t *testing.T) {
	data := []byte("cluster: {name: dev}\npools: [{name: m, provider: nowhere, role: manager, count: 1}]\n")
	if _, err := Parse("plan.yaml", data, Options{}); err != nil {
		t.Fatalf("Parse with nil Providers: %v", err)
	}
	if _, err := Parse("plan.yaml", data, testOpts); err == nil {
		t.Fatal("Parse with known providers accepted provider \"nowhere\"")
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), Options{})
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load of a missing file: %v, want os.ErrNotExist", err)
	}
}

func TestPositionAndHelpers(t *testing.T) {
	withHome(t)
	p, err := Load(filepath.Join("testdata", "valid", "full.yaml"), testOpts)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path      string
		line, col int
	}{
		{"cluster.name", 3, 9},
		{"pools[0].settings", 22, 15},
		{"pools[0].settings.instance_type", 24, 22},
		{"pools[1].settings.instance_type", 31, 22},
		{"pools[1].settings.zone", 30, 7}, // not written: its parent's position
		{"nowhere.at.all", 1, 1},
	}
	for _, tt := range tests {
		if line, col := p.Position(tt.path); line != tt.line || col != tt.col {
			t.Errorf("Position(%q) = %d:%d, want %d:%d", tt.path, line, col, tt.line, tt.col)
		}
	}
	e := p.ErrorAt("pools[0].settings.instance_type", `unknown instance type "t3.small"`, "")
	if want := p.Path + `:24:22: unknown instance type "t3.small"`; e.Error() != want {
		t.Errorf("ErrorAt = %q, want %q", e.Error(), want)
	}

	if got := p.Pool("workers"); got == nil || got != &p.Pools[1] {
		t.Errorf("Pool(workers) = %p, want %p", got, &p.Pools[1])
	}
	if got := p.Pool("nope"); got != nil {
		t.Errorf("Pool(nope) = %+v, want nil", got)
	}
	if got := p.Desired(nil); got != 3 {
		t.Errorf("Desired(nil) = %d, want 3", got)
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"count", "count", 0},
		{"cont", "count", 1},
		{"hsot", "host", 1},
		{"", "abc", 3},
		{"kitten", "sitting", 3},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// FuzzParse feeds arbitrary bytes to the loader: it must never panic, and
// every failure must be positioned.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"testdata/valid/*.yaml", "testdata/invalid/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("a: &a [*a, *a]\nb: &b [*a, *a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data, testOpts)
		if err == nil {
			if p == nil || p.Path != "fuzz.yaml" {
				t.Fatalf("Parse returned no plan and no error")
			}
			return
		}
		var list ErrorList
		var one *Error
		switch {
		case errors.As(err, &list):
			for _, e := range list {
				if e == nil || e.Line < 1 {
					t.Fatalf("error without a line: %#v", e)
				}
			}
		case errors.As(err, &one):
			if one.Line < 1 {
				t.Fatalf("error without a line: %#v", one)
			}
		default:
			t.Fatalf("error %T is neither *Error nor ErrorList: %v", err, err)
		}
	})
}

// TestStateEndpoints: which etcd endpoints a plan may name without TLS.
// The refusals are golden files (state-*.yaml in testdata/invalid).
func TestStateEndpoints(t *testing.T) {
	t.Setenv("PROVISION_ETCD_PASSWORD", "")
	tests := []struct {
		name, state string
		ok          bool
	}{
		{"loopback plaintext", "{backend: etcd, endpoints: [http://127.0.0.1:2379, 'http://[::1]:2379', http://localhost:2379]}", true},
		{"https with the system's roots", "{backend: etcd, endpoints: [https://etcd.example.com:2379]}", true},
		{"plaintext on purpose", "{backend: etcd, endpoints: [http://etcd.example.com:2379], insecure: true}", true},
		{"plaintext to another host", "{backend: etcd, endpoints: [http://etcd.example.com:2379]}", false},
		{"insecure is no TLS downgrade", "{backend: etcd, endpoints: [http://10.0.0.1:2379], insecure: true, tls: {}}", false},
		{"insecure that did not decode", "{backend: etcd, endpoints: [http://10.0.0.1:2379], insecure: sure}", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := "cluster: {name: dev}\nstate: " + tt.state + "\npools: [{name: m, provider: docker, role: manager, count: 1}]\n"
			_, err := Parse("plan.yaml", []byte(data), testOpts)
			if (err == nil) != tt.ok {
				t.Errorf("Parse: %v, want ok %v", err, tt.ok)
			}
			if err != nil && strings.Count(err.Error(), "plan.yaml:") != 1 {
				t.Errorf("want exactly one error, got:\n%v", err)
			}
		})
	}
}
