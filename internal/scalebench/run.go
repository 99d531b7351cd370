package scalebench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/provisionhq/provision/cloudsim"
	ec2sim "github.com/provisionhq/provision/cloudsim/ec2"
	"github.com/provisionhq/provision/cloudsim/ratelimit"
	"github.com/provisionhq/provision/plans"
	"github.com/provisionhq/provision/plans/apply"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/aws"
	"github.com/provisionhq/provision/providers/hostkey"
	"github.com/provisionhq/provision/state"
)

// Region, image and instance type of every run.
const (
	Region       = "us-east-1"
	image        = "ami-0123456789abcdef0"
	instanceType = "t3.micro"
	// Endpoint is where the SDK thinks EC2 is; its requests never leave
	// the process (see handlerTransport), and an address under .invalid
	// could not be reached if one did.
	Endpoint = "http://ec2.cloudsim.invalid"
)

// Env is the environment the aws provider's standard chain must see:
// static credentials, the region and the endpoint, and no shared config or
// instance metadata. Set it before Run (the test does, with t.Setenv).
var Env = map[string]string{
	"AWS_ACCESS_KEY_ID":           "AKIDSCALEBENCH",
	"AWS_SECRET_ACCESS_KEY":       "scalebench",
	"AWS_REGION":                  Region,
	"AWS_ENDPOINT_URL_EC2":        Endpoint,
	"AWS_EC2_METADATA_DISABLED":   "true",
	"AWS_CONFIG_FILE":             "/nonexistent/scalebench/config",
	"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/scalebench/credentials",
	"AWS_PROFILE":                 "",
	"AWS_MAX_ATTEMPTS":            "",
	"AWS_RETRY_MODE":              "",
	"AWS_CA_BUNDLE":               "",
}

// Strategy is how machines are brought up.
type Strategy string

const (
	// Provision is provision's apply engine with the aws provider.
	Provision Strategy = "provision"
	// PerMachine is the peers' way: one RunInstances per machine, 10
	// machines at a time, each bootstrapped in its slot.
	PerMachine Strategy = "per-machine ×10"
)

// Scenario is one run: a strategy bringing up N machines (one manager,
// N-1 workers) on an empty cloud.
type Scenario struct {
	Strategy Strategy
	N        int
	// Parallelism, when positive, is apply.Engine.Parallelism (the
	// --parallelism override); Provision only.
	Parallelism int
}

// Name is the scenario's strategy as the report shows it.
func (s Scenario) Name() string {
	if s.Strategy == Provision && s.Parallelism > 0 {
		return fmt.Sprintf("provision --parallelism %d", s.Parallelism)
	}
	return string(s.Strategy)
}

// Result is what one run measured. Durations are model time.
type Result struct {
	Scenario
	// Ready is from the start until every machine is Ready (joined).
	Ready time.Duration
	// Addresses is when the last machine's address was known (its
	// instance running), Runtimes when the last runtime install ended.
	Addresses, Runtimes time.Duration
	// SlotWait is the longest a machine waited for a slot of the
	// strategy's concurrency bound: provision's bootstrap slots (from its
	// address to its SSH stage), the peers' slots (from the start to its
	// create call).
	SlotWait time.Duration
	// Calls are EC2 API calls by action, throttled ones included;
	// Throttled are those the published limits refused.
	Calls, Throttled map[string]int
	// RuntimePeak and JoinPeak are the most runtime installs and joins
	// that ran at once.
	RuntimePeak, JoinPeak int
	// PeakGoroutines and PeakHeap are the process's, sampled every model
	// second while the run went on.
	PeakGoroutines int
	PeakHeap       uint64
}

// Run brings up s.N machines as s says, on a fresh cloud with EC2's
// published rate limits in force and hosts as m says, and reports what it
// measured. It must be called inside a synctest bubble, with Env set.
func Run(ctx context.Context, s Scenario, m Model) (*Result, error) {
	if s.N < 1 {
		return nil, fmt.Errorf("scenario %s: N must be at least 1, got %d", s.Name(), s.N)
	}
	c := newCloud(m)
	smp := startSampler()
	start := time.Now()
	var (
		tl  *timeline
		err error
	)
	switch s.Strategy {
	case Provision:
		tl, err = runProvision(ctx, c, s)
	case PerMachine:
		tl, err = runPerMachine(ctx, c, s)
	default:
		err = fmt.Errorf("unknown strategy %q", s.Strategy)
	}
	ready := time.Since(start)
	peakG, peakHeap := smp.stop()
	if err != nil {
		return nil, fmt.Errorf("%s, N = %d: %w", s.Name(), s.N, err)
	}
	r := &Result{Scenario: s, Ready: ready, Calls: c.sim.CallCounts(), Throttled: c.limits.Refused(),
		PeakGoroutines: peakG, PeakHeap: peakHeap}
	r.Addresses, r.Runtimes, r.SlotWait = tl.summary(start)
	r.RuntimePeak, r.JoinPeak = c.hosts.runtime.most(), c.hosts.join.most()
	c.hosts.manager.Lock()
	n := c.hosts.members
	c.hosts.manager.Unlock()
	if n != s.N {
		return nil, fmt.Errorf("%s, N = %d: the cluster has %d members", s.Name(), s.N, n)
	}
	return r, nil
}

