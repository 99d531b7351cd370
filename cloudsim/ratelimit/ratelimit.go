// Package ratelimit owns the published API rate limits of the clouds that
// cloudsim emulates, as the clouds describe them: EC2's request-token and
// resource-token buckets (EC2), GCE's per-minute rate quotas (gce.go), and
// what OpenStack publishes (nothing: openstack.go). An emulator consults a
// limiter before it serves a call and answers a refused one with the
// cloud's own throttling error; cloudsim enforces none of them unless asked
// (cloudsim --rate-limits published, or the emulator's Options).
//
// Time is read through the limiter's clock (time.Now unless set), so a
// benchmark running in virtual time (testing/synctest) sees buckets refill
// at the published rates of that time.
package ratelimit

import "time"

// Bucket is a token bucket's published size: it holds at most Capacity
// tokens, starts full, and gains Refill tokens per second.
type Bucket struct {
	Capacity float64
	Refill   float64 // tokens per second
}

// bucket is one Bucket's level at a moment.
type bucket struct {
	Bucket
	tokens float64
	at     time.Time
}

func newBucket(b Bucket, now time.Time) *bucket {
	return &bucket{Bucket: b, tokens: b.Capacity, at: now}
}

// level refills the bucket up to now and returns its tokens. The refill is
// continuous (rate × elapsed time): EC2 documents "a set number of tokens
// added back every second", which this matches to within one second.
func (b *bucket) level(now time.Time) float64 {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(b.Capacity, b.tokens+d.Seconds()*b.Refill)
		b.at = now
	}
	return b.tokens
}
