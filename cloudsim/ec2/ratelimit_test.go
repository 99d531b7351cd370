package ec2

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/provisionhq/provision/cloudsim"
)

// refuseAfter allows the first n calls of each action, then refuses.
type refuseAfter struct {
	mu    sync.Mutex
	n     int
	seen  map[string]int
	forms []url.Values
}

func (l *refuseAfter) Allow(action string, form url.Values) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen[action]++
	l.forms = append(l.forms, form)
	return l.seen[action] <= l.n
}

// A call Options.Limits refuses is answered as EC2 answers one over its
// limits (503 RequestLimitExceeded), does nothing, and is still counted;
// the limiter sees the call's parameters (RunInstances' MaxCount).
func TestLimitsAnswerRequestLimitExceeded(t *testing.T) {
	lim := &refuseAfter{n: 1, seen: map[string]int{}}
	sim := cloudsim.NewSim(cloudsim.Faults{}, 1)
	srv := New(sim, Options{Limits: lim})
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	form := validLaunch()
	form.Set("MaxCount", "3")
	form.Set("MinCount", "3")
	if status, body := post(t, hs.URL, form); status != http.StatusOK {
		t.Fatalf("first launch: %d %s", status, body)
	}
	status, body := post(t, hs.URL, form)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "<Code>RequestLimitExceeded</Code>") {
		t.Fatalf("second launch: %d %s, want 503 RequestLimitExceeded", status, body)
	}
	if n := srv.Count(); n != 3 {
		t.Errorf("%d instances alive, want the first launch's 3", n)
	}
	if got := sim.Calls("RunInstances"); got != 2 {
		t.Errorf("Calls(RunInstances) = %d, want 2 (the refused one too)", got)
	}
	if got := lim.forms[0].Get("MaxCount"); got != "3" {
		t.Errorf("the limiter saw MaxCount %q, want 3", got)
	}
}
