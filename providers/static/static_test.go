package static

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/hostkey"
	"github.com/provisionhq/provision/providers/providertest"
)

func hostsSettings(t *testing.T, n int) providers.Settings {
	t.Helper()
	var hosts []any
	for i := range n {
		k, err := hostkey.Generate()
		if err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, map[string]any{"address": fmt.Sprintf("10.0.0.%d", i+1), "port": 22, "host_key": k.Public})
	}
	return providers.Settings{"hosts": hosts}
}

func newProvider(t *testing.T, dir string) *Provider {
	t.Helper()
	p, err := New(t.Context(), providers.Env{Cluster: "c", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func specs(set providers.Settings, ids ...string) []providers.MachineSpec {
	var out []providers.MachineSpec
	for _, id := range ids {
		out = append(out, providers.MachineSpec{ID: providers.MachineID(id), Cluster: "c", Pool: "p", Settings: set, SSHUser: "root"})
	}
	return out
}

func TestConformance(t *testing.T) {
	p := newProvider(t, t.TempDir())
	providertest.Run(t, p, providertest.Options{
		Cluster:         "static-conformance",
		Settings:        hostsSettings(t, 3),
		InvalidSettings: providers.Settings{"hosts": []any{map[string]any{"address": "10.0.0.9"}}},
		Check:           CheckSettings,
	})
}

func TestAssignmentIsStableAcrossProviders(t *testing.T) {
	dir := t.TempDir()
	set := hostsSettings(t, 3)
	first, err := newProvider(t, dir).Create(t.Context(), specs(set, "m1", "m2"))
	if err != nil {
		t.Fatal(err)
	}
	// A new provider (a new process) reads the same assignments.
	again, err := newProvider(t, dir).Create(t.Context(), specs(set, "m2", "m1"))
	if err != nil {
		t.Fatal(err)
	}
	if first[0].Address != again[1].Address || first[1].Address != again[0].Address {
		t.Fatalf("assignments moved: first %v, again %v", first, again)
	}
	if first[0].Address == first[1].Address {
		t.Fatalf("two machines share host %s", first[0].Address)
	}
	if first[0].HostKey == "" {
		t.Fatal("machine has no HostKey: a static host's own key must be pinned")
	}
	st, err := os.Stat(filepath.Join(dir, AssignmentsFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("assignments file mode %v, want 0600", st.Mode().Perm())
	}
}

func TestCapacityError(t *testing.T) {
	p := newProvider(t, t.TempDir())
	set := hostsSettings(t, 2)
	ms, err := p.Create(t.Context(), specs(set, "m1", "m2", "m3"))
	if !errors.Is(err, providers.ErrCapacity) {
		t.Fatalf("Create 3 on 2 hosts: err = %v, want ErrCapacity", err)
	}
	if len(ms) != 2 {
		t.Fatalf("Create returned %d machines with the capacity error, want the 2 that fit", len(ms))
	}
	t.Logf("error reads: %v", err)
}

func TestDeleteReleasesHost(t *testing.T) {
	p := newProvider(t, t.TempDir())
	set := hostsSettings(t, 1)
	ms, err := p.Create(t.Context(), specs(set, "m1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Create(t.Context(), specs(set, "m2")); !errors.Is(err, providers.ErrCapacity) {
		t.Fatalf("second machine on a full pool: err = %v, want ErrCapacity", err)
	}
	if err := p.Delete(t.Context(), []providers.MachineID{"m1"}); err != nil {
		t.Fatal(err)
	}
	got, err := p.Create(t.Context(), specs(set, "m2"))
	if err != nil {
		t.Fatalf("Create after Delete: %v", err)
	}
	if got[0].Address != ms[0].Address {
		t.Fatalf("m2 got %s, want the released %s", got[0].Address, ms[0].Address)
	}
}

func TestValidateSettings(t *testing.T) {
	k, _ := hostkey.Generate()
	tests := []struct {
		name string
		set  providers.Settings
		ok   bool
	}{
		{"valid", providers.Settings{"hosts": []any{map[string]any{"address": "h1", "host_key": k.Public}}}, true},
		{"no hosts", providers.Settings{}, false},
		{"missing host key", providers.Settings{"hosts": []any{map[string]any{"address": "h1"}}}, false},
		{"bad host key", providers.Settings{"hosts": []any{map[string]any{"address": "h1", "host_key": "ssh-ed25519 nope"}}}, false},
		{"bad port", providers.Settings{"hosts": []any{map[string]any{"address": "h1", "port": 70000, "host_key": k.Public}}}, false},
		{"duplicate", providers.Settings{"hosts": []any{
			map[string]any{"address": "h1", "host_key": k.Public}, map[string]any{"address": "h1", "port": 22, "host_key": k.Public}}}, false},
		{"unknown key", providers.Settings{"hostz": []any{}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeSettings(tt.set)
			if tt.ok && err != nil {
				t.Fatalf("want ok, got %v", err)
			}
			if !tt.ok && !errors.Is(err, providers.ErrInvalidSpec) {
				t.Fatalf("want ErrInvalidSpec, got %v", err)
			}
		})
	}
}
