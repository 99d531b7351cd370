package apply

import (
	"context"
	"fmt"
	"math"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/provisionhq/provision/bootstrap/cluster"
	"github.com/provisionhq/provision/cloudsim"
	ec2sim "github.com/provisionhq/provision/cloudsim/ec2"
	"github.com/provisionhq/provision/cloudsim/gce"
	simos "github.com/provisionhq/provision/cloudsim/openstack"
	"github.com/provisionhq/provision/plans"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/aws"
	"github.com/provisionhq/provision/providers/gcp"
	"github.com/provisionhq/provision/providers/hostkey"
	"github.com/provisionhq/provision/providers/openstack"
	"github.com/provisionhq/provision/state"
)

// The call budget, on cloudsim's counters, through the engine and
// the real providers (their SDKs, their gates) against the emulators
// served in the test: a pool of N machines is ceil(N / batch_size) create
// calls and a bounded number of polls, never one call per machine; a
// scale-down of k machines of one pool is one delete call where the cloud
// has a batch delete (EC2 TerminateInstances takes many IDs) and k where
// it has none (GCE has no bulk delete of instances outside managed
// instance groups, Nova none at all: one call per machine is their
// floor), and its wait is polls, not per machine; with 30% of calls
// throttled the same N converge with no duplicate, each refused call
// costing at most the one call sent again, within 1.5x the calls of the
// unthrottled create.

const (
	callsN     = 100
	callsBatch = 40 // not a divisor of callsN: the last batch is short
	callsK     = 7
	// pending is how long a new instance stays pending before it runs
	// (tens of seconds on a real cloud): waiting for running takes
	// several polls, as it does there.
	pending = 4 * time.Second
)

// cloud is one cloud under test: its emulator and its provider.
type cloud struct {
	name     string
	settings providers.Settings // batch_size is callsBatch
	// create are the actions that create machines.
	create []string
	// polls are the actions that read or wait: a bounded number of polls,
	// never one per machine.
	polls []string
	// del is the action that deletes machines; deletes is how many calls
	// of it k machines take at least.
	del     string
	deletes func(k int) int
	// serve starts the emulator on a test server and returns the
	// environment that points the provider's standard chain at it.
	serve func(t *testing.T, sim *cloudsim.Sim) (inventory, map[string]string)
	// build is the provider's exported constructor.
	build providers.Factory
}

type inventory interface{ Inventory() cloudsim.Inventory }

