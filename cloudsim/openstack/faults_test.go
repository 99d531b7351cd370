package openstack_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/provisionhq/provision/cloudsim"
	simos "github.com/provisionhq/provision/cloudsim/openstack"
)

// faultyWire is a wire client of an emulator whose Sim the test controls.
func faultyWire(t *testing.T) (*wire, *cloudsim.Sim) {
	t.Helper()
	sim := cloudsim.NewSim(cloudsim.Faults{}, 5)
	srv := simos.New(sim, simos.Options{PublicURL: "http://cloudsim.test"})
	ts := httptest.NewServer(srv)
	t.Cleanup(func() { ts.Close(); srv.Close() })
	w := &wire{t: t, url: ts.URL}
	code, _, h := w.do("POST", "/identity/v3/auth/tokens", nil, passwordAuth("Default"))
	if code != http.StatusCreated {
		t.Fatalf("password auth: %d", code)
	}
	w.token = h.Get("X-Subject-Token")
	return w, sim
}

// Server errors come in the shape of the service they are for.
func TestServerErrorsAreEachServices(t *testing.T) {
	w, sim := faultyWire(t)
	sim.SetFaults(cloudsim.Faults{ServerErrorRate: 1})
	for _, tt := range []struct {
		service, method, path, body string
		key                         string // the error body's top-level key by status
		key503                      string
	}{
		{"keystone", "POST", "/identity/v3/auth/tokens", passwordAuth("Default"), "error", "error"},
		{"nova", "GET", "/compute/v2.1/servers/detail", "", "computeFault", "serviceUnavailable"},
		{"neutron", "GET", "/network/v2.0/ports", "", "NeutronError", "NeutronError"},
	} {
		seen := map[int]bool{}
		for range 10 {
			code, body, _ := w.do(tt.method, tt.path, nil, tt.body)
			var m map[string]json.RawMessage
			if err := json.Unmarshal([]byte(body), &m); err != nil {
				t.Fatalf("%s: %d %s: %v", tt.service, code, body, err)
			}
			want := map[int]string{500: tt.key, 503: tt.key503}[code]
			if _, ok := m[want]; want == "" || !ok || len(m) != 1 {
				t.Fatalf("%s: %d %s, want 500 {%q} or 503 {%q}", tt.service, code, body, tt.key, tt.key503)
			}
			seen[code] = true
		}
		if len(seen) != 2 {
			t.Errorf("%s: 10 server errors were all %v", tt.service, seen)
		}
	}
}

// Nova has no idempotency token: a create whose answer was lost after the
// work made its server, which a client finds by listing.
func TestLostCreateAnswerLeavesTheServer(t *testing.T) {
	w, sim := faultyWire(t)
	sim.SetFaults(cloudsim.Faults{ServerErrorRate: 1, AfterWork: 1})
	create := `{"server":{"name":"lost","flavorRef":"2","imageRef":"` + simos.ImageDebian12 + `","networks":"auto"}}`
	if code, body, _ := w.do("POST", "/compute/v2.1/servers", nil, create); code < 500 {
		t.Fatalf("create through a fault: %d %s", code, body)
	}
	sim.SetFaults(cloudsim.Faults{})
	code, body, _ := w.do("GET", "/compute/v2.1/servers?name=lost", nil, "")
	var list struct {
		Servers []struct{ Name string } `json:"servers"`
	}
	decode(t, body, &list)
	if code != http.StatusOK || len(list.Servers) != 1 {
		t.Fatalf("servers named lost: %d %s, want the one the lost create made", code, body)
	}
}
