package ec2

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/provisionhq/provision/cloudsim"
)

// Server errors are EC2's: 500 InternalError and 503 Unavailable in the
// XML error shape the SDK parses; before the work they launch nothing.
func TestServerErrorsAreEC2s(t *testing.T) {
	c, sim, srv := client(t, cloudsim.Faults{ServerErrorRate: 1})
	seen := map[string]bool{}
	for i := range 12 {
		_, err := run(t, c, 1, fmt.Sprint("tok-", i))
		var re *smithyhttp.ResponseError
		if !errors.As(err, &re) {
			t.Fatalf("RunInstances = %v, want an HTTP error", err)
		}
		got := fmt.Sprintf("%d %s", re.HTTPStatusCode(), code(err))
		if got != "500 InternalError" && got != "503 Unavailable" {
			t.Fatalf("RunInstances = %s (%v), want 500 InternalError or 503 Unavailable", got, err)
		}
		seen[got] = true
	}
	if len(seen) != 2 {
		t.Errorf("12 server errors were all %v", seen)
	}
	if n := srv.Count(); n != 0 {
		t.Errorf("%d instances launched by calls that failed before their work", n)
	}
	if got := sim.FaultCounts(); got.ServerErrors != 12 || got.AfterWork != 0 {
		t.Errorf("fault counts %+v", got)
	}
}

// A fault after the work launched the instances: the retry with the same
// ClientToken gets that reservation back, not a second one.
func TestLostLaunchAnswerIsReplayedByClientToken(t *testing.T) {
	for _, f := range []cloudsim.Faults{{ServerErrorRate: 1, AfterWork: 1}, {ResetRate: 1, AfterWork: 1}} {
		c, sim, srv := client(t, f)
		_, err := run(t, c, 2, "tok-lost")
		if err == nil {
			t.Fatal("RunInstances answered through a fault")
		}
		if f.ResetRate > 0 && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("reset: err = %v, want connection reset by peer", err)
		}
		if n := srv.Count(); n != 2 {
			t.Fatalf("%d instances after a fault after the work, want 2", n)
		}
		sim.SetFaults(cloudsim.Faults{})
		out, err := run(t, c, 2, "tok-lost")
		if err != nil {
			t.Fatal(err)
		}
		if n := srv.Count(); n != 2 || len(out.Instances) != 2 {
			t.Fatalf("retry with the token: %d instances alive, %d returned; want the same 2", n, len(out.Instances))
		}
		if aws.ToString(out.Instances[0].ClientToken) != "tok-lost" {
			t.Errorf("replayed instance token %q", aws.ToString(out.Instances[0].ClientToken))
		}
	}
}