var clouds = []cloud{
	{
		name: "aws",
		// The SDK reads AWS_ENDPOINT_URL_EC2 when it makes a region's
		// client: a pool's region makes New make it (see withEnv).
		settings: providers.Settings{"region": "us-east-1", "instance_type": "t3.micro", "ami": "ami-0123456789abcdef0", "batch_size": callsBatch},
		create:   []string{"RunInstances"},
		polls:    []string{"DescribeInstances", "DescribeInstanceStatus"},
		del:      "TerminateInstances", deletes: func(int) int { return 1 },
		serve: func(t *testing.T, sim *cloudsim.Sim) (inventory, map[string]string) {
			srv := ec2sim.New(sim, ec2sim.Options{Region: "us-east-1"})
			hs := httptest.NewServer(srv)
			t.Cleanup(hs.Close)
			return srv, map[string]string{
				"AWS_ENDPOINT_URL_EC2": hs.URL, "AWS_ACCESS_KEY_ID": "AKIDCLOUDSIM", "AWS_SECRET_ACCESS_KEY": "cloudsim-secret",
				"AWS_REGION": "us-east-1", "AWS_PROFILE": "", "AWS_CONFIG_FILE": t.TempDir() + "/none",
				"AWS_SHARED_CREDENTIALS_FILE": t.TempDir() + "/none", "AWS_EC2_METADATA_DISABLED": "true", "AWS_CA_BUNDLE": "",
				"AWS_MAX_ATTEMPTS": "", "AWS_RETRY_MODE": "",
			}
		},
		build: func(ctx context.Context, env providers.Env) (providers.Provider, error) { return aws.New(ctx, env) },
	},
	{
		name: "gcp",
		settings: providers.Settings{"project": "sim-project", "zone": "europe-west1-b", "machine_type": "e2-medium",
			"image": "projects/debian-cloud/global/images/family/debian-12", "batch_size": callsBatch},
		create: []string{"instances.bulkInsert", "instances.insert"},
		polls:  []string{"instances.list", "instances.aggregatedList", "instances.get", "zoneOperations.wait", "zoneOperations.get"},
		del:    "instances.delete", deletes: func(k int) int { return k },
		serve: func(t *testing.T, sim *cloudsim.Sim) (inventory, map[string]string) {
			srv := gce.New(sim, gce.Options{Project: "sim-project"})
			hs := httptest.NewServer(srv)
			t.Cleanup(hs.Close)
			return srv, map[string]string{gcp.EnvEndpoint: hs.URL, gcp.EnvProject: "sim-project"}
		},
		build: func(ctx context.Context, env providers.Env) (providers.Provider, error) { return gcp.New(ctx, env) },
	},
	{
		name:     "openstack",
		settings: providers.Settings{"flavor": "m1.small", "image": "debian-12", "networks": []any{"private"}, "batch_size": callsBatch},
		create:   []string{"servers.create"},
		polls:    []string{"servers.list", "servers.get", "ports.list"},
		del:      "servers.delete", deletes: func(k int) int { return k },
		serve: func(t *testing.T, sim *cloudsim.Sim) (inventory, map[string]string) {
			srv := simos.New(sim, simos.Options{})
			hs := httptest.NewServer(srv)
			t.Cleanup(func() { hs.Close(); srv.Close() })
			return srv, map[string]string{
				"OS_CLOUD": "", "OS_AUTH_URL": hs.URL + "/identity/v3", "OS_USERNAME": "demo", "OS_PASSWORD": "secret",
				"OS_PROJECT_NAME": "demo", "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
				"OS_REGION_NAME": "RegionOne", "OS_INTERFACE": "",
			}
		},
		build: func(ctx context.Context, env providers.Env) (providers.Provider, error) {
			return openstack.New(ctx, env)
		},
	},
}

// envMu serializes the providers' construction under their environment:
// each reads its standard chain (the endpoint among it) once, in New, so
// runs against different emulators can go on side by side.
var envMu sync.Mutex

// withEnv builds a provider with env set, and puts the process's
// environment back before it returns.
func withEnv(ctx context.Context, env map[string]string, build providers.Factory, e providers.Env) (providers.Provider, error) {
	envMu.Lock()
	defer envMu.Unlock()
	for k, v := range env {
		old, had := os.LookupEnv(k)
		if err := os.Setenv(k, v); err != nil {
			return nil, err
		}
		defer func() {
			if had {
				_ = os.Setenv(k, old)
			} else {
				_ = os.Unsetenv(k)
			}
		}()
	}
	return build(ctx, e)
}

// callsRun is one engine against one emulator.
type callsRun struct {
	engine *Engine
	sim    *cloudsim.Sim
	inv    inventory
	plan   func(workers int) *plans.Plan
}

