package aws

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisionhq/provision/providers"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// fakeEC2 is an EC2 endpoint that has no instances and refuses every
// RunInstances with one error, in EC2's wire format (a Response/Errors XML
// document with a request ID, which must not reach the message).
func fakeEC2(t *testing.T, status int, code, message string) string {
	t.Helper()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
		switch r.PostForm.Get("Action") {
		case "DescribeInstances":
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>8f7724cf-496f-496e-8fe3-example</requestId><reservationSet/></DescribeInstancesResponse>`)
		default:
			w.WriteHeader(status)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>ea966190-f9aa-478e-9ede-example</RequestID></Response>`, code, message)
		}
	}))
	t.Cleanup(hs.Close)
	return hs.URL
}

// TestLaunchErrorsAreOneClearLine: every EC2 refusal of a launch comes
// back as the kind the engine acts on, in one line that names the pool
// and the value to fix, with no SDK dump or request ID.
func TestLaunchErrorsAreOneClearLine(t *testing.T) {
	full := providers.Settings{"instance_type": "t3.micro", "ami": "ami-0123456789abcdef0", "subnet_id": "subnet-0abc",
		"security_group_ids": []any{"sg-0aaa", "sg-0bbb"}, "key_name": "ops"}
	tests := []struct {
		name   string
		status int
		code   string
		msg    string
		set    providers.Settings
		kind   error
	}{
		{"instance type", 400, "InvalidInstanceType", "The instance type &apos;t3.huge&apos; does not exist.",
			providers.Settings{"instance_type": "t3.huge", "ami": "ami-0123456789abcdef0"}, providers.ErrInvalidSpec},
		{"parameter value", 400, "InvalidParameterValue", "Invalid value &apos;t9.small&apos; for InstanceType.",
			providers.Settings{"instance_type": "t9.small", "ami": "ami-0123456789abcdef0"}, providers.ErrInvalidSpec},
		{"zone", 400, "InvalidParameterValue", "Invalid availability zone: [us-east-1z]", full, providers.ErrInvalidSpec},
		{"image not found", 400, "InvalidAMIID.NotFound", "The image id &apos;[ami-0123456789abcdef0]&apos; does not exist", full, providers.ErrInvalidSpec},
		{"image malformed", 400, "InvalidAMIID.Malformed", "Invalid id: &quot;ami-nothex&quot; (expecting &quot;ami-...&quot;)",
			providers.Settings{"instance_type": "t3.micro", "ami": "ami-nothex"}, providers.ErrInvalidSpec},
		{"subnet", 400, "InvalidSubnetID.NotFound", "The subnet ID &apos;subnet-0abc&apos; does not exist", full, providers.ErrInvalidSpec},
		{"security group", 400, "InvalidGroup.NotFound", "The security group &apos;sg-0bbb&apos; does not exist in VPC &apos;vpc-1&apos;", full, providers.ErrInvalidSpec},
		{"key pair", 400, "InvalidKeyPair.NotFound", "The key pair &apos;ops&apos; does not exist", full, providers.ErrInvalidSpec},
		{"combination", 400, "InvalidParameterCombination", "Network interfaces and an instance-level subnet ID may not be specified on the same request", full, providers.ErrInvalidSpec},
		{"unsupported", 400, "Unsupported", "Your requested instance type (m7g.large) is not supported in your requested Availability Zone (us-east-1e). Please retry your request by not specifying an Availability Zone or choosing us-east-1a, us-east-1b.",
			providers.Settings{"instance_type": "m7g.large", "ami": "ami-0123456789abcdef0", "subnet_id": "subnet-0e"}, providers.ErrInvalidSpec},
		{"not authorized", 403, "UnauthorizedOperation", "You are not authorized to perform this operation. Encoded authorization failure message: " + strings.Repeat("AbCdEf0123\n", 60), testSettings, providers.ErrInvalidSpec},
		{"capacity", 500, "InsufficientInstanceCapacity", "We currently do not have sufficient t3.micro capacity in the Availability Zone you requested (us-east-1a).", testSettings, providers.ErrCapacity},
		{"spot capacity", 500, "UnfulfillableCapacity", "There is no Spot capacity available that matches your request.", testSettings, providers.ErrCapacity},
		{"spot price", 400, "SpotMaxPriceTooLow", "Your Spot request price of 0.001 is lower than the minimum required Spot request fulfillment price of 0.0031.", testSettings, providers.ErrCapacity},
		{"spot count", 400, "MaxSpotInstanceCountExceeded", "Max spot instance count exceeded", testSettings, providers.ErrQuota},
		{"vcpu quota", 400, "VcpuLimitExceeded", "You have requested more vCPU capacity than your current vCPU limit of 32 allows.", testSettings, providers.ErrQuota},
		{"unknown code", 400, "SomethingNew", "A condition\nEC2 added\n  last week.", testSettings, nil},
		// Server errors outlast the SDK's attempts here (every answer is
		// one): unavailable, which the engine does not retry again.
		{"internal error", 500, "InternalError", "An internal error has occurred. Retry your request.", testSettings, providers.ErrUnavailable},
		{"unavailable", 503, "Unavailable", "The server is overloaded and can&apos;t handle the request.", testSettings, providers.ErrUnavailable},
		{"unknown 5xx code", 502, "BadGatewayish", "Something in front of EC2 failed.", testSettings, providers.ErrUnavailable},
	}
	var golden strings.Builder
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestProvider(t, fakeEC2(t, tt.status, tt.code, tt.msg), "errs", nil)
			sp := specs(t, "errs", "gpu", 2, tt.set)
			for i := range sp {
				sp[i].Spot = strings.HasPrefix(tt.name, "spot")
			}
			ms, err := p.Create(t.Context(), sp)
			if err == nil || len(ms) != 0 {
				t.Fatalf("Create = %d machines, %v; want an error and none", len(ms), err)
			}
			if tt.kind != nil && !errors.Is(err, tt.kind) {
				t.Errorf("Create = %v, want %v", err, tt.kind)
			}
			for _, k := range []error{providers.ErrInvalidSpec, providers.ErrCapacity, providers.ErrQuota, providers.ErrThrottled, providers.ErrUnavailable} {
				if k != tt.kind && errors.Is(err, k) {
					t.Errorf("Create = %v, also %v", err, k)
				}
			}
			var pe *providers.Error
			if !errors.As(err, &pe) || pe.Code != tt.code {
				t.Errorf("Create = %#v, want a *providers.Error with code %s", err, tt.code)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") || strings.Contains(msg, "example") || strings.Contains(msg, "RequestID") {
				t.Errorf("error is not one clean line: %q", msg)
			}
			fmt.Fprintf(&golden, "%s: %s\n", tt.name, msg)
		})
	}
	checkGolden(t, "launch-errors.golden", golden.String())
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update after checking):\n--- got\n%s--- want\n%s", path, got, want)
	}
}
