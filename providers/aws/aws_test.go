package aws

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/provisionhq/provision/cloudsim"
	ec2sim "github.com/provisionhq/provision/cloudsim/ec2"
	"github.com/provisionhq/provision/cloudsim/userdata"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/cloudinit"
	"github.com/provisionhq/provision/providers/gate"
	"github.com/provisionhq/provision/providers/hostkey"
	"github.com/provisionhq/provision/providers/providertest"
)

const testRegion = "us-east-1"

var testSettings = providers.Settings{"instance_type": "t3.micro", "ami": "ami-0123456789abcdef0"}

// recordingBacking is a cloudsim.Backing that keeps what each instance
// boots with instead of starting a host.
type recordingBacking struct {
	mu   sync.Mutex
	boot map[string]cloudsim.Boot
	n    int
}

func (b *recordingBacking) Start(_ context.Context, id string, boot cloudsim.Boot) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.boot == nil {
		b.boot = map[string]cloudsim.Boot{}
	}
	b.boot[id] = boot
	b.n++
	return fmt.Sprintf("192.0.2.%d", b.n), nil
}

func (b *recordingBacking) Stop(context.Context, string) error { return nil }

type fixture struct {
	sim *cloudsim.Sim
	srv *ec2sim.Server
	p   *Provider
	url string
}

// newFixture points the provider at cloudsim's EC2 through the standard
// environment (endpoint, static credentials, region), as a user would.
func newFixture(t *testing.T, cluster string, f cloudsim.Faults, backing cloudsim.Backing, rt http.RoundTripper) *fixture {
	t.Helper()
	return newSeededFixture(t, cluster, f, 42, backing, rt)
}

// newSeededFixture is newFixture with the Sim's seed chosen.
func newSeededFixture(t *testing.T, cluster string, f cloudsim.Faults, seed uint64, backing cloudsim.Backing, rt http.RoundTripper) *fixture {
	t.Helper()
	sim := cloudsim.NewSim(f, seed)
	srv := ec2sim.New(sim, ec2sim.Options{Region: testRegion, Backing: backing})
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return &fixture{sim: sim, srv: srv, p: newTestProvider(t, hs.URL, cluster, rt), url: hs.URL}
}

// newTestProvider points a provider at an EC2 endpoint through the
// standard environment, with a short retry backoff in its gate.
func newTestProvider(t *testing.T, endpoint, cluster string, rt http.RoundTripper) *Provider {
	t.Helper()
	setTestEnv(t, endpoint)
	env := providers.Env{Cluster: cluster}
	if rt != nil {
		env.HTTPClient = &http.Client{Transport: rt}
	}
	p, err := New(t.Context(), env)
	if err != nil {
		t.Fatal(err)
	}
	// Faults are the point here: keep the backoff short (EC2's buckets
	// stay as they are).
	o := gateOptions(maxAttempts, nil)
	o.Retry.Initial, o.Retry.Max = 5*time.Millisecond, 50*time.Millisecond
	p.gate = gate.New(o)
	return p
}

// setTestEnv is the standard chain's environment for an emulated EC2:
// its endpoint, static credentials and the test region, nothing from the
// machine's own AWS configuration.
func setTestEnv(t *testing.T, endpoint string) {
	t.Setenv("AWS_ENDPOINT_URL_EC2", endpoint)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDCLOUDSIM")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "cloudsim-secret")
	t.Setenv("AWS_REGION", testRegion)
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CA_BUNDLE", "") // the emulator is plain HTTP
}

func specs(t *testing.T, cluster, pool string, n int, set providers.Settings) []providers.MachineSpec {
	t.Helper()
	login, err := hostkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]providers.MachineSpec, n)
	for i := range out {
		hk, err := hostkey.Generate()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = providers.MachineSpec{
			ID: providers.MachineID(fmt.Sprintf("%s-%s-%03d", cluster, pool, i)), Cluster: cluster, Pool: pool,
			Role: providers.RoleWorker, Settings: set, SSHUser: "admin", AuthorizedKeys: []string{login.Public}, HostKey: hk,
		}
	}
	return out
}

func TestConformance(t *testing.T) {
	const cluster = "conf"
	fx := newFixture(t, cluster, cloudsim.Faults{PendingFor: 200 * time.Millisecond}, nil, nil)
	providertest.Run(t, fx.p, providertest.Options{
		Cluster:         cluster,
		Settings:        testSettings,
		InvalidSettings: providers.Settings{"instance_type": "t3.micro"}, // no ami
		Check:           CheckSettings,
		Timeout:         time.Minute,
		ReportsRunning:  true,
	})
}