func newCallsRun(t *testing.T, c cloud, f cloudsim.Faults, seed uint64) *callsRun {
	sim := cloudsim.NewSim(f, seed)
	inv, env := c.serve(t, sim)
	reg := providers.NewRegistry()
	reg.Register("fake", providers.Entry{New: func(context.Context, providers.Env) (providers.Provider, error) { return newFakeProvider(), nil }})
	reg.Register(c.name, providers.Entry{New: func(ctx context.Context, e providers.Env) (providers.Provider, error) {
		return withEnv(ctx, env, c.build, e)
	}})
	e := &Engine{
		Providers: reg,
		Backend:   state.NewMemory(nil),
		Connector: &fakeConnector{dialed: map[string]string{}},
		Prepare:   func(context.Context, state.Machine, cluster.Runner) error { return nil },
		Driver:    &fakeDriver{members: map[string]string{}},
		HostKeys:  hostkey.Generate, // real keys: the clouds' user-data carries them
		Operation: "up",
		Timeouts:  Timeouts{Create: time.Minute, Remove: time.Minute},
	}
	plan := func(workers int) *plans.Plan {
		return &plans.Plan{
			Cluster: plans.Cluster{Name: "calls", Kind: "swarm"},
			SSH:     plans.SSH{User: "admin", Port: 22},
			Pools: []plans.Pool{
				// The manager is elsewhere: the cloud's counters are the
				// workers pool's alone.
				{Name: "managers", Provider: "fake", Count: 1, Role: providers.RoleManager},
				{Name: "workers", Provider: c.name, Count: workers, Role: providers.RoleWorker, Settings: c.settings},
			},
		}
	}
	return &callsRun{engine: e, sim: sim, inv: inv, plan: plan}
}

// apply runs one Apply of the plan with workers machines and returns the
// calls it made, by action.
func (r *callsRun) apply(t *testing.T, workers int) (map[string]int, error) {
	before := r.sim.CallCounts()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	rep, err := r.engine.Apply(ctx, r.plan(workers))
	if err != nil {
		return nil, fmt.Errorf("apply %d workers: %w", workers, err)
	}
	if len(rep.Failed) > 0 {
		return nil, fmt.Errorf("apply %d workers: failed %v", workers, rep.Failed)
	}
	calls := map[string]int{}
	for k, v := range r.sim.CallCounts() {
		if d := v - before[k]; d > 0 {
			calls[k] = d
		}
	}
	t.Logf("apply %d workers: %v, calls %v", workers, time.Since(start).Round(10*time.Millisecond), calls)
	return calls, nil
}

func sum(calls map[string]int, actions ...string) int {
	n := 0
	for _, a := range actions {
		n += calls[a]
	}
	return n
}

func total(calls map[string]int) int {
	n := 0
	for _, v := range calls {
		n += v
	}
	return n
}

// checkFleet says whether the emulator holds exactly want live instances
// and never launched more than launched: no duplicate, none leaked.
func checkFleet(inv inventory, want, launched int) error {
	got := inv.Inventory()
	if len(got.Alive) != want || got.Launched != launched {
		return fmt.Errorf("emulator has %d live instances, %d ever launched; want %d live, %d launched (no duplicate)", len(got.Alive), got.Launched, want, launched)
	}
	return nil
}

// outcome is one scenario's calls: create N in one pool, then scale it
// down by k.
type outcome struct {
	up, down map[string]int
	refused  int // calls the emulator refused as throttled
}

func (o outcome) total() int { return total(o.up) + total(o.down) }

// scenario runs create and scale-down against an emulator of its own; it
// may run in any goroutine.
func scenario(t *testing.T, c cloud, f cloudsim.Faults, seed uint64) (outcome, error) {
	r := newCallsRun(t, c, f, seed)
	var o outcome
	var err error
	if o.up, err = r.apply(t, callsN); err != nil {
		return o, err
	}
	if err := checkFleet(r.inv, callsN, callsN); err != nil {
		return o, err
	}
	if o.down, err = r.apply(t, callsN-callsK); err != nil {
		return o, err
	}
	if err := checkFleet(r.inv, callsN-callsK, callsN); err != nil {
		return o, err
	}
	o.refused = r.sim.Throttled()
	return o, nil
}

// throttledSeeds are the runs with 30% of calls throttled. A create makes
// about a dozen calls, most of which must succeed once (1/0.7 = 1.43 sent
// a call on average at 30%; only polls cost nothing more, the next poll
// being due anyway): one run's count is too noisy to hold to 1.5x, so the
// seeds' runs are summed against as many unthrottled ones. Measured, the
// sums are 1.2-1.35x.
const throttledSeeds = 6

