package ec2

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/provisionhq/provision/cloudsim"
	"github.com/provisionhq/provision/internal/awshttp"
)

// client is the real SDK pointed at the emulator, with retries off so
// every fault is seen.
func client(t *testing.T, f cloudsim.Faults) (*ec2.Client, *cloudsim.Sim, *Server) {
	t.Helper()
	sim := cloudsim.NewSim(f, 7)
	srv := New(sim, Options{Region: "eu-west-1"})
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	c := ec2.New(ec2.Options{
		Region:           "eu-west-1",
		BaseEndpoint:     aws.String(hs.URL),
		Credentials:      credentials.NewStaticCredentialsProvider("AKID", "secret", ""),
		RetryMaxAttempts: 1,
		HTTPClient:       awshttp.Client(nil),
	})
	return c, sim, srv
}

func run(t *testing.T, c *ec2.Client, n int32, token string, tags ...types.Tag) (*ec2.RunInstancesOutput, error) {
	t.Helper()
	in := &ec2.RunInstancesInput{ImageId: aws.String("ami-0123456789abcdef0"), InstanceType: types.InstanceTypeT3Micro,
		MinCount: aws.Int32(n), MaxCount: aws.Int32(n), ClientToken: aws.String(token)}
	if len(tags) > 0 {
		in.TagSpecifications = []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: tags}}
	}
	return c.RunInstances(t.Context(), in)
}

func code(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}

func TestLifecycleThroughTheSDK(t *testing.T) {
	c, sim, srv := client(t, cloudsim.Faults{PendingFor: 100 * time.Millisecond, InvisibleFor: 200 * time.Millisecond})
	out, err := run(t, c, 3, "tok-1", types.Tag{Key: aws.String("team"), Value: aws.String("blue")})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Instances) != 3 || out.Instances[2].AmiLaunchIndex == nil || *out.Instances[2].AmiLaunchIndex != 2 {
		t.Fatalf("RunInstances = %+v", out.Instances)
	}
	id := *out.Instances[0].InstanceId
	if ip := aws.ToString(out.Instances[0].PrivateIpAddress); !strings.HasPrefix(ip, "172.31.") {
		t.Errorf("private IP %q, want 172.31.x.y (the default subnet)", ip)
	}
	// Eventual consistency: a fresh ID is unknown for a moment.
	_, err = c.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if code(err) != "InvalidInstanceID.NotFound" {
		t.Fatalf("describe a fresh ID = %v, want InvalidInstanceID.NotFound", err)
	}
	// The same token is the same reservation.
	again, err := run(t, c, 3, "tok-1", types.Tag{Key: aws.String("team"), Value: aws.String("blue")})
	if err != nil || *again.ReservationId != *out.ReservationId || *again.Instances[0].InstanceId != id {
		t.Fatalf("replay = %v, %v; want reservation %s", again, err, *out.ReservationId)
	}
	if _, err := run(t, c, 2, "tok-1"); code(err) != "IdempotentParameterMismatch" {
		t.Fatalf("same token, other count = %v", err)
	}
	if srv.Count() != 3 {
		t.Fatalf("%d instances, want 3", srv.Count())
	}
	time.Sleep(250 * time.Millisecond)
	d, err := c.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{Filters: []types.Filter{
		{Name: aws.String("tag:team"), Values: []string{"blue"}},
		{Name: aws.String("instance-state-name"), Values: []string{"running"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Reservations) != 1 || len(d.Reservations[0].Instances) != 3 {
		t.Fatalf("describe by tag = %+v", d.Reservations)
	}
	if _, err := c.TerminateInstances(t.Context(), &ec2.TerminateInstancesInput{InstanceIds: []string{id}}); err != nil {
		t.Fatal(err)
	}
	d, err = c.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	if s := d.Reservations[0].Instances[0].State.Name; s != types.InstanceStateNameShuttingDown {
		t.Fatalf("after terminate the instance is %s", s)
	}
	if inv := srv.Inventory(); len(inv.Alive) != 2 || slices.Contains(inv.Alive, id) || inv.Launched != 3 {
		t.Errorf("inventory after terminating one of 3: %+v, want the other 2 alive and 3 launched", inv)
	}
	for _, a := range []string{"RunInstances", "DescribeInstances", "TerminateInstances"} {
		if sim.Calls(a) == 0 {
			t.Errorf("no %s counted", a)
		}
	}
}

func TestPagination(t *testing.T) {
	c, _, _ := client(t, cloudsim.Faults{})
	for i := range 4 {
		if _, err := run(t, c, 3, fmt.Sprint("p", i)); err != nil {
			t.Fatal(err)
		}
	}
	pg := ec2.NewDescribeInstancesPaginator(c, &ec2.DescribeInstancesInput{MaxResults: aws.Int32(5)})
	pages, n := 0, 0
	for pg.HasMorePages() {
		out, err := pg.NextPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, r := range out.Reservations {
			n += len(r.Instances)
		}
	}
	if pages != 3 || n != 12 {
		t.Fatalf("%d pages, %d instances; want 3 pages, 12 instances", pages, n)
	}
}
