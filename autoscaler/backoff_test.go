package autoscaler

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/provisionhq/provision/providers"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)
	type step struct {
		at      time.Duration // since t0
		fail    error         // recorded at `at`, if set
		succeed bool          // Succeeded at `at`
		until   time.Duration // expected backoff end since t0; 0: not backed off
	}
	quota := &providers.Error{Kind: providers.ErrQuota, Cloud: "aws", Pool: "p"}
	cases := []struct {
		name  string
		steps []step
	}{
		{"first failure backs off 30s", []step{{at: 0, fail: quota, until: 30 * time.Second}}},
		{"expires", []step{{at: 0, fail: quota, until: 30 * time.Second}, {at: 30 * time.Second}}},
		{"doubles on each failure", []step{
			{at: 0, fail: quota, until: 30 * time.Second},
			{at: 30 * time.Second, fail: quota, until: 90 * time.Second},
			{at: 90 * time.Second, fail: fmt.Errorf("wrapped: %w", providers.ErrCapacity), until: 210 * time.Second},
		}},
		{"capped at 10 min", []step{
			{at: 0, fail: quota}, {at: 0, fail: quota}, {at: 0, fail: quota}, {at: 0, fail: quota},
			{at: 0, fail: quota}, {at: 0, fail: quota}, {at: 0, fail: quota, until: 10 * time.Minute},
		}},
		{"success resets", []step{
			{at: 0, fail: quota}, {at: 0, fail: quota, until: time.Minute},
			{at: time.Minute, succeed: true},
			{at: time.Minute, fail: quota, until: time.Minute + 30*time.Second},
		}},
		{"other errors ignored", []step{
			{at: 0, fail: providers.ErrThrottled}, {at: 0, fail: providers.ErrInvalidSpec}, {at: 0, fail: errors.New("boom")},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			now := t0
			b := &Backoff{Now: func() time.Time { return now }}
			for i, s := range tc.steps {
				now = t0.Add(s.at)
				if s.succeed {
					b.Succeeded("p")
				}
				if s.fail != nil {
					b.Failed("p", s.fail)
				}
				st, ok := b.Status("p")
				if s.until == 0 {
					if ok && i == len(tc.steps)-1 {
						t.Errorf("step %d: backed off until %v, want not", i, st.Until)
					}
					continue
				}
				if !ok || !st.Until.Equal(t0.Add(s.until)) {
					t.Errorf("step %d: status %v %v, want until t0+%v", i, st.Until.Sub(t0), ok, s.until)
				}
				if !errors.Is(st.Cause, providers.ErrQuota) && !errors.Is(st.Cause, providers.ErrCapacity) {
					t.Errorf("step %d: cause %v", i, st.Cause)
				}
			}
		})
	}
}