func TestCallsAcrossClouds(t *testing.T) {
	// Every run, of every cloud, against an emulator of its own, side by
	// side: they mostly wait (for instances to run, for backoffs).
	type run struct {
		out outcome
		err error
	}
	runs := make([][]run, len(clouds)) // by cloud; [0] unthrottled
	var wg sync.WaitGroup
	for ci, c := range clouds {
		runs[ci] = make([]run, 1+throttledSeeds)
		for i := range runs[ci] {
			f := cloudsim.Faults{PendingFor: pending}
			if i > 0 {
				f.ThrottleRate = 0.3
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, err := scenario(t, c, f, uint64(max(i, 1)))
				runs[ci][i] = run{out, err}
			}()
		}
	}
	wg.Wait()

	wantCreates := int(math.Ceil(float64(callsN) / callsBatch))
	for ci, c := range clouds {
		t.Run(c.name, func(t *testing.T) {
			for i, r := range runs[ci] {
				if r.err != nil {
					t.Fatalf("run %d (throttled: %t): %v", i, i > 0, r.err)
				}
			}
			plain := runs[ci][0].out
			if got := sum(plain.up, c.create...); got != wantCreates {
				t.Errorf("create calls for %d machines with batch_size %d = %d, want %d", callsN, callsBatch, got, wantCreates)
			}
			// One call a poll for the whole pool: a handful, where one per
			// machine would be N at least.
			if got := sum(plain.up, c.polls...); got > 25 {
				t.Errorf("reads and polls while creating %d machines = %d, want a bounded number of polls (calls %v)", callsN, got, plain.up)
			}
			if got, want := plain.down[c.del], c.deletes(callsK); got != want {
				t.Errorf("%s calls to scale down by %d = %d, want %d", c.del, callsK, got, want)
			}
			if got := sum(plain.down, c.polls...); got > 10 {
				t.Errorf("reads and polls while deleting %d machines = %d, want a bounded number of polls (calls %v)", callsK, got, plain.down)
			}

			// Throttled, the same runs converged with no duplicate
			// (scenario checked the fleets). Each refused call costs at
			// most the one call sent again (0.43 a call on average at
			// 30%), and a refused poll none, the next poll being due
			// anyway: never a whole Create again or a retry in a second
			// layer.
			hit, hitUp, refused := 0, 0, 0
			for i, r := range runs[ci][1:] {
				o := r.out
				hit += o.total()
				hitUp += total(o.up)
				refused += o.refused
				if extra := o.total() - plain.total(); extra > o.refused+2 {
					t.Errorf("seed %d: %d calls more than unthrottled for %d refused: want at most one more a refusal (throttled %v then %v; unthrottled %v then %v)",
						i+1, extra, o.refused, o.up, o.down, plain.up, plain.down)
				}
			}
			base, baseUp := throttledSeeds*plain.total(), throttledSeeds*total(plain.up)
			ratio, ratioUp := float64(hit)/float64(base), float64(hitUp)/float64(baseUp)
			t.Logf("%s, %d runs: create %d: %d calls unthrottled, %d with 30%% throttled: %.2fx; and scale down by %d: %d, %d: %.2fx (%d refused)",
				c.name, throttledSeeds, callsN, baseUp, hitUp, ratioUp, callsK, base, hit, ratio, refused)
			if refused == 0 {
				t.Error("no call was throttled: the comparison says nothing")
			}
			// The bound is on N converging: the create. (With the
			// scale-down the ratio is higher on GCE and Nova, whose k
			// deletes are k calls that must each succeed once.)
			if ratioUp > 1.5 {
				t.Errorf("throttled runs made %d calls to create %d machines, unthrottled ones %d: %.2fx, want at most 1.5x",
					hitUp, callsN, baseUp, ratioUp)
			}
		})
	}
}