// The acceptance: 50 machines in one pool is one RunInstances
// call, and each instance still gets its own machine's host key.
func TestFiftyMachinesOneRunInstances(t *testing.T) {
	backing := &recordingBacking{}
	fx := newFixture(t, "big", cloudsim.Faults{PendingFor: 100 * time.Millisecond}, backing, nil)
	sp := specs(t, "big", "workers", 50, testSettings)
	ms, err := fx.p.Create(t.Context(), sp)
	if err != nil {
		t.Fatal(err)
	}
	if got := fx.sim.Calls("RunInstances"); got != 1 {
		t.Fatalf("RunInstances calls = %d, want 1", got)
	}
	if len(ms) != 50 {
		t.Fatalf("Create returned %d machines, want 50", len(ms))
	}
	seen := map[string]bool{}
	for i, m := range ms {
		if m.ID != sp[i].ID {
			t.Fatalf("machine %d is %s, want %s", i, m.ID, sp[i].ID)
		}
		if seen[m.ProviderID] {
			t.Fatalf("instance %s returned twice", m.ProviderID)
		}
		seen[m.ProviderID] = true
		// Decoded as cloud-init on the instance would, not with the
		// provider's own cloudinit package.
		boot := backing.boot[m.ProviderID]
		cfg, err := userdata.Decode(boot.UserData, boot.LaunchIndex)
		if err != nil {
			t.Fatalf("instance %s: %v", m.ProviderID, err)
		}
		hk, err := cfg.HostKey()
		if err != nil {
			t.Fatal(err)
		}
		if hk.Public != sp[i].HostKey.Public {
			t.Errorf("instance %s (machine %s) got another machine's host key", m.ProviderID, m.ID)
		}
		if !strings.HasPrefix(m.Address, "192.0.2.") {
			t.Errorf("machine %s address %q is not its backing host's", m.ID, m.Address)
		}
	}
}

// dropFirstRunInstances lets the first RunInstances reach the server and
// then loses its response, as a reset connection would.
type dropFirstRunInstances struct {
	next    http.RoundTripper
	dropped atomic.Bool
}

func (d *dropFirstRunInstances) RoundTrip(r *http.Request) (*http.Response, error) {
	isRun := false
	if r.Body != nil {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(b))
		isRun = strings.Contains(string(b), "Action=RunInstances")
	}
	resp, err := d.next.RoundTrip(r)
	if err == nil && isRun && resp.StatusCode == http.StatusOK && d.dropped.CompareAndSwap(false, true) {
		resp.Body.Close()
		return nil, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	}
	return resp, err
}

func TestFlakyCloudConvergesWithoutDuplicates(t *testing.T) {
	rt := &dropFirstRunInstances{next: http.DefaultTransport}
	fx := newFixture(t, "flaky", cloudsim.Faults{ThrottleRate: 0.3, InvisibleFor: 2 * time.Second, PendingFor: 200 * time.Millisecond}, nil, rt)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	sp := specs(t, "flaky", "a", 5, testSettings)
	ms, err := fx.p.Create(ctx, sp)
	if err != nil {
		// The lost response may surface when the SDK gives up: the engine
		// retries the same specs, which must land on the same instances.
		t.Logf("first Create: %v", err)
		ms, err = fx.p.Create(ctx, sp)
		if err != nil {
			t.Fatalf("Create retried: %v", err)
		}
	}
	if !rt.dropped.Load() {
		t.Fatal("no RunInstances response was dropped")
	}
	if n := fx.srv.Count(); n != len(sp) {
		t.Fatalf("emulator has %d live instances, want %d (no duplicates)", n, len(sp))
	}
	again, err := fx.p.Create(ctx, sp)
	if err != nil {
		t.Fatalf("Create again: %v", err)
	}
	for i := range ms {
		if again[i].ProviderID != ms[i].ProviderID {
			t.Errorf("machine %s: second Create gave %s, first %s", ms[i].ID, again[i].ProviderID, ms[i].ProviderID)
		}
	}
	if n := fx.srv.Count(); n != len(sp) {
		t.Fatalf("after a second Create the emulator has %d live instances, want %d", n, len(sp))
	}
	if err := fx.p.Delete(ctx, machineIDs(sp)); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if n := fx.srv.Count(); n != 0 {
		t.Fatalf("after Delete the emulator has %d live instances", n)
	}
}

