package aws

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/provisionhq/provision/cloudsim"
	"github.com/provisionhq/provision/providers"
)

// recordRunInstances keeps the form of every RunInstances request, as it
// went on the wire.
type recordRunInstances struct {
	next http.RoundTripper
	mu   sync.Mutex
	runs []url.Values
}

func (r *recordRunInstances) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(b))
		if f, err := url.ParseQuery(string(b)); err == nil && f.Get("Action") == "RunInstances" {
			r.mu.Lock()
			r.runs = append(r.runs, f)
			r.mu.Unlock()
		}
	}
	return r.next.RoundTrip(req)
}

func (r *recordRunInstances) byPool() map[string]url.Values {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]url.Values{}
	for _, f := range r.runs {
		for k, v := range f {
			// TagSpecification.1.Tag.N.Key=provision:pool, .Value=<pool>
			if len(v) == 1 && v[0] == tagPool {
				out[f.Get(k[:len(k)-len("Key")]+"Value")] = f
			}
		}
	}
	return out
}

// TestSpotPoolLaunchesOneTimeSpot: a spot pool's one RunInstances asks for
// one-time spot instances that terminate when reclaimed; an on-demand
// pool's asks for no market at all.
func TestSpotPoolLaunchesOneTimeSpot(t *testing.T) {
	rt := &recordRunInstances{next: http.DefaultTransport}
	fx := newFixture(t, "spot", cloudsim.Faults{}, nil, rt)
	sp := specs(t, "spot", "cheap", 3, testSettings)
	for i := range sp {
		sp[i].Spot = true
	}
	sp = append(sp, specs(t, "spot", "steady", 2, testSettings)...)
	if _, err := fx.p.Create(t.Context(), sp); err != nil {
		t.Fatal(err)
	}
	runs := rt.byPool()
	if len(runs) != 2 || len(rt.runs) != 2 {
		t.Fatalf("RunInstances calls by pool = %v (%d calls), want one per pool", runs, len(rt.runs))
	}
	market := []string{
		"InstanceMarketOptions.MarketType",
		"InstanceMarketOptions.SpotOptions.SpotInstanceType",
		"InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior",
	}
	want := map[string][]string{
		"cheap":  {"spot", "one-time", "terminate"},
		"steady": {"", "", ""},
	}
	for pool, w := range want {
		for i, k := range market {
			if got := runs[pool].Get(k); got != w[i] {
				t.Errorf("pool %s: %s = %q, want %q", pool, k, got, w[i])
			}
		}
		if got := runs[pool].Get("InstanceMarketOptions.SpotOptions.MaxPrice"); got != "" {
			t.Errorf("pool %s: MaxPrice %q; provision leaves it to EC2 (the on-demand price)", pool, got)
		}
	}
}

// TestSpotMustAgreeWithinPool: one RunInstances has one market, so a pool
// whose machines disagree is refused before any call.
func TestSpotMustAgreeWithinPool(t *testing.T) {
	fx := newFixture(t, "mixed", cloudsim.Faults{}, nil, nil)
	sp := specs(t, "mixed", "a", 3, testSettings)
	sp[1].Spot = true
	ms, err := fx.p.Create(t.Context(), sp)
	if !errors.Is(err, providers.ErrInvalidSpec) || len(ms) != 0 {
		t.Fatalf("Create = %d machines, %v; want ErrInvalidSpec", len(ms), err)
	}
	if n := fx.sim.Calls("RunInstances") + fx.sim.Calls("DescribeInstances"); n != 0 {
		t.Errorf("%d EC2 calls for a refused batch, want none", n)
	}
}

// TestSpotWithoutCapacityIsCapacity: when EC2 has no spot capacity to
// spare, a spot pool's Create fails with ErrCapacity (the autoscaler then
// fails over to another pool) and leaves nothing; on-demand pools still
// launch. Needs cloudsim's EC2 to model Faults.SpotNoCapacity.
func TestSpotWithoutCapacityIsCapacity(t *testing.T) {
	fx := newFixture(t, "spotcap", cloudsim.Faults{SpotNoCapacity: true}, nil, nil)
	sp := specs(t, "spotcap", "cheap", 2, testSettings)
	for i := range sp {
		sp[i].Spot = true
	}
	ms, err := fx.p.Create(t.Context(), sp)
	if !errors.Is(err, providers.ErrCapacity) || len(ms) != 0 {
		t.Fatalf("spot Create = %d machines, %v; want ErrCapacity and none", len(ms), err)
	}
	if n := fx.srv.Count(); n != 0 {
		t.Errorf("a refused spot launch left %d instances", n)
	}
	ms, err = fx.p.Create(t.Context(), specs(t, "spotcap", "steady", 2, testSettings))
	if err != nil || len(ms) != 2 {
		t.Fatalf("on-demand Create = %d machines, %v; want 2", len(ms), err)
	}
}
