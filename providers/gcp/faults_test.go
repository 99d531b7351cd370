package gcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/api/googleapi"

	"github.com/provisionhq/provision/cloudsim"
	"github.com/provisionhq/provision/cloudsim/gce"
	"github.com/provisionhq/provision/providers"
)

// requestFaults is the unreliable cloud: 10% of requests answered
// 500 or 503, 5% reset, half of both after the work was done (the call
// took effect, its answer is lost), and latency on every request.
var requestFaults = cloudsim.Faults{
	ServerErrorRate: 0.1, ResetRate: 0.05, AfterWork: 0.5, Latency: 2 * time.Millisecond,
	PendingFor: 50 * time.Millisecond,
}

// TestServerErrorsAndResetsConverge: against that cloud, ten machines in a
// pool end as exactly ten instances (a lost bulkInsert answer is replayed
// by its requestId, a machine made meanwhile is adopted by name), List
// sees them, and Delete leaves none. One seed meets only a few faults, so
// it runs under several.
func TestServerErrorsAndResetsConverge(t *testing.T) {
	var total cloudsim.FaultCounts
	for seed := range uint64(8) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			p, sim, srv := seededSimProvider(t, requestFaults, seed, "faulty")
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			sp := specs(t, "faulty", "workers", 10)
			ms, err := p.Create(ctx, sp)
			if err != nil {
				t.Fatalf("Create: %v (faults %+v)", err, sim.FaultCounts())
			}
			seen := map[string]bool{}
			for i, m := range ms {
				if m.ID != sp[i].ID || seen[m.ProviderID] {
					t.Fatalf("machine %d is %s on %s, want %s on an instance of its own", i, m.ID, m.ProviderID, sp[i].ID)
				}
				seen[m.ProviderID] = true
			}
			if n := len(srv.Instances()); len(ms) != 10 || n != 10 {
				t.Fatalf("Create returned %d machines, the emulator has %d instances; want exactly 10", len(ms), n)
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
			if n := len(srv.Instances()); n != 0 {
				t.Fatalf("after Delete the emulator has %d live instances", n)
			}
			f := sim.FaultCounts()
			t.Logf("faults injected: %+v; bulkInsert calls %d", f, sim.Calls("instances.bulkInsert"))
			total.ServerErrors += f.ServerErrors
			total.Resets += f.Resets
			total.AfterWork += f.AfterWork
		})
	}
	t.Logf("all seeds: %+v", total)
	if total.ServerErrors == 0 || total.Resets == 0 || total.AfterWork == 0 {
		t.Errorf("faults injected %+v: want server errors, resets and some after the work", total)
	}
}

// TestLostBulkInsertAnswerIsReplayed: the pool's one bulkInsert makes its
// instances and then its answer is lost (a 500 or a reset after the
// work). The gate sends it again with the same requestId, which gets the
// first one's operation back, whether or not reads show the instances
// yet (eventual consistency): the pool has its ten instances once, from
// two bulkInsert requests and nothing else sent twice.
func TestLostBulkInsertAnswerIsReplayed(t *testing.T) {
	for _, tt := range []struct {
		name      string
		lost      cloudsim.Faults
		invisible time.Duration
		calls     int // bulkInsert calls served
	}{
		{"500", cloudsim.Faults{ServerErrorRate: 1, AfterWork: 1}, 0, 2},
		{"reset", cloudsim.Faults{ResetRate: 1, AfterWork: 1}, 0, 2},
		{"500, reads lag", cloudsim.Faults{ServerErrorRate: 1, AfterWork: 1}, 300 * time.Millisecond, 2},
		{"reset, reads lag", cloudsim.Faults{ResetRate: 1, AfterWork: 1}, 300 * time.Millisecond, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sim := cloudsim.NewSim(cloudsim.Faults{PendingFor: 50 * time.Millisecond, InvisibleFor: tt.invisible}, 1)
			srv := gce.New(sim, gce.Options{Project: "sim-project"})
			loser := cloudsim.NewSim(tt.lost, 1)
			var once atomic.Bool
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/bulkInsert") && once.CompareAndSwap(false, true) {
					loser.Serve(w, r, func(w http.ResponseWriter, _ *http.Request, status int) {
						w.Header().Set("Content-Type", "application/json")
						w.WriteHeader(status)
						fmt.Fprintf(w, `{"error":{"code":%d,"message":"Internal error.","errors":[{"message":"Internal error.","domain":"global","reason":"backendError"}]}}`, status)
					}, srv.ServeHTTP)
					return
				}
				srv.ServeHTTP(w, r)
			}))
			t.Cleanup(hs.Close)
			t.Setenv(EnvEndpoint, hs.URL)
			t.Setenv(EnvProject, "")
			p, err := New(t.Context(), providers.Env{Cluster: "lost"})
			if err != nil {
				t.Fatal(err)
			}
			fast(p)
			t.Cleanup(func() { _ = p.Close() })
			ms, err := p.Create(t.Context(), specs(t, "lost", "workers", 10))
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if n := len(srv.Instances()); len(ms) != 10 || n != 10 {
				t.Fatalf("Create returned %d machines, the emulator has %d instances; want exactly 10", len(ms), n)
			}
			if got := sim.Calls("instances.bulkInsert"); got != tt.calls || loser.FaultCounts().AfterWork != 1 {
				t.Errorf("bulkInsert served %d times (%+v lost), want %d", got, loser.FaultCounts(), tt.calls)
			}
		})
	}
}

// TestClassifyUnavailable: a 5xx and a connection lost before the answer
// are ErrUnavailable (which the gate retries); a 4xx, a refused dial and
// an ended context are not unavailability.
func TestClassifyUnavailable(t *testing.T) {
	w := where{zone: testZone, pool: "p"}
	reset := &url.Error{Op: "Post", URL: "http://gce", Err: &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}}
	refused := &url.Error{Op: "Post", URL: "http://gce", Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
	for _, tt := range []struct {
		name        string
		err         error
		unavailable bool
	}{
		{"500 backendError", &googleapi.Error{Code: 500, Errors: []googleapi.ErrorItem{{Reason: "backendError"}}}, true},
		{"503", &googleapi.Error{Code: 503}, true},
		{"reset", fmt.Errorf("list instances: %w", reset), true},
		{"unexpected EOF", fmt.Errorf("list: %w", io.ErrUnexpectedEOF), true},
		{"400", &googleapi.Error{Code: 400, Errors: []googleapi.ErrorItem{{Reason: "invalid"}}}, false},
		{"refused", refused, false},
		{"deadline", fmt.Errorf("wait: %w", context.DeadlineExceeded), false},
	} {
		err := w.classifyAPI(tt.err)
		if got := errors.Is(err, providers.ErrUnavailable); got != tt.unavailable {
			t.Errorf("%s: classifyAPI = %v; unavailable %t, want %t", tt.name, err, got, tt.unavailable)
		}
	}
}
