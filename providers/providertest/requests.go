package providertest

import (
	"net/http"
	"sync/atomic"
	"testing"
)

// Requests carries requests to http.DefaultTransport and counts them: a
// provider built with Env.HTTPClient = &http.Client{Transport: r} shows
// whether every API request it makes goes through that client.
type Requests struct{ n atomic.Int64 }

func (r *Requests) RoundTrip(req *http.Request) (*http.Response, error) {
	r.n.Add(1)
	return http.DefaultTransport.RoundTrip(req)
}

// Count is how many requests r has carried.
func (r *Requests) Count() int64 { return r.n.Load() }

// CarriedAll fails t unless r carried a request at least for every one the
// cloud served (served: an emulator's calls by action).
func (r *Requests) CarriedAll(t testing.TB, served map[string]int) {
	t.Helper()
	var want int64
	for _, n := range served {
		want += int64(n)
	}
	if got := r.Count(); got == 0 || got < want {
		t.Fatalf("the client carried %d requests; the cloud served %d", got, want)
	}
}
