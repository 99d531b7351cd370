package ec2

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/provisionhq/provision/cloudsim"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the emulator's answers")

// validLaunch is a RunInstances form EC2 accepts, built here by hand (not
// with the SDK's encoder) so a case can break one parameter.
func validLaunch() url.Values {
	return url.Values{"Action": {"RunInstances"}, "Version": {"2016-11-15"}, "ImageId": {"ami-0123456789abcdef0"},
		"InstanceType": {"t3.micro"}, "MinCount": {"1"}, "MaxCount": {"1"}}
}

// post sends one form to the emulator the way the SDK does: a SigV4
// Authorization header naming the region, a form body.
func post(t *testing.T, base string, form url.Values) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=00")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

var requestIDRE = regexp.MustCompile(`<RequestID>[^<]*</RequestID>`)

// TestLaunchErrorsAreEC2s: each invalid reference in a launch gets EC2's
// own error code, HTTP status and message in EC2's error document
// (<Response><Errors><Error><Code>…), byte for byte what the SDKs parse.
// The goldens are reviewed by hand against EC2's documented error codes
// and observed messages; -update rewrites them.
func TestLaunchErrorsAreEC2s(t *testing.T) {
	cases := []struct {
		name   string
		faults cloudsim.Faults
		change func(url.Values)
	}{
		{"ami-unknown", cloudsim.Faults{}, func(f url.Values) { f.Set("ImageId", "ami-0fffffffffffffff0") }},
		{"ami-malformed", cloudsim.Faults{}, func(f url.Values) { f.Set("ImageId", "ami-nothex") }},
		{"ami-missing", cloudsim.Faults{}, func(f url.Values) { f.Del("ImageId") }},
		{"instance-type-unknown", cloudsim.Faults{}, func(f url.Values) { f.Set("InstanceType", "t3.huge") }},
		{"instance-type-arch", cloudsim.Faults{}, func(f url.Values) { f.Set("InstanceType", "m7g.large") }},
		{"zone-unknown", cloudsim.Faults{}, func(f url.Values) { f.Set("Placement.AvailabilityZone", "us-east-1z") }},
		{"zone-other-than-subnet", cloudsim.Faults{}, func(f url.Values) {
			f.Set("Placement.AvailabilityZone", "us-east-1b")
			f.Set("SubnetId", stableID("subnet-", "us-east-1", "us-east-1a"))
		}},
		{"subnet-unknown", cloudsim.Faults{}, func(f url.Values) { f.Set("SubnetId", "subnet-0abc0abc0abc0abc0") }},
		{"subnet-malformed", cloudsim.Faults{}, func(f url.Values) { f.Set("SubnetId", "subnet-x") }},
		{"nic-subnet-unknown", cloudsim.Faults{}, func(f url.Values) {
			f.Set("NetworkInterface.1.DeviceIndex", "0")
			f.Set("NetworkInterface.1.SubnetId", "subnet-0abc0abc0abc0abc0")
		}},
		{"nic-and-instance-subnet", cloudsim.Faults{}, func(f url.Values) {
			f.Set("SubnetId", stableID("subnet-", "us-east-1", "us-east-1a"))
			f.Set("NetworkInterface.1.DeviceIndex", "0")
			f.Set("NetworkInterface.1.AssociatePublicIpAddress", "true")
		}},
		{"group-unknown", cloudsim.Faults{}, func(f url.Values) { f.Set("SecurityGroupId.1", "sg-0bbb0bbb0bbb0bbb0") }},
		{"nic-group-unknown", cloudsim.Faults{}, func(f url.Values) {
			f.Set("NetworkInterface.1.DeviceIndex", "0")
			f.Set("NetworkInterface.1.SecurityGroupId.1", "sg-0bbb0bbb0bbb0bbb0")
		}},
		{"group-name-unknown", cloudsim.Faults{}, func(f url.Values) { f.Set("SecurityGroup.1", "web") }},
		{"group-malformed", cloudsim.Faults{}, func(f url.Values) { f.Set("SecurityGroupId.1", "web") }},
		{"key-pair-unknown", cloudsim.Faults{}, func(f url.Values) { f.Set("KeyName", "ops") }},
		{"market-type-invalid", cloudsim.Faults{}, func(f url.Values) { f.Set("InstanceMarketOptions.MarketType", "cheap") }},
		{"spot-no-capacity", cloudsim.Faults{SpotNoCapacity: true}, func(f url.Values) {
			f.Set("InstanceMarketOptions.MarketType", "spot")
			f.Set("InstanceMarketOptions.SpotOptions.SpotInstanceType", "one-time")
		}},
		{"no-capacity", cloudsim.Faults{NoCapacity: true}, func(url.Values) {}},
		{"quota", cloudsim.Faults{InstanceQuota: 1}, func(f url.Values) { f.Set("MinCount", "2"); f.Set("MaxCount", "2") }},
		{"throttled", cloudsim.Faults{ThrottleRate: 1}, func(url.Values) {}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hs := httptest.NewServer(New(cloudsim.NewSim(tc.faults, 1), Options{}))
			defer hs.Close()
			form := validLaunch()
			tc.change(form)
			status, body := post(t, hs.URL, form)
			got := fmt.Sprintf("HTTP %d\n%s\n", status, requestIDRE.ReplaceAllString(body, "<RequestID>REQUEST-ID</RequestID>"))
			checkGolden(t, filepath.Join("testdata", "run-"+tc.name+".golden"), got)
		})
	}
}

// TestSpotOnlyFaultSparesOnDemand: under SpotNoCapacity an on-demand
// launch still succeeds.
func TestSpotOnlyFaultSparesOnDemand(t *testing.T) {
	hs := httptest.NewServer(New(cloudsim.NewSim(cloudsim.Faults{SpotNoCapacity: true}, 1), Options{}))
	defer hs.Close()
	if status, body := post(t, hs.URL, validLaunch()); status != http.StatusOK {
		t.Fatalf("on-demand launch under SpotNoCapacity: %d %s", status, body)
	}
}

func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
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
		t.Errorf("%s differs:\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}
