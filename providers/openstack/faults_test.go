package openstack

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/provisionhq/provision/cloudsim"
	simos "github.com/provisionhq/provision/cloudsim/openstack"
	"github.com/provisionhq/provision/providers"
)

// requestFaults is the unreliable cloud: 10% of requests answered
// 500 or 503, 5% reset, half of both after the work was done (the call
// took effect, its answer is lost), and latency on every request.
var requestFaults = cloudsim.Faults{
	ServerErrorRate: 0.1, ResetRate: 0.05, AfterWork: 0.5, Latency: 2 * time.Millisecond,
	PendingFor: 50 * time.Millisecond,
}

// liveServers counts the servers of cluster that are not being deleted,
// with the faults off: what "exactly N" is checked against.
func liveServers(t *testing.T, sim *cloudsim.Sim, p *Provider, cluster string) int {
	t.Helper()
	f := sim.Faults()
	sim.SetFaults(cloudsim.Faults{})
	defer sim.SetFaults(f)
	c, err := p.clientsFor(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	all, err := p.listServers(t.Context(), c, cluster, "", false)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range all {
		if !gone(s) {
			n++
		}
	}
	return n
}

// TestServerErrorsAndResetsConverge: against that cloud, ten machines in a
// pool end as exactly ten servers (Nova has no idempotency token: a create
// whose answer was lost is looked up by its metadata before it is sent
// again), List sees them, and Delete leaves none. One seed meets only a
// few faults, so it runs under several.
func TestServerErrorsAndResetsConverge(t *testing.T) {
	t.Parallel()
	var total cloudsim.FaultCounts
	for seed := range uint64(8) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			sim := cloudsim.NewSim(requestFaults, seed)
			srv := simos.New(sim, simos.Options{MaxLimit: 4})
			url := serve(t, srv)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			p, err := newProvider(ctx, providers.Env{Cluster: "faulty"}, testConfig(url))
			if err != nil {
				t.Fatalf("newProvider: %v (faults %+v)", err, sim.FaultCounts())
			}
			sp := specs(t, "faulty", "workers", 10)
			ms, err := p.Create(ctx, sp)
			if err != nil {
				t.Fatalf("Create: %v (faults %+v)", err, sim.FaultCounts())
			}
			seen := map[string]bool{}
			for i, m := range ms {
				if m.ID != sp[i].ID || seen[m.ProviderID] {
					t.Fatalf("machine %d is %s on %s, want %s on a server of its own", i, m.ID, m.ProviderID, sp[i].ID)
				}
				seen[m.ProviderID] = true
			}
			if n := liveServers(t, sim, p, "faulty"); len(ms) != 10 || n != 10 {
				t.Fatalf("Create returned %d machines, the emulator has %d servers; want exactly 10", len(ms), n)
			}
			listed, err := p.List(ctx, providers.Selector{Cluster: "faulty"})
			if err != nil || len(listed) != 10 {
				t.Fatalf("List = %d machines, %v; want 10", len(listed), err)
			}
			ids := make([]providers.MachineID, len(sp))
			for i, s := range sp {
				ids[i] = s.ID
			}
			if err := p.Delete(ctx, ids); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if n := liveServers(t, sim, p, "faulty"); n != 0 {
				t.Fatalf("after Delete the emulator has %d live servers", n)
			}
			f := sim.FaultCounts()
			t.Logf("faults injected: %+v; servers.create calls %d", f, sim.Calls("servers.create"))
			total.ServerErrors += f.ServerErrors
			total.Resets += f.Resets
			total.AfterWork += f.AfterWork
		})
	}
	t.Cleanup(func() {
		t.Logf("all seeds: %+v", total)
		if total.ServerErrors == 0 || total.Resets == 0 || total.AfterWork == 0 {
			t.Errorf("faults injected %+v: want server errors, resets and some after the work", total)
		}
	})
}

// TestLostCreateIsLookedUpNotRepeated: the pool's one servers.create
// fails with a 500 or a reset, before Nova did the work or after it. Nova
// has no idempotency token, so the provider lists the batch's machines
// first: it creates again only when they have no server, and the pool
// ends with its ten servers once.
func TestLostCreateIsLookedUpNotRepeated(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		lost  cloudsim.Faults
		calls int // servers.create calls Nova served
	}{
		{"500 before the work", cloudsim.Faults{ServerErrorRate: 1}, 1},
		{"reset before the work", cloudsim.Faults{ResetRate: 1}, 1},
		{"500 after the work", cloudsim.Faults{ServerErrorRate: 1, AfterWork: 1}, 1},
		{"reset after the work", cloudsim.Faults{ResetRate: 1, AfterWork: 1}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sim := cloudsim.NewSim(cloudsim.Faults{PendingFor: 50 * time.Millisecond}, 1)
			srv := simos.New(sim, simos.Options{})
			loser := cloudsim.NewSim(tt.lost, 1)
			var once atomic.Bool
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPost && r.URL.Path == "/compute/v2.1/servers" && once.CompareAndSwap(false, true) {
					loser.Serve(w, r, func(w http.ResponseWriter, _ *http.Request, status int) {
						w.Header().Set("Content-Type", "application/json")
						w.WriteHeader(status)
						fmt.Fprintf(w, `{"computeFault": {"code": %d, "message": "Unexpected API Error."}}`, status)
					}, srv.ServeHTTP)
					return
				}
				srv.ServeHTTP(w, r)
			}))
			t.Cleanup(func() { ts.Close(); srv.Close() })
			p := testProvider(t, ts.URL, "lost")
			ms, err := p.Create(t.Context(), specs(t, "lost", "workers", 10))
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if n := liveServers(t, sim, p, "lost"); len(ms) != 10 || n != 10 {
				t.Fatalf("Create returned %d machines, the emulator has %d servers; want exactly 10", len(ms), n)
			}
			if got := sim.Calls("servers.create"); got != tt.calls || loser.FaultCounts() == (cloudsim.FaultCounts{}) {
				t.Errorf("servers.create served %d times (%+v lost), want %d", got, loser.FaultCounts(), tt.calls)
			}
		})
	}
}
