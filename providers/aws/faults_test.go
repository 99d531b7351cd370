package aws

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/provisionhq/provision/cloudsim"
	ec2sim "github.com/provisionhq/provision/cloudsim/ec2"
	"github.com/provisionhq/provision/providers"
)

// requestFaults is the unreliable cloud: 10% of requests answered
// 500 or 503, 5% reset, half of both after the work was done (the call
// took effect, its answer is lost), and latency on every request.
var requestFaults = cloudsim.Faults{
	ServerErrorRate: 0.1, ResetRate: 0.05, AfterWork: 0.5, Latency: 2 * time.Millisecond,
	PendingFor: 100 * time.Millisecond,
}

// TestServerErrorsAndResetsConverge: against that cloud, ten machines in a
// pool end as exactly ten instances (the SDK retries 5xx and resets with
// the launch's ClientToken, so a lost RunInstances answer is replayed,
// not launched again), List sees them, and Delete leaves none. One seed
// meets only a few faults, so it runs under several; seeds 19 and 25 lose
// RunInstances' answer after the launch (the Nth request meets the Sim's
// Nth draw, and a Create's calls are sequential). When the provider's
// calls change order and no seed does any more, the test says so: pick
// seeds again.
func TestServerErrorsAndResetsConverge(t *testing.T) {
	var total cloudsim.FaultCounts
	runRetried := 0
	for _, seed := range []uint64{0, 1, 2, 3, 4, 5, 19, 25} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			fx := newSeededFixture(t, "faulty", requestFaults, seed, nil, nil)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			sp := specs(t, "faulty", "workers", 10, testSettings)
			ms, err := fx.p.Create(ctx, sp)
			if err != nil {
				t.Fatalf("Create: %v (faults %+v)", err, fx.sim.FaultCounts())
			}
			seen := map[string]bool{}
			for i, m := range ms {
				if m.ID != sp[i].ID || seen[m.ProviderID] {
					t.Fatalf("machine %d is %s on %s, want %s on an instance of its own", i, m.ID, m.ProviderID, sp[i].ID)
				}
				seen[m.ProviderID] = true
			}
			if len(ms) != 10 || fx.srv.Count() != 10 {
				t.Fatalf("Create returned %d machines, the emulator has %d instances; want exactly 10", len(ms), fx.srv.Count())
			}
			listed, err := fx.p.List(ctx, providers.Selector{Cluster: "faulty"})
			if err != nil || len(listed) != 10 {
				t.Fatalf("List = %d machines, %v; want 10", len(listed), err)
			}
			if err := fx.p.Delete(ctx, machineIDs(sp)); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if n := fx.srv.Count(); n != 0 {
				t.Fatalf("after Delete the emulator has %d live instances", n)
			}
			f := fx.sim.FaultCounts()
			t.Logf("faults injected: %+v; RunInstances calls %d", f, fx.sim.Calls("RunInstances"))
			total.ServerErrors += f.ServerErrors
			total.Resets += f.Resets
			total.AfterWork += f.AfterWork
			if fx.sim.Calls("RunInstances") > 1 {
				runRetried++
			}
		})
	}
	t.Logf("all seeds: %+v; %d launches retried", total, runRetried)
	if total.ServerErrors == 0 || total.Resets == 0 || total.AfterWork == 0 {
		t.Errorf("faults injected %+v: want server errors, resets and some after the work", total)
	}
	if runRetried == 0 {
		t.Error("no seed made RunInstances meet a fault: pick seeds that do")
	}
}

// TestServerErrorsOutlastingTheGate: a cloud that fails every request is
// retried by the gate alone, maxAttempts times (not again by the SDK
// under it, nor by the provider or the engine on top), and the failure
// is ErrUnavailable. A user's AWS_MAX_ATTEMPTS is the gate's attempts.
func TestServerErrorsOutlastingTheGate(t *testing.T) {
	for _, f := range []cloudsim.Faults{{ServerErrorRate: 1}, {ResetRate: 1}} {
		fx := newFixture(t, "down", f, nil, nil)
		_, err := fx.p.Create(t.Context(), specs(t, "down", "workers", 2, testSettings))
		if !errors.Is(err, providers.ErrUnavailable) {
			t.Fatalf("Create = %v, want ErrUnavailable", err)
		}
		got := fx.sim.FaultCounts()
		if n := got.ServerErrors + got.Resets; n != maxAttempts {
			t.Errorf("%+v: the first request was sent %d times, want %d (the gate's attempts, once)", f, n, maxAttempts)
		}
	}
	sim := cloudsim.NewSim(cloudsim.Faults{ServerErrorRate: 1}, 42)
	hs := httptest.NewServer(ec2sim.New(sim, ec2sim.Options{Region: testRegion}))
	t.Cleanup(hs.Close)
	setTestEnv(t, hs.URL)
	t.Setenv("AWS_MAX_ATTEMPTS", "2")
	p, err := New(t.Context(), providers.Env{Cluster: "down"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.List(t.Context(), providers.Selector{Cluster: "down"}); !errors.Is(err, providers.ErrUnavailable) {
		t.Fatalf("List = %v, want ErrUnavailable", err)
	}
	if n := sim.FaultCounts().ServerErrors; n != 2 {
		t.Errorf("with AWS_MAX_ATTEMPTS=2 the request was sent %d times, want 2", n)
	}
}
