// Package providertest owns the provider conformance suite: the behaviours
// the apply engine relies on, written once as a table and run against every
// provider (docker and static now, the clouds later).
package providertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/hostkey"
)

// Options describe the provider under test.
type Options struct {
	// Cluster names the test cluster; it must be unique per run so parallel
	// runs do not see each other's machines.
	Cluster string
	// Pools are the two pools the batch is split over (2 machines in the
	// first, 1 in the second); "a" and "b" when empty.
	Pools [2]string
	// Settings are valid pool settings for every spec.
	Settings providers.Settings
	// InvalidSettings must be rejected with providers.ErrInvalidSpec; the
	// check is skipped when nil.
	InvalidSettings providers.Settings
	// Check is the provider's static settings check (its registry entry's);
	// when set, it must reject InvalidSettings too.
	Check providers.Check
	// SSHUser and AuthorizedKeys go into every spec; "root" and one
	// generated key when empty.
	SSHUser        string
	AuthorizedKeys []string
	// NewHostKey generates a spec's host key; hostkey.Generate when nil.
	NewHostKey func() (hostkey.Key, error)
	// Timeout bounds the whole suite; 10 minutes when zero.
	Timeout time.Duration
	// Cleanup runs when the suite ends, pass or fail, to remove anything a
	// failed step left behind.
	Cleanup func()
	// ReportsRunning: Create reports every machine through
	// providers.Running before it returns, so the engine can start each
	// bootstrap as soon as that machine runs.
	ReportsRunning bool
}

// suite is the state the behaviours share, in order.
type suite struct {
	p       providers.Provider
	opts    Options
	specs   []providers.MachineSpec
	created map[providers.MachineID]providers.Machine
}

// behaviour is one required behaviour of every provider.
type behaviour struct {
	name string
	run  func(ctx context.Context, t *testing.T, s *suite)
}

var behaviours = []behaviour{
	{"CreateBatchReturnsEveryMachine", createBatch},
	{"ListByClusterFindsExactlyThem", listByCluster},
	{"ListByPoolFilters", listByPool},
	{"CreateIsIdempotent", createAgain},
	{"DeleteRemovesThem", deleteAll},
	{"DeleteAgainSucceeds", deleteAgain},
	{"ListIsEmptyAfterDelete", listEmpty},
	{"InvalidSettingsAreInvalidSpec", invalidSettings},
}

// Run runs the conformance suite against p. Behaviours run in order and
// build on each other, so the first failure stops the rest.
func Run(t *testing.T, p providers.Provider, opts Options) {
	t.Helper()
	if opts.Cluster == "" {
		t.Fatal("providertest: Options.Cluster is required")
	}
	if opts.Pools[0] == "" {
		opts.Pools = [2]string{"a", "b"}
	}
	if opts.NewHostKey == nil {
		opts.NewHostKey = hostkey.Generate
	}
	if opts.SSHUser == "" {
		opts.SSHUser = "root"
	}
	if len(opts.AuthorizedKeys) == 0 {
		k, err := hostkey.Generate() // any public key will do for a login key
		if err != nil {
			t.Fatal(err)
		}
		opts.AuthorizedKeys = []string{k.Public}
	}
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Minute
	}
	if opts.Cleanup != nil {
		t.Cleanup(opts.Cleanup)
	}
	ctx, cancel := context.WithTimeout(t.Context(), opts.Timeout)
	defer cancel()

	s := &suite{p: p, opts: opts}
	pools := []string{opts.Pools[0], opts.Pools[0], opts.Pools[1]}
	for i, pool := range pools {
		hk, err := opts.NewHostKey()
		if err != nil {
			t.Fatalf("host key: %v", err)
		}
		s.specs = append(s.specs, s.spec(fmt.Sprintf("%s-m%d", opts.Cluster, i), pool, opts.Settings, hk))
	}
	for _, b := range behaviours {
		if !t.Run(b.name, func(t *testing.T) { b.run(ctx, t, s) }) {
			t.Fatalf("%s failed; later behaviours depend on it", b.name)
		}
	}
}

func (s *suite) spec(id, pool string, set providers.Settings, hk hostkey.Key) providers.MachineSpec {
	role := providers.RoleWorker
	if strings.HasSuffix(id, "-m0") {
		role = providers.RoleManager
	}
	return providers.MachineSpec{
		ID: providers.MachineID(id), Cluster: s.opts.Cluster, Pool: pool, Role: role,
		Settings: set, Labels: map[string]string{"suite": "providertest"},
		SSHUser: s.opts.SSHUser, AuthorizedKeys: s.opts.AuthorizedKeys, HostKey: hk,
	}
}

func ids(ms []providers.Machine) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, string(m.ID))
	}
	slices.Sort(out)
	return out
}

func specIDs(specs []providers.MachineSpec, pool string) []string {
	var out []string
	for _, s := range specs {
		if pool == "" || s.Pool == pool {
			out = append(out, string(s.ID))
		}
	}
	slices.Sort(out)
	return out
}

