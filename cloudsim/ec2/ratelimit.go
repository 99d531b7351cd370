package ec2

import (
	"net/http"
	"net/url"
)

// Limiter is a rate limit the emulator enforces beside Faults.ThrottleRate
// (which refuses calls at random): ratelimit.EC2 holds EC2's published
// token buckets. A call it refuses is answered as EC2 answers one over its
// limits, 503 RequestLimitExceeded, and is still counted in Sim.Calls.
type Limiter interface {
	// Allow reports whether a call of action with the Query API
	// parameters form may go on now, taking its tokens if so.
	Allow(action string, form url.Values) bool
}

// overLimit reports whether Options.Limits refuses the call.
func (s *Server) overLimit(action string, form url.Values) bool {
	return s.opts.Limits != nil && !s.opts.Limits.Allow(action, form)
}

// errRequestLimit is EC2's answer to a throttled call.
func errRequestLimit() *apiError {
	return &apiError{status: http.StatusServiceUnavailable, code: "RequestLimitExceeded", message: "Request limit exceeded."}
}
