package provider

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/blang/semver"
	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/integration"
	"github.com/pulumi/pulumi/sdk/v3/go/property"

	"github.com/provisionhq/provision/providers"
)

// noCapacity is a provider whose creates fail after the engine has written
// its intents: the moment a lost state would leak machines.
type noCapacity struct {
	mu      sync.Mutex
	deleted []string
}

func (*noCapacity) Create(context.Context, []providers.MachineSpec) ([]providers.Machine, error) {
	return nil, errors.Join(providers.ErrCapacity, errors.New("no capacity in zone test-1"))
}

func (*noCapacity) List(context.Context, providers.Selector) ([]providers.Machine, error) {
	return nil, nil
}

func (f *noCapacity) Delete(_ context.Context, ids []providers.MachineID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		f.deleted = append(f.deleted, string(id))
	}
	return nil
}

// TestCreateKeepsPartialState: a create that fails once machines may exist
// still hands Pulumi the state, so they are recorded and a delete reaches
// them; the generated key stays a secret in that partial state.
func TestCreateKeepsPartialState(t *testing.T) {
	fake := &noCapacity{}
	reg := func() *providers.Registry {
		r := providers.NewRegistry()
		r.Register("docker", providers.Entry{New: func(context.Context, providers.Env) (providers.Provider, error) { return fake, nil }})
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
	urn := clusterURN("partial")
	check, err := s.Check(p.CheckRequest{Urn: urn, Inputs: props(map[string]any{
		"pools": []any{pool("managers", "docker", "manager", 1), pool("workers", "docker", "", 2)},
	})})
	if err != nil || len(check.Failures) > 0 {
		t.Fatalf("Check: %v %+v", err, check.Failures)
	}

	resp, err := s.Create(p.CreateRequest{Urn: urn, Properties: check.Inputs})
	if err == nil || resp.PartialState == nil {
		t.Fatalf("create: err %v, partial state %v; want both", err, resp.PartialState)
	}
	if reasons := strings.Join(resp.PartialState.Reasons, "\n"); !strings.Contains(reasons, "no capacity in zone test-1") {
		t.Errorf("failure reasons %q do not say why", reasons)
	}
	nodes := nodesOf(t, resp.Properties)
	if len(nodes) != 3 {
		t.Fatalf("partial state has %d nodes, want the 3 intents: %+v", len(nodes), nodes)
	}
	for _, n := range nodes {
		if n.phase != "intent" {
			t.Errorf("node %+v: want phase intent", n)
		}
	}
	if !resp.Properties.Get("privateKey").Secret() || resp.Properties.Get("privateKey").AsString() == "" {
		t.Errorf("the generated key is missing from the partial state or not secret")
	}

	if err := s.Delete(p.DeleteRequest{ID: "partial", Urn: urn, Properties: resp.Properties}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	slices.Sort(fake.deleted)
	if !slices.Equal(fake.deleted, ids(nodes)) {
		t.Fatalf("delete reached %v, want the recorded machines %v", fake.deleted, ids(nodes))
	}
}

// TestUserKeyStaysSecret: a login key the program gives is a secret input,
// and stays one where the outputs mirror it.
func TestUserKeyStaysSecret(t *testing.T) {
	key, err := generateKey()
	if err != nil {
		t.Fatal(err)
	}
	s := server(t)
	urn := clusterURN("keyed")
	in := props(map[string]any{
		"ssh":   map[string]any{"privateKey": key},
		"pools": []any{pool("managers", "docker", "manager", 1)},
	})
	check, err := s.Check(p.CheckRequest{Urn: urn, Inputs: in})
	if err != nil || len(check.Failures) > 0 {
		t.Fatalf("Check: %v %+v", err, check.Failures)
	}
	sshIn := check.Inputs.Get("ssh")
	if !secretAt(sshIn, "privateKey") {
		t.Fatalf("checked ssh.privateKey input is not secret: %v", sshIn)
	}
	state := check.Inputs.Set("nodes", property.New([]property.Value{})).
		Set("managerAddress", property.New("")).Set("publicKey", property.New("")).
		Set("privateKey", property.New(key).WithSecret(true)).
		Set("workerJoinToken", property.New("").WithSecret(true)).
		Set("managerJoinToken", property.New("").WithSecret(true)).
		Set("state", property.New(""))
	resp, err := s.Update(p.UpdateRequest{ID: "keyed", Urn: urn, State: state, OldInputs: check.Inputs, Inputs: check.Inputs, DryRun: true})
	if err != nil {
		t.Fatalf("preview update: %v", err)
	}
	if got := resp.Properties.Get("ssh"); !secretAt(got, "privateKey") {
		t.Fatalf("ssh.privateKey output is not secret: %v", got)
	}
}

// secretAt reports whether v (an object, maybe itself secret) holds a
// secret at key.
func secretAt(v property.Value, key string) bool {
	if v.Secret() {
		return true
	}
	if !v.IsMap() {
		return false
	}
	return v.AsMap().Get(key).Secret()
}