func createBatch(ctx context.Context, t *testing.T, s *suite) {
	var mu sync.Mutex
	reported := map[providers.MachineID]providers.Machine{}
	ctx = providers.WithRunning(ctx, func(m providers.Machine) {
		mu.Lock()
		defer mu.Unlock()
		reported[m.ID] = m
	})
	ms, err := s.p.Create(ctx, s.specs)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, r := range reported {
		i := slices.IndexFunc(ms, func(m providers.Machine) bool { return m.ID == id })
		switch {
		case i < 0:
			t.Errorf("Create reported %s running, a machine it did not return", id)
		case r.Address != ms[i].Address || r.ProviderID != ms[i].ProviderID:
			t.Errorf("machine %s reported running at %s (%s), returned at %s (%s)", id, r.Address, r.ProviderID, ms[i].Address, ms[i].ProviderID)
		}
	}
	if s.opts.ReportsRunning && len(reported) != len(s.specs) {
		t.Errorf("Create reported %d of %d machines running (providers.Running)", len(reported), len(s.specs))
	}
	if len(ms) != len(s.specs) {
		t.Fatalf("Create returned %d machines for %d specs", len(ms), len(s.specs))
	}
	s.created = map[providers.MachineID]providers.Machine{}
	for i, m := range ms {
		spec := s.specs[i]
		if m.ID != spec.ID {
			t.Errorf("machine %d: ID %q, want %q (results follow spec order)", i, m.ID, spec.ID)
		}
		if m.Address == "" {
			t.Errorf("machine %s: no address", m.ID)
		}
		if m.ProviderID == "" {
			t.Errorf("machine %s: no provider ID", m.ID)
		}
		if m.Cluster != spec.Cluster || m.Pool != spec.Pool {
			t.Errorf("machine %s: cluster/pool %q/%q, want %q/%q", m.ID, m.Cluster, m.Pool, spec.Cluster, spec.Pool)
		}
		if m.State != providers.StateRunning && m.State != providers.StatePending {
			t.Errorf("machine %s: state %q after Create", m.ID, m.State)
		}
		s.created[m.ID] = m
	}
}

func listByCluster(ctx context.Context, t *testing.T, s *suite) {
	ms, err := s.p.List(ctx, providers.Selector{Cluster: s.opts.Cluster})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if got, want := ids(ms), specIDs(s.specs, ""); !slices.Equal(got, want) {
		t.Fatalf("List(cluster) = %v, want %v", got, want)
	}
	for _, m := range ms {
		if c := s.created[m.ID]; m.ProviderID != c.ProviderID || m.Address != c.Address {
			t.Errorf("List: machine %s is %s at %s, Create said %s at %s", m.ID, m.ProviderID, m.Address, c.ProviderID, c.Address)
		}
	}
}

func listByPool(ctx context.Context, t *testing.T, s *suite) {
	for _, pool := range s.opts.Pools {
		ms, err := s.p.List(ctx, providers.Selector{Cluster: s.opts.Cluster, Pool: pool})
		if err != nil {
			t.Fatalf("List(pool %s): %v", pool, err)
		}
		if got, want := ids(ms), specIDs(s.specs, pool); !slices.Equal(got, want) {
			t.Errorf("List(pool %s) = %v, want %v", pool, got, want)
		}
	}
}

func createAgain(ctx context.Context, t *testing.T, s *suite) {
	ms, err := s.p.Create(ctx, s.specs)
	if err != nil {
		t.Fatalf("second Create: %v", err)
	}
	for _, m := range ms {
		if c, ok := s.created[m.ID]; !ok || c.ProviderID != m.ProviderID {
			t.Errorf("second Create: machine %s is %s, first Create made %s", m.ID, m.ProviderID, c.ProviderID)
		}
	}
	all, err := s.p.List(ctx, providers.Selector{Cluster: s.opts.Cluster})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(all) != len(s.specs) {
		t.Errorf("after second Create the cluster has %d machines, want %d", len(all), len(s.specs))
	}
}

func deleteAll(ctx context.Context, t *testing.T, s *suite) {
	if err := s.p.Delete(ctx, machineIDs(s.specs)); err != nil {
		t.Fatalf("Delete: %v", err)
	}
}

func deleteAgain(ctx context.Context, t *testing.T, s *suite) {
	if err := s.p.Delete(ctx, machineIDs(s.specs)); err != nil {
		t.Fatalf("Delete of deleted machines: %v", err)
	}
}

func listEmpty(ctx context.Context, t *testing.T, s *suite) {
	ms, err := s.p.List(ctx, providers.Selector{Cluster: s.opts.Cluster})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(ms) != 0 {
		t.Fatalf("List after Delete = %v, want none", ids(ms))
	}
}

func invalidSettings(ctx context.Context, t *testing.T, s *suite) {
	if s.opts.InvalidSettings == nil {
		t.Skip("no Options.InvalidSettings")
	}
	hk, err := s.opts.NewHostKey()
	if err != nil {
		t.Fatal(err)
	}
	spec := s.spec(s.opts.Cluster+"-invalid", s.opts.Pools[0], s.opts.InvalidSettings, hk)
	if s.opts.Check != nil && len(s.opts.Check(spec.Settings)) == 0 {
		t.Errorf("the provider's settings check accepts %v", spec.Settings)
	}
	ms, err := s.p.Create(ctx, []providers.MachineSpec{spec})
	if !errors.Is(err, providers.ErrInvalidSpec) {
		t.Errorf("Create with settings %v = %v, want ErrInvalidSpec", spec.Settings, err)
	}
	if len(ms) > 0 {
		t.Errorf("Create with invalid settings returned machines %v", ids(ms))
	}
	if err := s.p.Delete(ctx, []providers.MachineID{spec.ID}); err != nil { // in case one leaked
		t.Errorf("Delete: %v", err)
	}
}

func machineIDs(specs []providers.MachineSpec) []providers.MachineID {
	out := make([]providers.MachineID, 0, len(specs))
	for _, s := range specs {
		out = append(out, s.ID)
	}
	return out
}
