package cloudsim

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The same seed and faults give the same request faults, in order.
func TestRequestFaultsAreSeeded(t *testing.T) {
	t.Parallel()
	f := Faults{ServerErrorRate: 0.2, ResetRate: 0.1, AfterWork: 0.5}
	draw := func(seed uint64) []requestFault {
		s := NewSim(f, seed)
		out := make([]requestFault, 500)
		for i := range out {
			out[i] = s.decide()
		}
		return out
	}
	a, b, c := draw(7), draw(7), draw(8)
	same := func(x, y []requestFault) bool {
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	if !same(a, b) {
		t.Fatal("two Sims with one seed drew different faults")
	}
	if same(a, c) {
		t.Fatal("two seeds drew the same 500 faults")
	}
	var errs, resets, after, s500 int
	for _, d := range a {
		switch {
		case d.reset:
			resets++
		case d.status != 0:
			errs++
			if d.status == http.StatusInternalServerError {
				s500++
			}
		}
		if d.after {
			after++
		}
	}
	// 500 draws: 100 errors and 50 resets expected; generous bounds.
	if errs < 70 || errs > 130 || resets < 30 || resets > 75 || s500 == 0 || s500 == errs || after < (errs+resets)/4 || after > (errs+resets)*3/4 {
		t.Errorf("500 requests: %d server errors (%d of them 500), %d resets, %d after the work", errs, s500, resets, after)
	}
	if got := NewSim(f, 7).FaultCounts(); got != (FaultCounts{}) {
		t.Errorf("a fresh Sim counts %+v", got)
	}
}

// A Sim without request faults draws nothing for them, so the throttling
// decisions of existing seeds do not move.
func TestNoRequestFaultsDrawNothing(t *testing.T) {
	t.Parallel()
	f := Faults{ThrottleRate: 0.5}
	a, b := NewSim(f, 3), NewSim(f, 3)
	for range 100 {
		b.decide()
		if a.Call("x") != b.Call("x") {
			t.Fatal("deciding a request's faults moved the throttling sequence")
		}
	}
}

// serveWith starts a server whose every request goes through sim.Serve
// and counts the requests that did their work.
func serveWith(t *testing.T, sim *Sim) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var worked atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sim.Serve(w, r, func(w http.ResponseWriter, _ *http.Request, status int) {
			w.WriteHeader(status)
			_, _ = io.WriteString(w, "cloud error")
		}, func(w http.ResponseWriter, r *http.Request) {
			worked.Add(1)
			_, _ = io.WriteString(w, "done")
		})
	}))
	t.Cleanup(hs.Close)
	return hs, &worked
}

func post(t *testing.T, url string) (*http.Response, string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader("Action=Work"))
	if err != nil {
		t.Fatal(err)
	}
	// A fresh connection per request: no transport-level replay.
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// A server error strikes before the work, or after it for the AfterWork
// share (the answer of work done is thrown away); never half way.
func TestServerErrorBeforeOrAfterTheWork(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name      string
		afterWork float64
		worked    int32
	}{{"before", 0, 0}, {"after", 1, 5}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sim := NewSim(Faults{ServerErrorRate: 1, AfterWork: tt.afterWork}, 1)
			hs, worked := serveWith(t, sim)
			for range 5 {
				resp, body, err := post(t, hs.URL)
				if err != nil {
					t.Fatal(err)
				}
				if (resp.StatusCode != 500 && resp.StatusCode != 503) || body != "cloud error" {
					t.Fatalf("answer %d %q, want a 500 or 503 cloud error", resp.StatusCode, body)
				}
			}
			if got := worked.Load(); got != tt.worked {
				t.Errorf("work done %d times, want %d", got, tt.worked)
			}
			want := FaultCounts{ServerErrors: 5, AfterWork: int(tt.worked)}
			if got := sim.FaultCounts(); got != want {
				t.Errorf("fault counts %+v, want %+v", got, want)
			}
		})
	}
}

// A reset is a TCP RST with no answer at all, before or after the work.
func TestResetIsConnectionResetByPeer(t *testing.T) {
	t.Parallel()
	sim := NewSim(Faults{ResetRate: 1, AfterWork: 1}, 1)
	hs, worked := serveWith(t, sim)
	resp, _, err := post(t, hs.URL)
	if err == nil {
		t.Fatalf("got an answer (%d) through a reset connection", resp.StatusCode)
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("err = %v, want connection reset by peer", err)
	}
	if worked.Load() != 1 {
		t.Errorf("work done %d times, want 1 (the reset strikes after it)", worked.Load())
	}
	if got := sim.FaultCounts(); got != (FaultCounts{Resets: 1, AfterWork: 1}) {
		t.Errorf("fault counts %+v", got)
	}
}

func TestLatencyDelaysEveryRequest(t *testing.T) {
	t.Parallel()
	const latency = 50 * time.Millisecond
	sim := NewSim(Faults{Latency: latency}, 1)
	hs, _ := serveWith(t, sim)
	start := time.Now()
	resp, body, err := post(t, hs.URL)
	if err != nil || resp.StatusCode != 200 || body != "done" {
		t.Fatalf("answer %v %q %v", resp, body, err)
	}
	if d := time.Since(start); d < latency {
		t.Errorf("answered in %v, before the %v latency", d, latency)
	}
}
