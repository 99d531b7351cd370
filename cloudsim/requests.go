package cloudsim

import (
	"net"
	"net/http"
	"time"
)

// FaultCounts counts the request faults a Sim injected.
type FaultCounts struct {
	ServerErrors int // requests answered 500 or 503
	Resets       int // connections reset without an answer
	// AfterWork is how many of both struck after the request's work was
	// done (the call took effect; its caller cannot tell).
	AfterWork int
}

// ServerError writes a server error (status 500 or 503) in a cloud's own
// error shape; each emulator has one.
type ServerError func(w http.ResponseWriter, r *http.Request, status int)

// requestFault is what the Sim decided for one request.
type requestFault struct {
	latency time.Duration
	status  int  // 500 or 503: answer a server error
	reset   bool // reset the connection
	after   bool // strike after the work, not before
}

// decide draws one request's fault from the seeded source. It draws
// nothing when no request fault is configured, so the throttling decisions
// of a Sim without request faults stay what they were.
func (s *Sim) decide() requestFault {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.faults
	d := requestFault{latency: f.Latency}
	if f.ServerErrorRate <= 0 && f.ResetRate <= 0 {
		return d
	}
	u := s.rng.Float64()
	switch {
	case u < f.ResetRate:
		d.reset = true
		s.injected.Resets++
	case u < f.ResetRate+f.ServerErrorRate:
		d.status = http.StatusInternalServerError
		if s.rng.Float64() < 0.5 {
			d.status = http.StatusServiceUnavailable
		}
		s.injected.ServerErrors++
	default:
		return d
	}
	if f.AfterWork > 0 && s.rng.Float64() < f.AfterWork {
		d.after = true
		s.injected.AfterWork++
	}
	return d
}

// FaultCounts returns how many request faults the Sim injected so far.
func (s *Sim) FaultCounts() FaultCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.injected
}

// Serve runs one API request through the request faults: it waits
// Faults.Latency, then either serves the request or fails it with a
// server error (written by serverError in the cloud's shape) or a reset
// connection. The fault is decided before any work, so a request is never
// half done: a fault that strikes before the work leaves the cloud as it
// was; one that strikes after it (Faults.AfterWork) lets serve finish and
// throws its answer away. Calls a fault stops before the work are not
// counted in Calls (FaultCounts counts them).
func (s *Sim) Serve(w http.ResponseWriter, r *http.Request, serverError ServerError, serve http.HandlerFunc) {
	d := s.decide()
	if d.latency > 0 {
		t := time.NewTimer(d.latency)
		select {
		case <-r.Context().Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	if d.status == 0 && !d.reset {
		serve(w, r)
		return
	}
	if d.after {
		serve(discard{http.Header{}}, r)
	}
	if d.reset {
		reset(w)
		return
	}
	serverError(w, r, d.status)
}

// discard is a ResponseWriter that drops the answer of a request whose
// connection is reset or that is answered with an error after its work.
type discard struct{ h http.Header }

func (d discard) Header() http.Header       { return d.h }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

// reset closes the request's connection with a TCP RST (SO_LINGER 0), as
// a load balancer dropping a connection does: the client reads
// "connection reset by peer" and no response.
func reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// No connection of its own (HTTP/2): net/http aborts the stream
		// without a response.
		panic(http.ErrAbortHandler)
	}
	raw := conn
	if nc, ok := conn.(interface{ NetConn() net.Conn }); ok { // TLS
		raw = nc.NetConn()
	}
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = raw.Close()
}
