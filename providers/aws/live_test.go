package aws

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/providertest"
)

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
	itype := os.Getenv("PROVISION_LIVE_AWS_INSTANCE_TYPE")
	if itype == "" {
		itype = "t3.micro"
	}
	set := providers.Settings{"instance_type": itype, "ami": ami}
	if s := os.Getenv("PROVISION_LIVE_AWS_SUBNET"); s != "" {
		set["subnet_id"] = s
	}
	cluster := fmt.Sprintf("live-%d", time.Now().Unix())
	p, err := New(t.Context(), providers.Env{Cluster: cluster})
	if err != nil {
		t.Fatal(err)
	}
	providertest.Run(t, p, providertest.Options{
		Cluster:         cluster,
		Settings:        set,
		InvalidSettings: providers.Settings{"instance_type": itype},
		Timeout:         15 * time.Minute,
		Cleanup: func() {
			ms, err := p.List(t.Context(), providers.Selector{Cluster: cluster})
			if err != nil {
				t.Logf("cleanup: %v", err)
				return
			}
			ids := make([]providers.MachineID, 0, len(ms))
			for _, m := range ms {
				ids = append(ids, m.ID)
			}
			if err := p.Delete(t.Context(), ids); err != nil {
				t.Logf("cleanup: %v", err)
			}
		},
	})
}
