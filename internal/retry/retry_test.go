package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDo(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	tests := []struct {
		name      string
		policy    Policy
		results   []error // nil entry = not ready yet; last one returned done
		doneAt    int
		wantCalls int
		wantErr   error
	}{
		{name: "first try", doneAt: 1, wantCalls: 1},
		{name: "retries errors then succeeds", results: []error{boom, boom}, doneAt: 3, wantCalls: 3},
		{name: "not ready is retried", results: []error{nil, nil}, doneAt: 3, wantCalls: 3},
		{name: "attempts run out", policy: Policy{MaxAttempts: 2}, results: []error{boom, boom, boom}, doneAt: 9, wantCalls: 2, wantErr: boom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.policy.Initial = time.Millisecond
			calls := 0
			err := Do(context.Background(), tt.policy, func(context.Context) (bool, error) {
				calls++
				if calls >= tt.doneAt {
					return true, nil
				}
				return false, tt.results[calls-1]
			})
			if calls != tt.wantCalls {
				t.Errorf("calls = %d, want %d", calls, tt.wantCalls)
			}
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestDoStopsAtDeadlineWithLastError(t *testing.T) {
	t.Parallel()
	boom := errors.New("connection refused")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := Do(ctx, Policy{Initial: 5 * time.Millisecond, Max: 10 * time.Millisecond}, func(context.Context) (bool, error) {
		return false, boom
	})
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, boom) {
		t.Fatalf("err = %v, want deadline exceeded wrapping the last error", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("took %v, should stop at the deadline", el)
	}
}

type slowDown struct{ after time.Duration }

func (e slowDown) Error() string                 { return "slow down" }
func (e slowDown) RetryAfterHint() time.Duration { return e.after }

func TestDoHonoursRetryAfterCapped(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		hint     time.Duration
		cap      time.Duration
		atLeast  time.Duration
		lessThan time.Duration
	}{
		{name: "waits the hint", hint: 80 * time.Millisecond, cap: time.Second, atLeast: 80 * time.Millisecond, lessThan: 500 * time.Millisecond},
		{name: "caps the hint", hint: time.Hour, cap: 50 * time.Millisecond, atLeast: 50 * time.Millisecond, lessThan: 500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			calls := 0
			start := time.Now()
			err := Do(context.Background(), Policy{Initial: time.Millisecond, MaxRetryAfter: tt.cap}, func(context.Context) (bool, error) {
				calls++
				if calls == 1 {
					return false, slowDown{tt.hint}
				}
				return true, nil
			})
			el := time.Since(start)
			if err != nil || el < tt.atLeast || el >= tt.lessThan {
				t.Fatalf("err=%v after %v, want success after [%v, %v)", err, el, tt.atLeast, tt.lessThan)
			}
		})
	}
}
