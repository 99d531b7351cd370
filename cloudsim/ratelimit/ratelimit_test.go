package ratelimit

import (
	"fmt"
	"net/url"
	"testing"
	"testing/synctest"
	"time"
)

func launch(n int) url.Values {
	return url.Values{"MinCount": {fmt.Sprint(n)}, "MaxCount": {fmt.Sprint(n)}}
}

// allowed counts how many of n calls in a row are allowed.
func allowed(l *EC2, n int, action string, form url.Values) int {
	got := 0
	for range n {
		if l.Allow(action, form) {
			got++
		}
	}
	return got
}

// The RunInstances request bucket holds 5 and refills 2 a second; its
// resource bucket holds 1,000 instances and refills 2 a second: the
// page's own example (1,000 instances at once, then 2 a second).
func TestEC2RunInstancesBuckets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := NewEC2()
		if got := allowed(l, 6, "RunInstances", launch(1)); got != 5 {
			t.Fatalf("%d of 6 launches allowed at once, want 5 (the request bucket)", got)
		}
		time.Sleep(500 * time.Millisecond)
		if !l.Allow("RunInstances", launch(1)) || l.Allow("RunInstances", launch(1)) {
			t.Fatal("after 0.5 s the request bucket should have refilled exactly one token")
		}
		time.Sleep(10 * time.Second) // request bucket full again; resource bucket at 1,000
		if !l.Allow("RunInstances", launch(1000)) {
			t.Fatal("a launch of 1,000 instances was refused with a full resource bucket")
		}
		if l.Allow("RunInstances", launch(2)) {
			t.Fatal("a launch of 2 allowed right after 1,000")
		}
		time.Sleep(time.Second)
		if !l.Allow("RunInstances", launch(2)) {
			t.Fatal("a launch of 2 refused a second after the resource bucket emptied (refill 2/s)")
		}
		if got := l.Refused()["RunInstances"]; got != 3 {
			t.Errorf("Refused RunInstances = %d, want 3", got)
		}
	})
}

// A refused call takes no token: a caller that keeps asking while it is
// throttled does not push its own recovery further away.
func TestEC2RefusedCallsTakeNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := NewEC2()
		allowed(l, 5, "RunInstances", launch(1))
		if got := allowed(l, 100, "RunInstances", launch(1)); got != 0 {
			t.Fatalf("%d launches allowed on an empty bucket", got)
		}
		time.Sleep(time.Second)
		if got := allowed(l, 5, "RunInstances", launch(1)); got != 2 {
			t.Fatalf("%d launches allowed a second later, want 2", got)
		}
	})
}

// DescribeInstances draws from the small "unfiltered and unpaginated"
// bucket (50, 10/s) unless it filters or paginates, which uses the
// non-mutating bucket (100, 20/s); each action has buckets of its own.
func TestEC2DescribeBuckets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := NewEC2()
		byID := url.Values{"InstanceId.1": {"i-1"}}
		if got := allowed(l, 60, "DescribeInstances", byID); got != 50 {
			t.Errorf("%d of 60 unfiltered describes allowed, want 50", got)
		}
		filtered := url.Values{"Filter.1.Name": {"tag:provision:cluster"}, "Filter.1.Value.1": {"c"}}
		if got := allowed(l, 110, "DescribeInstances", filtered); got != 100 {
			t.Errorf("%d of 110 filtered describes allowed, want 100", got)
		}
		if got := allowed(l, 110, "DescribeImages", nil); got != 100 {
			t.Errorf("%d of 110 DescribeImages allowed, want 100 (a bucket apart from DescribeInstances')", got)
		}
		time.Sleep(time.Second)
		if got := allowed(l, 30, "DescribeInstances", url.Values{"MaxResults": {"1000"}}); got != 20 {
			t.Errorf("%d paginated describes allowed a second later, want 20", got)
		}
	})
}

// TerminateInstances takes one resource token per instance ID it names.
func TestEC2TerminateCountsInstances(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := NewEC2()
		ids := url.Values{}
		for i := range 600 {
			ids.Set(fmt.Sprintf("InstanceId.%d", i+1), fmt.Sprint("i-", i))
		}
		if !l.Allow("TerminateInstances", ids) || l.Allow("TerminateInstances", ids) {
			t.Fatal("two terminations of 600 instances: want the first allowed and the second refused (1,000 tokens)")
		}
		time.Sleep(10 * time.Second) // 20/s refill: 200 more
		if !l.Allow("TerminateInstances", ids) {
			t.Fatal("termination of 600 refused with 600 tokens back")
		}
	})
}

func TestEC2Categories(t *testing.T) {
	for _, c := range []struct {
		action string
		want   Bucket
	}{
		{"RunInstances", Bucket{5, 2}},
		{"TerminateInstances", Bucket{100, 5}},
		{"CreateTags", Bucket{100, 10}},
		{"StopInstances", EC2Mutating},
		{"CreateSecurityGroup", EC2Mutating},
		{"AuthorizeSecurityGroupIngress", EC2ResourceIntensive},
		{"DescribeImages", EC2NonMutating},
		{"DescribeInstances", EC2UnfilteredNonMutating},
	} {
		if _, got := requestBucket(c.action, nil); got != c.want {
			t.Errorf("%s: bucket %+v, want %+v", c.action, got, c.want)
		}
	}
}

// GCE counts a quota group's calls over synchronized minutes.
func TestWindowedRefillsAtTheNextMinute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := NewWindowed(map[string]Window{"queries": GCEQueries})
		time.Sleep(time.Until(time.Now().Truncate(time.Minute).Add(time.Minute + 15*time.Second)))
		n := 0
		for w.Allow("queries") {
			n++
		}
		if n != 1500 {
			t.Fatalf("%d calls allowed in a minute, want 1500", n)
		}
		time.Sleep(44 * time.Second)
		if w.Allow("queries") {
			t.Fatal("allowed before the next minute started")
		}
		time.Sleep(time.Second)
		if !w.Allow("queries") || !w.Allow("unlimited") {
			t.Fatal("refused at the start of the next minute")
		}
	})
}
