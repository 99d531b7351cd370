package gate

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/provisionhq/provision/internal/retry"
	"github.com/provisionhq/provision/providers"
)

var (
	throttled   = &providers.Error{Kind: providers.ErrThrottled, Cloud: "test", Code: "RequestLimitExceeded"}
	unavailable = &providers.Error{Kind: providers.ErrUnavailable, Cloud: "test", Code: "InternalError"}
	quota       = &providers.Error{Kind: providers.ErrQuota, Cloud: "test", Code: "InstanceLimitExceeded"}
)

func fastGate() *Gate {
	return New(Options{Cloud: "test", Requests: map[string]Bucket{"": {Rate: 0, Burst: 1}},
		Retry: retry.Policy{Initial: time.Millisecond, Max: 2 * time.Millisecond, MaxAttempts: 3}})
}

// TestRetriesByKind pins the one retry layer's rules: throttling is sent
// again until it passes, a failed request only when it is idempotent and
// at most MaxAttempts times, a poll never, anything else never.
func TestRetriesByKind(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		call     Call
		results  []error // one per attempt; the last repeats
		wantSent int
		wantKind error // nil: success
	}{
		{"success", Call{Action: "a"}, []error{nil}, 1, nil},
		{"throttled until it passes", Call{Action: "a"}, []error{throttled, throttled, throttled, throttled, nil}, 5, nil},
		{"unavailable, idempotent: retried", Call{Action: "a", Idempotent: true}, []error{unavailable, nil}, 2, nil},
		{"unavailable, idempotent: attempts run out", Call{Action: "a", Idempotent: true}, []error{unavailable}, 3, providers.ErrUnavailable},
		{"unavailable, not idempotent: once", Call{Action: "a"}, []error{unavailable}, 1, providers.ErrUnavailable},
		{"throttling does not use up the unavailable attempts", Call{Action: "a", Idempotent: true},
			[]error{unavailable, throttled, throttled, throttled, unavailable, nil}, 6, nil},
		{"poll: throttled once, returned", Call{Action: "a", Poll: true}, []error{throttled}, 1, providers.ErrThrottled},
		{"poll: unavailable once, returned", Call{Action: "a", Poll: true, Idempotent: true}, []error{unavailable}, 1, providers.ErrUnavailable},
		{"quota is the caller's", Call{Action: "a", Idempotent: true}, []error{quota}, 1, providers.ErrQuota},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := fastGate()
			sent := 0
			err := g.Do(t.Context(), tt.call, func(context.Context) error {
				sent++
				return tt.results[min(sent, len(tt.results))-1]
			})
			if sent != tt.wantSent {
				t.Errorf("sent %d times, want %d", sent, tt.wantSent)
			}
			switch {
			case tt.wantKind == nil && err != nil:
				t.Errorf("err = %v, want success", err)
			case tt.wantKind != nil && !errors.Is(err, tt.wantKind):
				t.Errorf("err = %v, want %v", err, tt.wantKind)
			}
		})
	}
}

// TestThrottledUntilContextEnds: a cloud that throttles everything is
// asked until the caller's deadline, and the error says both.
func TestThrottledUntilContextEnds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := fastGate().Do(ctx, Call{Action: "a"}, func(context.Context) error { return throttled })
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, providers.ErrThrottled) {
		t.Fatalf("err = %v, want the deadline with the throttling inside", err)
	}
}

// TestRetryAfterIsHonoured: a throttled answer's Retry-After is waited
// out before the next attempt, however short the backoff.
func TestRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	hinted := *throttled
	hinted.RetryAfter = 150 * time.Millisecond
	var times []time.Time
	err := fastGate().Do(t.Context(), Call{Action: "a"}, func(context.Context) error {
		times = append(times, time.Now())
		if len(times) == 1 {
			return &hinted
		}
		return nil
	})
	if err != nil || len(times) != 2 {
		t.Fatalf("err %v after %d attempts", err, len(times))
	}
	if d := times[1].Sub(times[0]); d < 150*time.Millisecond {
		t.Errorf("second attempt %v after the first, want at least the Retry-After (150ms)", d)
	}
}