func TestCloudErrorsAreTyped(t *testing.T) {
	tests := []struct {
		name   string
		faults cloudsim.Faults
		set    providers.Settings
		kind   error
		code   string
	}{
		{"quota", cloudsim.Faults{InstanceQuota: 2}, testSettings, providers.ErrQuota, "InstanceLimitExceeded"},
		{"capacity", cloudsim.Faults{NoCapacity: true}, testSettings, providers.ErrCapacity, "InsufficientInstanceCapacity"},
		{"bad image", cloudsim.Faults{}, providers.Settings{"instance_type": "t3.micro", "ami": "ami-nothex"}, providers.ErrInvalidSpec, "InvalidAMIID.Malformed"},
		{"unknown image", cloudsim.Faults{}, providers.Settings{"instance_type": "t3.micro", "ami": "ami-0fffffffffffffff0"}, providers.ErrInvalidSpec, "InvalidAMIID.NotFound"},
		{"unknown key pair", cloudsim.Faults{}, providers.Settings{"instance_type": "t3.micro", "ami": "ami-0123456789abcdef0", "key_name": "nobody"}, providers.ErrInvalidSpec, "InvalidKeyPair.NotFound"},
		{"unknown subnet", cloudsim.Faults{}, providers.Settings{"instance_type": "t3.micro", "ami": "ami-0123456789abcdef0", "subnet_id": "subnet-0fffffff"}, providers.ErrInvalidSpec, "InvalidSubnetID.NotFound"},
		{"unknown instance type", cloudsim.Faults{}, providers.Settings{"instance_type": "t3.enormous", "ami": "ami-0123456789abcdef0"}, providers.ErrInvalidSpec, "InvalidParameterValue"},
		{"no spot capacity", cloudsim.Faults{SpotNoCapacity: true}, testSettings, providers.ErrCapacity, "InsufficientInstanceCapacity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, "errs", tt.faults, nil, nil)
			sp := specs(t, "errs", "gpu", 3, tt.set)
			for i := range sp {
				sp[i].Spot = tt.faults.SpotNoCapacity
			}
			ms, err := fx.p.Create(t.Context(), sp)
			if !errors.Is(err, tt.kind) {
				t.Fatalf("Create = %v, want %v", err, tt.kind)
			}
			var pe *providers.Error
			if !errors.As(err, &pe) || pe.Code != tt.code {
				t.Fatalf("Create = %#v, want a *providers.Error with code %s", err, tt.code)
			}
			msg := err.Error()
			for _, want := range []string{"aws", testRegion, `pool "gpu"`, tt.code} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not name %q", msg, want)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error %q is not one line", msg)
			}
			if tt.kind == providers.ErrInvalidSpec && !slices.ContainsFunc(slices.Collect(maps.Values(tt.set)), func(v any) bool {
				s, ok := v.(string)
				return ok && s != "t3.micro" && s != "ami-0123456789abcdef0" && strings.Contains(msg, s)
			}) {
				t.Errorf("error %q does not name the refused value of %v", msg, tt.set)
			}
			if len(ms) != 0 || fx.srv.Count() != 0 {
				t.Errorf("a failed Create left %d machines / %d instances", len(ms), fx.srv.Count())
			}
		})
	}
}

// EC2 keeps a ClientToken 24 h after its instances are gone: creating the
// same machine IDs again after a delete must launch, not adopt the corpses.
func TestRecreateAfterDeleteLaunchesAgain(t *testing.T) {
	fx := newFixture(t, "again", cloudsim.Faults{}, nil, nil)
	sp := specs(t, "again", "a", 2, testSettings)
	first, err := fx.p.Create(t.Context(), sp)
	if err != nil {
		t.Fatal(err)
	}
	if err := fx.p.Delete(t.Context(), machineIDs(sp)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond) // shutting-down → terminated
	second, err := fx.p.Create(t.Context(), sp)
	if err != nil {
		t.Fatal(err)
	}
	for i := range sp {
		if second[i].ProviderID == first[i].ProviderID {
			t.Errorf("machine %s: re-created as its terminated instance %s", sp[i].ID, first[i].ProviderID)
		}
	}
	if n := fx.srv.Count(); n != 2 {
		t.Errorf("emulator has %d live instances, want 2", n)
	}
}