// cloud is one run's EC2: cloudsim with the published limits, its hosts,
// and an HTTP client that hands requests straight to it.
type cloud struct {
	sim    *cloudsim.Sim
	limits *ratelimit.EC2
	hosts  *hosts
	client *http.Client
}

func newCloud(m Model) *cloud {
	h := newHosts(m)
	sim := cloudsim.NewSim(cloudsim.Faults{PendingFor: m.PendingFor, InvisibleFor: m.InvisibleFor, Latency: m.APILatency}, 1)
	lim := ratelimit.NewEC2()
	srv := ec2sim.New(sim, ec2sim.Options{Region: Region, Backing: h, Limits: lim})
	return &cloud{sim: sim, limits: lim, hosts: h, client: &http.Client{Transport: handlerTransport{srv}}}
}

// handlerTransport serves an SDK request with the emulator's handler in
// the calling goroutine: the SDK's encoding and the emulator's decoding
// run as over the wire, with no socket (which would stop a synctest clock).
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	if r.Body != nil {
		r.Body.Close()
	}
	return rec.Result(), nil
}

// timeline records when each machine reached each point of its way.
type timeline struct {
	mu sync.Mutex
	// address is when its address was known (its instance ran); queued
	// when it began to wait for a slot of the strategy's concurrency bound
	// and slot when it got one; runtime when its runtime was installed.
	address, queued, slot, runtime map[string]time.Time
}

func newTimeline() *timeline {
	return &timeline{address: map[string]time.Time{}, queued: map[string]time.Time{},
		slot: map[string]time.Time{}, runtime: map[string]time.Time{}}
}

func (tl *timeline) mark(which map[string]time.Time, id string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	which[id] = time.Now()
}

// event takes the engine's progress events: a machine waits for a
// bootstrap slot from its create's end to its SSH stage's start.
func (tl *timeline) event(ev apply.Event) {
	switch {
	case ev.Stage == apply.StageCreate && ev.Status == apply.StatusDone:
		tl.mark(tl.address, ev.Machine)
		tl.mark(tl.queued, ev.Machine)
	case ev.Stage == apply.StageSSH && ev.Status == apply.StatusStart:
		tl.mark(tl.slot, ev.Machine)
	case ev.Stage == apply.StageRuntime && ev.Status == apply.StatusDone:
		tl.mark(tl.runtime, ev.Machine)
	}
}

func (tl *timeline) summary(start time.Time) (addresses, runtimes, slotWait time.Duration) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for _, t := range tl.address {
		addresses = max(addresses, t.Sub(start))
	}
	for id, t := range tl.queued {
		if s, ok := tl.slot[id]; ok {
			slotWait = max(slotWait, s.Sub(t))
		}
	}
	for _, t := range tl.runtime {
		runtimes = max(runtimes, t.Sub(start))
	}
	return addresses, runtimes, slotWait
}

// runProvision is `provision up` of a plan with a manager pool of 1 and a
// worker pool of N-1 on aws: the real engine and provider.
func runProvision(ctx context.Context, c *cloud, s Scenario) (*timeline, error) {
	reg := providers.NewRegistry()
	reg.Register("aws", providers.Entry{
		New: func(ctx context.Context, env providers.Env) (providers.Provider, error) {
			env.HTTPClient = c.client
			return aws.New(ctx, env)
		},
		Check: aws.CheckSettings,
	})
	tl := newTimeline()
	e := &apply.Engine{
		Providers: reg, Backend: state.NewMemory(nil),
		Connector: c.hosts, Prepare: c.hosts.Prepare, Driver: c.hosts,
		HostKeys: hostkey.Generate, Events: tl.event,
		Parallelism: s.Parallelism, Operation: "up",
	}
	settings := providers.Settings{"instance_type": instanceType, "ami": image}
	plan := &plans.Plan{
		Cluster: plans.Cluster{Name: "bench", Kind: "swarm"},
		SSH:     plans.SSH{User: cloudsim.DefaultUser, Port: 22},
		Pools: []plans.Pool{
			{Name: "managers", Provider: "aws", Count: 1, Role: providers.RoleManager, Settings: settings},
			{Name: "workers", Provider: "aws", Count: s.N - 1, Role: providers.RoleWorker, Settings: maps.Clone(settings)},
		},
	}
	rep, err := e.Apply(ctx, plan)
	if err != nil {
		return nil, err
	}
	if rep.Created != s.N || len(rep.Failed) > 0 {
		return nil, fmt.Errorf("created %d machines, %d failed; want %d", rep.Created, len(rep.Failed), s.N)
	}
	return tl, nil
}

// sampler keeps the peak goroutine count and heap of the process.
type sampler struct {
	done, stopped chan struct{}
	goroutines    int
	heap          uint64
}

const heapMetric = "/memory/classes/heap/objects:bytes"

func startSampler() *sampler {
	runtime.GC()
	s := &sampler{done: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(s.stopped)
		sample := []metrics.Sample{{Name: heapMetric}}
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			s.goroutines = max(s.goroutines, runtime.NumGoroutine())
			metrics.Read(sample)
			if sample[0].Value.Kind() == metrics.KindUint64 {
				s.heap = max(s.heap, sample[0].Value.Uint64())
			}
			select {
			case <-s.done:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) stop() (goroutines int, heap uint64) {
	close(s.done)
	<-s.stopped
	return s.goroutines, s.heap
}

var errNotRunning = errors.New("instance not running yet")
