package aws

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/provisionhq/provision/cloudsim"
	ec2sim "github.com/provisionhq/provision/cloudsim/ec2"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/providertest"
)

// liveCleanupTimeout bounds the live test's last-resort cleanup: long
// enough for DescribeInstances and TerminateInstances with retries.
const liveCleanupTimeout = 5 * time.Minute

// TestLive runs the conformance suite against real EC2. It creates three
// small instances and terminates them. Skipped unless PROVISION_LIVE_AWS=1.
//
// Environment:
//   - PROVISION_LIVE_AWS=1
//   - credentials and region from the standard chain: AWS_PROFILE or
//     AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY[/AWS_SESSION_TOKEN], and
//     AWS_REGION (the caller needs ec2:RunInstances, ec2:CreateTags (tags on launch),
//     ec2:DescribeInstances, ec2:TerminateInstances)
//   - PROVISION_LIVE_AWS_AMI: an image with cloud-init in that region (required)
//   - PROVISION_LIVE_AWS_INSTANCE_TYPE: default t3.micro
//   - PROVISION_LIVE_AWS_SUBNET: optional subnet ID (default VPC otherwise)
func TestLive(t *testing.T) {
	if os.Getenv("PROVISION_LIVE_AWS") != "1" {
		t.Skip("set PROVISION_LIVE_AWS=1 (and AWS credentials, AWS_REGION, PROVISION_LIVE_AWS_AMI) to run against real EC2")
	}
	ami := os.Getenv("PROVISION_LIVE_AWS_AMI")
	if ami == "" {
		t.Fatal("PROVISION_LIVE_AWS_AMI is required")
	}
	cluster := fmt.Sprintf("live-%d", time.Now().Unix())
	p, err := New(t.Context(), providers.Env{Cluster: cluster})
	if err != nil {
		t.Fatal(err)
	}
	runLive(t, p, cluster, liveConfig{
		ami:          ami,
		instanceType: cmp.Or(os.Getenv("PROVISION_LIVE_AWS_INSTANCE_TYPE"), "t3.micro"),
		subnet:       os.Getenv("PROVISION_LIVE_AWS_SUBNET"),
	})
}

type liveConfig struct{ ami, instanceType, subnet string }

// runLive is the live test's flow, shared with the tests that run it
// against cloudsim: the conformance suite, with a cleanup that terminates
// whatever a failed step left behind.
func runLive(t *testing.T, p *Provider, cluster string, cfg liveConfig) {
	set := providers.Settings{"instance_type": cfg.instanceType, "ami": cfg.ami}
	// Passes the static check and is refused by EC2 itself, so the suite's
	// invalid-settings step proves the provider classifies a real refusal.
	invalid := providers.Settings{"instance_type": "no-such-type", "ami": cfg.ami}
	if cfg.subnet != "" {
		set["subnet_id"] = cfg.subnet
		invalid["subnet_id"] = cfg.subnet
	}
	providertest.Run(t, p, providertest.Options{
		Cluster:         cluster,
		Settings:        set,
		InvalidSettings: invalid,
		Timeout:         15 * time.Minute,
		Cleanup:         func() { terminateCluster(t, p, cluster) },
	})
}

// terminateCluster deletes every machine of the cluster. It runs as a test
// cleanup, after t.Context() is cancelled, so it has its own deadline:
// on the cancelled context nothing would be terminated and a failed live
// run would leave instances billing.
func terminateCluster(t *testing.T, p *Provider, cluster string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), liveCleanupTimeout)
	defer cancel()
	ms, err := p.List(ctx, providers.Selector{Cluster: cluster})
	if err != nil {
		t.Errorf("cleanup: instances of cluster %s may be left running: %v", cluster, err)
		return
	}
	ids := make([]providers.MachineID, 0, len(ms))
	for _, m := range ms {
		ids = append(ids, m.ID)
	}
	if err := p.Delete(ctx, ids); err != nil {
		t.Errorf("cleanup: instances of cluster %s may be left running: %v", cluster, err)
	}
}

// TestLiveFlowAgainstCloudsim runs the live test's flow against cloudsim's
// EC2: it passes, and its invalid-settings step is refused by EC2 itself
// (a third RunInstances), not by the static check before any call.
func TestLiveFlowAgainstCloudsim(t *testing.T) {
	fx := newFixture(t, "livesim", cloudsim.Faults{PendingFor: 100 * time.Millisecond}, nil, nil)
	runLive(t, fx.p, "livesim", liveConfig{ami: "ami-0123456789abcdef0", instanceType: "t3.micro"})
	// Pools a and b, then the invalid settings; the second Create adopts.
	if got := fx.sim.Calls("RunInstances"); got != 3 {
		t.Errorf("RunInstances calls = %d, want 3: the invalid settings must reach EC2", got)
	}
	if n := fx.srv.Count(); n != 0 {
		t.Errorf("%d instances left after the flow", n)
	}
}

// TestLiveCleanupAfterFailedStep runs TestLive itself, in a child test
// process pointed at cloudsim's EC2, and fails one of its steps on purpose
// (the first List by cluster is refused) after the instances exist. The
// child must fail, and its cleanup must still terminate every instance:
// a cleanup on the test's context, cancelled by then, leaves them running.
func TestLiveCleanupAfterFailedStep(t *testing.T) {
	sim := cloudsim.NewSim(cloudsim.Faults{PendingFor: 100 * time.Millisecond}, 42)
	srv := ec2sim.New(sim, ec2sim.Options{Region: testRegion})
	var refused atomic.Bool
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		// Create filters by cluster and pool; List(cluster) by cluster only.
		f, _ := url.ParseQuery(string(b))
		listByCluster := f.Get("Action") == "DescribeInstances" &&
			strings.Contains(string(b), url.QueryEscape("tag:"+tagCluster)) && !strings.Contains(string(b), url.QueryEscape("tag:"+tagPool))
		if listByCluster && refused.CompareAndSwap(false, true) {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>1</RequestID></Response>`)
			return
		}
		srv.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	setTestEnv(t, hs.URL)
	t.Setenv("PROVISION_LIVE_AWS", "1")
	t.Setenv("PROVISION_LIVE_AWS_AMI", "ami-0123456789abcdef0")
	t.Setenv("PROVISION_LIVE_AWS_INSTANCE_TYPE", "")
	t.Setenv("PROVISION_LIVE_AWS_SUBNET", "")

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestLive$", "-test.count=1", "-test.v", "-test.timeout=90s").CombinedOutput()
	if err == nil {
		t.Fatalf("TestLive passed with a step refused:\n%s", out)
	}
	if !refused.Load() || !bytes.Contains(out, []byte("--- FAIL: TestLive/ListByClusterFindsExactlyThem")) {
		t.Fatalf("TestLive did not fail at the refused step:\n%s", out)
	}
	if got := sim.Calls("RunInstances"); got != 2 {
		t.Fatalf("RunInstances calls = %d, want 2 (pools a and b) before the failed step:\n%s", got, out)
	}
	if n := srv.Count(); n != 0 {
		t.Errorf("TestLive's cleanup left %d of its instances running after a failed step:\n%s", n, out)
	}
}