func TestManifestRoundTrip(t *testing.T) {
	var ids []providers.MachineID
	for i := range 40 {
		ids = append(ids, providers.MachineID(fmt.Sprintf("a-rather-long-cluster-name-workers-%03d", i)))
	}
	tags := manifestTags(ids)
	if len(tags) < 2 {
		t.Fatalf("%d manifest tags; want the IDs split over several", len(tags))
	}
	m := map[string]string{}
	for _, tg := range tags {
		if len(*tg.Value) > maxTagValue {
			t.Fatalf("tag %s is %d characters", *tg.Key, len(*tg.Value))
		}
		m[*tg.Key] = *tg.Value
	}
	for i, id := range ids {
		if got := machineIDOf(m, i); got != id {
			t.Fatalf("launch index %d → %q, want %q", i, got, id)
		}
	}
	if got := machineIDOf(m, len(ids)); got != "" {
		t.Fatalf("launch index past the batch → %q", got)
	}
}

func TestBatchUserDataIsDeterministic(t *testing.T) {
	sp := specs(t, "det", "a", 3, testSettings)
	a, err := cloudinit.MultiPart(sp)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cloudinit.MultiPart(sp)
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Fatal("the same batch rendered different user-data: its ClientToken retry would mismatch")
	}
}

func TestDecodeSettings(t *testing.T) {
	for _, tt := range []struct {
		set providers.Settings
		ok  bool
	}{
		{testSettings, true},
		{providers.Settings{"instance_type": "t3.micro", "ami": "ami-1", "region": "eu-west-1", "security_group_ids": []any{"sg-1"}, "root_volume_gb": 40}, true},
		{providers.Settings{"ami": "ami-1"}, false},
		{providers.Settings{"instance_type": "t3.micro", "ami": "ubuntu"}, false},
		{providers.Settings{"instance_type": "t3.micro", "ami": "ami-1", "instance_typo": "x"}, false},
	} {
		_, err := decodeSettings(tt.set)
		if tt.ok != (err == nil) || (err != nil && !errors.Is(err, providers.ErrInvalidSpec)) {
			t.Errorf("decodeSettings(%v) = %v", tt.set, err)
		}
	}
}

// TestRelaunchAfterADeadRunRetiresItsInstances: a run that died after its
// RunInstances (its instances invisible to reads for a while, as EC2 is
// eventually consistent) left a launch of these machine IDs with other
// host keys in its user-data. The next run's Create, with fresh keys, gets
// IdempotentParameterMismatch on the same token: it terminates the dead
// run's instances and launches its own, so no instance is left serving a
// key state does not pin and none leaks.
func TestRelaunchAfterADeadRunRetiresItsInstances(t *testing.T) {
	fx := newFixture(t, "dead", cloudsim.Faults{InvisibleFor: 2 * time.Second}, nil, nil)
	dead := specs(t, "dead", "a", 2, testSettings)
	// The dead run got as far as its RunInstances.
	bs, err := fx.p.plan(dead)
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := chunkForUserData(bs[0].specs, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fx.p.launch(t.Context(), bs[0], chunks[0]); err != nil {
		t.Fatal(err)
	}
	next := specs(t, "dead", "a", 2, testSettings) // same IDs, fresh host keys
	got, err := newTestProvider(t, fx.url, "dead", nil).Create(t.Context(), next)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("created %d machines, want 2", len(got))
	}
	if n := fx.srv.Count(); n != 2 {
		t.Errorf("emulator has %d live instances after the relaunch, want 2 (the dead run's leaked)", n)
	}
}

// TestBatchTokenIgnoresOrder: the next process may batch the same machines
// in another order; the launch token must be the same, or a dead run's
// launch would never be found (and would leak).
func TestBatchTokenIgnoresOrder(t *testing.T) {
	t.Parallel()
	a := batchToken("us-east-1", "c", "p", []providers.MachineID{"c-p-2", "c-p-1"}, 0)
	b := batchToken("us-east-1", "c", "p", []providers.MachineID{"c-p-1", "c-p-2"}, 0)
	if a != b {
		t.Errorf("tokens %s and %s for the same machines in two orders", a, b)
	}
	if c := batchToken("us-east-1", "c", "p", []providers.MachineID{"c-p-1", "c-p-3"}, 0); c == a {
		t.Errorf("token %s for other machines", c)
	}
}
