package scalebench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"golang.org/x/sync/errgroup"

	"github.com/provisionhq/provision/bootstrap/cluster"
	"github.com/provisionhq/provision/internal/awshttp"
	"github.com/provisionhq/provision/state"
)

// The peers' way, as Terraform does it with the aws provider's
// aws_instance and remote-exec provisioners (docker-machine and Cluster
// API's cloud providers also make one create call per machine):
const (
	// peerParallelism is Terraform's default -parallelism.
	peerParallelism = 10
	// peerMaxAttempts is terraform-provider-aws's default max_retries.
	peerMaxAttempts = 25
	// The aws_instance create waiter (WaitInstanceCreated:
	// StateChangeConf{Delay: 10s, MinTimeout: 3s}): the first
	// DescribeInstances 10 s after RunInstances, then waits doubling
	// from 3 s to at most 10 s.
	peerWaitDelay = 10 * time.Second
	peerWaitMin   = 3 * time.Second
	peerWaitMax   = 10 * time.Second
)

// runPerMachine brings the machines up one create call each, at most 10
// at a time, each machine's bootstrap (SSH, runtime, join) in the same
// slot as its create, as a resource's provisioners run inside its create.
// The model is generous to it: a worker waits only for the manager's
// init, not for the manager's whole resource (a Terraform configuration
// that passes the join token from the manager would wait for all of it),
// and it makes none of the reads aws_instance makes after its waiter.
func runPerMachine(ctx context.Context, c *cloud, s Scenario) (*timeline, error) {
	client := ec2.New(ec2.Options{
		Region:       Region,
		BaseEndpoint: awssdk.String(Endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(Env["AWS_ACCESS_KEY_ID"], Env["AWS_SECRET_ACCESS_KEY"], ""),
		HTTPClient:   awshttp.Client(c.client),
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = peerMaxAttempts
			o.RateLimiter = ratelimit.None
		}),
	})
	tl := newTimeline()
	managerReady := make(chan struct{})
	var managerErr error
	var once sync.Once
	openManager := func(err error) { once.Do(func() { managerErr = err; close(managerReady) }) }
	var g errgroup.Group
	g.SetLimit(peerParallelism)
	for i := range s.N { // every machine is planned at the start
		tl.mark(tl.queued, fmt.Sprintf("peer-%d", i))
	}
	for i := range s.N { // the manager first: every worker's join waits for it
		id := fmt.Sprintf("peer-%d", i)
		g.Go(func() error {
			tl.mark(tl.slot, id)
			err := peerMachine(ctx, c, client, tl, i, managerReady, &managerErr)
			if i == 0 {
				openManager(err)
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return tl, nil
}

func peerMachine(ctx context.Context, c *cloud, client *ec2.Client, tl *timeline, i int, managerReady <-chan struct{}, managerErr *error) error {
	id := fmt.Sprintf("peer-%d", i)
	out, err := client.RunInstances(ctx, &ec2.RunInstancesInput{
		ImageId: awssdk.String(image), InstanceType: types.InstanceType(instanceType),
		MinCount: awssdk.Int32(1), MaxCount: awssdk.Int32(1), ClientToken: awssdk.String(id),
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeInstance,
			Tags: []types.Tag{{Key: awssdk.String("Name"), Value: awssdk.String(id)}}}},
	})
	if err != nil {
		return fmt.Errorf("machine %s: RunInstances: %w", id, err)
	}
	instance := awssdk.ToString(out.Instances[0].InstanceId)
	addr, err := peerWaitRunning(ctx, client, instance)
	if err != nil {
		return fmt.Errorf("machine %s: wait for %s to run: %w", id, instance, err)
	}
	tl.mark(tl.address, id)
	m := state.Machine{ID: id, Address: addr, HostKey: "pinned"}
	conn, err := c.hosts.Connect(ctx, m)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := c.hosts.Prepare(ctx, m, conn); err != nil {
		return err
	}
	tl.mark(tl.runtime, id)
	node := cluster.Node{Name: id, Address: addr, Run: conn}
	if i == 0 {
		node.Role = "manager"
		return c.hosts.Init(ctx, node)
	}
	node.Role = "worker"
	select {
	case <-managerReady:
	case <-ctx.Done():
		return ctx.Err()
	}
	if *managerErr != nil {
		return fmt.Errorf("machine %s: the manager failed: %w", id, *managerErr)
	}
	cred, err := c.hosts.Credential(ctx, node, node.Role)
	if err != nil {
		return err
	}
	return c.hosts.Join(ctx, node, cluster.Node{Name: "peer-0", Role: "manager"}, cred)
}

// peerWaitRunning is aws_instance's create waiter.
func peerWaitRunning(ctx context.Context, client *ec2.Client, instance string) (string, error) {
	if err := sleep(ctx, peerWaitDelay); err != nil {
		return "", err
	}
	var wait time.Duration
	for {
		if err := sleep(ctx, wait); err != nil {
			return "", err
		}
		addr, err := peerDescribe(ctx, client, instance)
		if err == nil {
			return addr, nil
		}
		if !errors.Is(err, errNotRunning) {
			return "", err
		}
		wait = min(max(2*max(wait, 50*time.Millisecond), peerWaitMin), peerWaitMax)
	}
}

func peerDescribe(ctx context.Context, client *ec2.Client, instance string) (string, error) {
	out, err := client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{instance}})
	var api smithy.APIError
	if errors.As(err, &api) && api.ErrorCode() == "InvalidInstanceID.NotFound" {
		return "", errNotRunning // not visible yet: the waiter's NotFound is "pending"
	}
	if err != nil {
		return "", err
	}
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			if in.State != nil && in.State.Name == types.InstanceStateNameRunning {
				if ip := awssdk.ToString(in.PublicIpAddress); ip != "" {
					return ip, nil
				}
				return awssdk.ToString(in.PrivateIpAddress), nil
			}
		}
	}
	return "", errNotRunning
}