// TestBuckets: actions have buckets of their own unless grouped, and a
// request with a cost also waits for its resource bucket.
func TestBuckets(t *testing.T) {
	t.Parallel()
	elapsed := func(g *Gate, calls ...Call) time.Duration {
		start := time.Now()
		for _, c := range calls {
			if err := g.Do(t.Context(), c, func(context.Context) error { return nil }); err != nil {
				t.Fatal(err)
			}
		}
		return time.Since(start)
	}
	slow := Bucket{Rate: 5, Burst: 1} // a second request waits 200ms
	perAction := New(Options{Requests: map[string]Bucket{"": slow}})
	if d := elapsed(perAction, Call{Action: "a"}, Call{Action: "b"}); d > 150*time.Millisecond {
		t.Errorf("two actions with buckets of their own took %v, want no wait", d)
	}
	if d := elapsed(perAction, Call{Action: "a"}); d < 150*time.Millisecond {
		t.Errorf("a second request of one action took %v, want its bucket's wait", d)
	}
	grouped := New(Options{Requests: map[string]Bucket{"api": slow}, Group: func(string) string { return "api" }})
	if d := elapsed(grouped, Call{Action: "a"}, Call{Action: "b"}); d < 150*time.Millisecond {
		t.Errorf("two actions of one group took %v, want the group's wait", d)
	}
	resources := New(Options{Requests: map[string]Bucket{"": {Burst: 100}}, Resources: map[string]Bucket{"run": {Rate: 20, Burst: 10}}})
	if d := elapsed(resources, Call{Action: "run", Cost: 10}); d > 150*time.Millisecond {
		t.Errorf("a launch within the resource burst took %v, want no wait", d)
	}
	if d := elapsed(resources, Call{Action: "run", Cost: 4}); d < 150*time.Millisecond {
		t.Errorf("a launch on an empty resource bucket took %v, want a wait for 4 tokens (200ms)", d)
	}
}

// TestInFlightBound: no more than InFlight requests are open at once.
func TestInFlightBound(t *testing.T) {
	t.Parallel()
	g := New(Options{InFlight: 3, Requests: map[string]Bucket{"": {Burst: 100}}})
	var open, peak atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = g.Do(t.Context(), Call{Action: "a"}, func(context.Context) error {
				n := open.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				time.Sleep(5 * time.Millisecond)
				open.Add(-1)
				return nil
			})
		}()
	}
	wg.Wait()
	if p := peak.Load(); p != 3 {
		t.Errorf("peak in flight %d, want 3", p)
	}
}

// TestRefusedLaunchChargedOnce: a throttled launch sent again takes its
// resource tokens once, as the cloud (which refused the first attempt)
// does; charging each attempt would make a 30%-throttled pool wait for
// tokens the cloud never took.
func TestRefusedLaunchChargedOnce(t *testing.T) {
	t.Parallel()
	g := New(Options{Requests: map[string]Bucket{"": {Burst: 100}}, Resources: map[string]Bucket{"run": {Rate: 20, Burst: 10}},
		Retry: retry.Policy{Initial: time.Millisecond, Max: 2 * time.Millisecond, MaxAttempts: 3}})
	attempts := 0
	start := time.Now()
	err := g.Do(t.Context(), Call{Action: "run", Cost: 10}, func(context.Context) error {
		if attempts++; attempts < 3 {
			return throttled
		}
		return nil
	})
	if err != nil || attempts != 3 {
		t.Fatalf("Do: %v after %d attempts", err, attempts)
	}
	// Charged per attempt, the second and third would each wait 500ms.
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("a launch throttled twice took %v: its instances were charged again for each attempt", d)
	}
}
