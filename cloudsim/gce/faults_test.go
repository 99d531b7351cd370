package gce

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	"google.golang.org/api/googleapi"

	"github.com/provisionhq/provision/cloudsim"
)

// Server errors are Compute Engine's: 500 or 503 with reason backendError
// in Google's JSON error shape; before the work they create nothing.
func TestServerErrorsAreGCEs(t *testing.T) {
	ic, _, sim, srv := client(t, cloudsim.Faults{ServerErrorRate: 1})
	seen := map[int]bool{}
	for i := range 12 {
		_, err := ic.BulkInsert(t.Context(), bulk([]string{"a", "b"}, fmt.Sprintf("22222222-2222-4222-8222-%012d", i)))
		var ge *googleapi.Error
		if !errors.As(err, &ge) {
			t.Fatalf("bulkInsert = %v, want a googleapi error", err)
		}
		if (ge.Code != 500 && ge.Code != 503) || len(ge.Errors) != 1 || ge.Errors[0].Reason != "backendError" {
			t.Fatalf("bulkInsert = %d %+v, want 500 or 503 backendError", ge.Code, ge.Errors)
		}
		seen[ge.Code] = true
	}
	if len(seen) != 2 {
		t.Errorf("12 server errors were all %v", seen)
	}
	if n := len(srv.Instances()); n != 0 {
		t.Errorf("%d instances created by calls that failed before their work", n)
	}
	if got := sim.FaultCounts(); got.ServerErrors != 12 {
		t.Errorf("fault counts %+v", got)
	}
}

// A fault after the work started the operation: the retry with the same
// requestId gets that operation back, not a second set of instances.
func TestLostInsertAnswerIsReplayedByRequestID(t *testing.T) {
	const reqID = "33333333-3333-4333-8333-333333333333"
	for _, f := range []cloudsim.Faults{{ServerErrorRate: 1, AfterWork: 1}, {ResetRate: 1, AfterWork: 1}} {
		ic, _, sim, srv := client(t, f)
		if _, err := ic.BulkInsert(t.Context(), bulk([]string{"a", "b"}, reqID)); err == nil {
			t.Fatal("bulkInsert answered through a fault")
		} else if f.ResetRate > 0 && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("reset: err = %v, want connection reset by peer", err)
		}
		if n := len(srv.Instances()); n != 2 {
			t.Fatalf("%d instances after a fault after the work, want 2", n)
		}
		sim.SetFaults(cloudsim.Faults{})
		if _, err := ic.BulkInsert(t.Context(), bulk([]string{"a", "b"}, reqID)); err != nil {
			t.Fatal(err)
		}
		if n := len(srv.Instances()); n != 2 {
			t.Fatalf("retry with the requestId: %d instances, want the same 2", n)
		}
	}
}
