package ec2

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"golang.org/x/crypto/ssh"

	"github.com/provisionhq/provision/cloudsim"
	"github.com/provisionhq/provision/internal/awshttp"
)

// sdk is the real SDK against a server, for region, retries off.
func sdk(t *testing.T, srv *Server, region string) *ec2.Client {
	t.Helper()
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return ec2.New(ec2.Options{
		Region: region, BaseEndpoint: aws.String(hs.URL), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", ""),
		HTTPClient:  awshttp.Client(nil),
	})
}

// must is a call's result, or the test's end: must(c.Call(...))(t).
func must[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func launchOne(t *testing.T, c *ec2.Client, mod func(*ec2.RunInstancesInput)) (*ec2.RunInstancesOutput, error) {
	t.Helper()
	in := &ec2.RunInstancesInput{ImageId: aws.String("ami-0123456789abcdef0"), InstanceType: types.InstanceTypeT3Micro,
		MinCount: aws.Int32(1), MaxCount: aws.Int32(1)}
	if mod != nil {
		mod(in)
	}
	return c.RunInstances(t.Context(), in)
}

func describeOne(t *testing.T, c *ec2.Client, id string) types.Instance {
	t.Helper()
	out := must(c.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{InstanceIds: []string{id}}))(t)
	return out.Reservations[0].Instances[0]
}

// TestDefaultNetworkPerRegion: every region has a default VPC with one
// default subnet per zone, named by DescribeAccountAttributes, and the
// region is the one the request was signed for.
func TestDefaultNetworkPerRegion(t *testing.T) {
	srv := New(cloudsim.NewSim(cloudsim.Faults{}, 1), Options{})
	for _, tc := range []struct {
		region string
		zones  []string
	}{
		{"us-east-1", []string{"us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1e", "us-east-1f"}},
		{"eu-west-1", []string{"eu-west-1a", "eu-west-1b", "eu-west-1c"}},
	} {
		t.Run(tc.region, func(t *testing.T) {
			c := sdk(t, srv, tc.region)
			attrs := must(c.DescribeAccountAttributes(t.Context(), &ec2.DescribeAccountAttributesInput{
				AttributeNames: []types.AccountAttributeName{"default-vpc", "supported-platforms"}}))(t)
			if len(attrs.AccountAttributes) != 2 || *attrs.AccountAttributes[1].AttributeValues[0].AttributeValue != "VPC" {
				t.Fatalf("account attributes = %+v", attrs.AccountAttributes)
			}
			vpcID := *attrs.AccountAttributes[0].AttributeValues[0].AttributeValue
			vpcs := must(c.DescribeVpcs(t.Context(), &ec2.DescribeVpcsInput{Filters: []types.Filter{{Name: aws.String("is-default"), Values: []string{"true"}}}}))(t)
			if len(vpcs.Vpcs) != 1 || *vpcs.Vpcs[0].VpcId != vpcID || !*vpcs.Vpcs[0].IsDefault || *vpcs.Vpcs[0].CidrBlock != "172.31.0.0/16" {
				t.Fatalf("default VPC = %+v, want %s", vpcs.Vpcs, vpcID)
			}
			subs := must(c.DescribeSubnets(t.Context(), &ec2.DescribeSubnetsInput{Filters: []types.Filter{
				{Name: aws.String("vpc-id"), Values: []string{vpcID}}, {Name: aws.String("default-for-az"), Values: []string{"true"}}}}))(t)
			var zones []string
			for _, sn := range subs.Subnets {
				zones = append(zones, *sn.AvailabilityZone)
				if !*sn.MapPublicIpOnLaunch || !*sn.DefaultForAz {
					t.Errorf("subnet %s: default subnets map public IPs and are default for their zone", *sn.SubnetId)
				}
			}
			if !slices.Equal(zones, tc.zones) {
				t.Errorf("default subnets in %v, want %v", zones, tc.zones)
			}
			az := must(c.DescribeAvailabilityZones(t.Context(), &ec2.DescribeAvailabilityZonesInput{}))(t)
			if len(az.AvailabilityZones) != len(tc.zones) || *az.AvailabilityZones[0].ZoneName != tc.zones[0] || *az.AvailabilityZones[0].RegionName != tc.region {
				t.Errorf("zones = %+v", az.AvailabilityZones)
			}
			one := must(c.DescribeSubnets(t.Context(), &ec2.DescribeSubnetsInput{Filters: []types.Filter{{Name: aws.String("availability-zone"), Values: []string{tc.zones[1]}}}}))(t)
			if len(one.Subnets) != 1 {
				t.Errorf("subnets in %s: %d, want 1", tc.zones[1], len(one.Subnets))
			}
		})
	}
	regions := must(sdk(t, srv, "us-east-1").DescribeRegions(t.Context(), &ec2.DescribeRegionsInput{RegionNames: []string{"eu-west-1"}}))(t)
	if len(regions.Regions) != 1 || *regions.Regions[0].Endpoint != "ec2.eu-west-1.amazonaws.com" {
		t.Errorf("DescribeRegions eu-west-1 = %+v", regions.Regions)
	}
	// A subnet of one region does not exist in another.
	euSub := stableID("subnet-", "eu-west-1", "eu-west-1a")
	_, err := launchOne(t, sdk(t, srv, "us-east-1"), func(in *ec2.RunInstancesInput) { in.SubnetId = aws.String(euSub) })
	if code(err) != "InvalidSubnetID.NotFound" {
		t.Errorf("launch in us-east-1 into an eu-west-1 subnet = %v, want InvalidSubnetID.NotFound", err)
	}
}

// TestSecurityGroups: a default group per VPC that cannot be deleted,
// groups by ID, name and filter, ingress rules (duplicates refused), tags,
// and a group in use cannot be deleted.
func TestSecurityGroups(t *testing.T) {
	c := sdk(t, New(cloudsim.NewSim(cloudsim.Faults{}, 1), Options{}), "us-east-1")
	ctx := t.Context()
	def := must(c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupNames: []string{"default"}}))(t)
	if len(def.SecurityGroups) != 1 || len(def.SecurityGroups[0].IpPermissionsEgress) != 1 {
		t.Fatalf("default group = %+v", def.SecurityGroups)
	}
	defID := *def.SecurityGroups[0].GroupId
	if _, err := c.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: aws.String(defID)}); code(err) != "CannotDelete" {
		t.Errorf("delete the default group = %v, want CannotDelete", err)
	}
	sg := must(c.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("ssh"), Description: aws.String("ssh in")}))(t)
	if _, err := c.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("ssh"), Description: aws.String("again")}); code(err) != "InvalidGroup.Duplicate" {
		t.Errorf("same name again = %v, want InvalidGroup.Duplicate", err)
	}
	perm := types.IpPermission{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(22), ToPort: aws.Int32(22), IpRanges: []types.IpRange{{CidrIp: aws.String("0.0.0.0/0")}}}
	auth := must(c.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: sg.GroupId, IpPermissions: []types.IpPermission{perm}}))(t)
	if len(auth.SecurityGroupRules) != 1 || !strings.HasPrefix(*auth.SecurityGroupRules[0].SecurityGroupRuleId, "sgr-") {
		t.Errorf("authorize = %+v", auth.SecurityGroupRules)
	}
	if _, err := c.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: sg.GroupId, IpPermissions: []types.IpPermission{perm}}); code(err) != "InvalidPermission.Duplicate" {
		t.Errorf("same rule again = %v, want InvalidPermission.Duplicate", err)
	}
	if _, err := c.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: sg.GroupId, IpPermissions: []types.IpPermission{
		{IpProtocol: aws.String("tcp"), IpRanges: []types.IpRange{{CidrIp: aws.String("10.0.0.0/8")}}}}}); code(err) != "InvalidParameterValue" {
		t.Errorf("tcp without ports = %v, want InvalidParameterValue", err)
	}
	must(c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{*sg.GroupId}, Tags: []types.Tag{{Key: aws.String("team"), Value: aws.String("blue")}}}))(t)
	got := must(c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []types.Filter{
		{Name: aws.String("tag:team"), Values: []string{"blue"}}, {Name: aws.String("ip-permission.from-port"), Values: []string{"22"}}}}))(t)
	if len(got.SecurityGroups) != 1 || *got.SecurityGroups[0].GroupId != *sg.GroupId || *got.SecurityGroups[0].IpPermissions[0].IpRanges[0].CidrIp != "0.0.0.0/0" {
		t.Fatalf("groups by tag and port = %+v", got.SecurityGroups)
	}
	must(c.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{*sg.GroupId}, Tags: []types.Tag{{Key: aws.String("team")}}}))(t)
	if got := must(c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{*sg.GroupId}}))(t); len(got.SecurityGroups[0].Tags) != 0 {
		t.Errorf("tags after DeleteTags = %+v", got.SecurityGroups[0].Tags)
	}
	if _, err := c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{"sg-0123456789abcdef0"}}); code(err) != "InvalidGroup.NotFound" {
		t.Errorf("unknown group = %v", err)
	}
	run := must(launchOne(t, c, func(in *ec2.RunInstancesInput) { in.SecurityGroupIds = []string{*sg.GroupId} }))(t)
	if g := run.Instances[0].SecurityGroups; len(g) != 1 || *g[0].GroupName != "ssh" {
		t.Errorf("instance groups = %+v, want ssh", g)
	}
	if _, err := c.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: sg.GroupId}); code(err) != "DependencyViolation" {
		t.Errorf("delete a group in use = %v, want DependencyViolation", err)
	}
	plain := must(launchOne(t, c, nil))(t)
	if g := plain.Instances[0].SecurityGroups; len(g) != 1 || *g[0].GroupId != defID {
		t.Errorf("instance without groups is in %+v, want the default group", g)
	}
}

// recorder is a Backing that records each host's boot and hands out
// addresses; with a gate, Start blocks until the gate closes.
type recorder struct {
	mu      sync.Mutex
	boots   map[string]cloudsim.Boot
	n       int
	started chan string
	gate    chan struct{}
	stopped []string
	power   []string
}

func (b *recorder) Start(ctx context.Context, id string, boot cloudsim.Boot) (string, error) {
	if b.started != nil {
		b.started <- id
	}
	if b.gate != nil {
		select {
		case <-b.gate:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.boots == nil {
		b.boots = map[string]cloudsim.Boot{}
	}
	b.boots[id] = boot
	b.n++
	return fmt.Sprintf("192.0.2.%d", b.n), nil
}

func (b *recorder) Stop(_ context.Context, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopped = append(b.stopped, id)
	return nil
}

// powerRecorder can also power hosts off and on; a host comes back with
// a new address.
type powerRecorder struct{ recorder }

func (b *powerRecorder) PowerOff(_ context.Context, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.power = append(b.power, "off "+id)
	return nil
}

func (b *powerRecorder) PowerOn(_ context.Context, id string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.power = append(b.power, "on "+id)
	b.n++
	return fmt.Sprintf("192.0.2.%d", b.n), nil
}

// TestKeyPairs: imported and created key pairs, and a launch with one
// hands its public key to the guest for the image's default user.
func TestKeyPairs(t *testing.T) {
	backing := &recorder{}
	c := sdk(t, New(cloudsim.NewSim(cloudsim.Faults{}, 1), Options{Backing: backing}), "us-east-1")
	ctx := t.Context()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub := must(ssh.NewPublicKey(pub))(t)
	authorized := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub)))
	imp := must(c.ImportKeyPair(ctx, &ec2.ImportKeyPairInput{KeyName: aws.String("k1"), PublicKeyMaterial: []byte(authorized + " me@laptop\n")}))(t)
	if !strings.HasPrefix(*imp.KeyPairId, "key-") || *imp.KeyFingerprint == "" {
		t.Errorf("import = %+v", imp)
	}
	if _, err := c.ImportKeyPair(ctx, &ec2.ImportKeyPairInput{KeyName: aws.String("k1"), PublicKeyMaterial: []byte(authorized)}); code(err) != "InvalidKeyPair.Duplicate" {
		t.Errorf("import k1 again = %v, want InvalidKeyPair.Duplicate", err)
	}
	if _, err := c.ImportKeyPair(ctx, &ec2.ImportKeyPairInput{KeyName: aws.String("bad"), PublicKeyMaterial: []byte("not a key")}); code(err) != "InvalidKey.Format" {
		t.Errorf("import garbage = %v, want InvalidKey.Format", err)
	}
	for _, kt := range []types.KeyType{types.KeyTypeEd25519, types.KeyTypeRsa} {
		made := must(c.CreateKeyPair(ctx, &ec2.CreateKeyPairInput{KeyName: aws.String("made-" + string(kt)), KeyType: kt}))(t)
		signer, err := ssh.ParsePrivateKey([]byte(*made.KeyMaterial))
		if err != nil {
			t.Fatalf("%s private key: %v\n%s", kt, err, *made.KeyMaterial)
		}
		d := must(c.DescribeKeyPairs(ctx, &ec2.DescribeKeyPairsInput{KeyNames: []string{*made.KeyName}, IncludePublicKey: aws.Bool(true)}))(t)
		want := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
		if len(d.KeyPairs) != 1 || *d.KeyPairs[0].PublicKey != want || d.KeyPairs[0].KeyType != kt || *d.KeyPairs[0].KeyFingerprint != *made.KeyFingerprint {
			t.Errorf("%s: described %+v, want public key %s", kt, d.KeyPairs, want)
		}
	}
	all := must(c.DescribeKeyPairs(ctx, &ec2.DescribeKeyPairsInput{Filters: []types.Filter{{Name: aws.String("key-name"), Values: []string{"made-*"}}}}))(t)
	if len(all.KeyPairs) != 2 {
		t.Errorf("key pairs made-* = %d, want 2", len(all.KeyPairs))
	}

	run := must(launchOne(t, c, func(in *ec2.RunInstancesInput) { in.KeyName = aws.String("k1") }))(t)
	boot := backing.boots[*run.Instances[0].InstanceId]
	if !slices.Equal(boot.PublicKeys, []string{authorized}) || boot.KeyUser != cloudsim.DefaultUser || len(boot.UserData) != 0 {
		t.Errorf("guest boot = %+v, want k1's key for %q and no user-data", boot, cloudsim.DefaultUser)
	}
	if *run.Instances[0].KeyName != "k1" {
		t.Errorf("instance key name %q", *run.Instances[0].KeyName)
	}
	must(c.DeleteKeyPair(ctx, &ec2.DeleteKeyPairInput{KeyName: aws.String("k1")}))(t)
	must(c.DeleteKeyPair(ctx, &ec2.DeleteKeyPairInput{KeyName: aws.String("k1")}))(t) // gone is fine
	if _, err := c.DescribeKeyPairs(ctx, &ec2.DescribeKeyPairsInput{KeyNames: []string{"k1"}}); code(err) != "InvalidKeyPair.NotFound" {
		t.Errorf("describe deleted k1 = %v", err)
	}
	if _, err := launchOne(t, c, func(in *ec2.RunInstancesInput) { in.KeyName = aws.String("k1") }); code(err) != "InvalidKeyPair.NotFound" {
		t.Errorf("launch with deleted k1 = %v", err)
	}
}

// TestLaunchPlacement: the zone, subnet, network interface and public
// address a launch asks for are what the instance gets.
func TestLaunchPlacement(t *testing.T) {
	c := sdk(t, New(cloudsim.NewSim(cloudsim.Faults{}, 1), Options{}), "eu-west-1")
	subnetB := stableID("subnet-", "eu-west-1", "eu-west-1b")
	tests := []struct {
		name       string
		mod        func(*ec2.RunInstancesInput)
		zone       string
		wantPublic bool
	}{
		{"defaults", nil, "eu-west-1a", true},
		{"zone", func(in *ec2.RunInstancesInput) {
			in.Placement = &types.Placement{AvailabilityZone: aws.String("eu-west-1c")}
		}, "eu-west-1c", true},
		{"subnet", func(in *ec2.RunInstancesInput) { in.SubnetId = aws.String(subnetB) }, "eu-west-1b", true},
		{"nic without public IP", func(in *ec2.RunInstancesInput) {
			in.NetworkInterfaces = []types.InstanceNetworkInterfaceSpecification{{DeviceIndex: aws.Int32(0), SubnetId: aws.String(subnetB), AssociatePublicIpAddress: aws.Bool(false)}}
		}, "eu-west-1b", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := must(launchOne(t, c, tc.mod))(t)
			in := describeOne(t, c, *out.Instances[0].InstanceId)
			if *in.Placement.AvailabilityZone != tc.zone || *in.SubnetId != stableID("subnet-", "eu-west-1", tc.zone) {
				t.Errorf("placed in %s / %s, want %s and its default subnet", *in.Placement.AvailabilityZone, *in.SubnetId, tc.zone)
			}
			hasPublic := aws.ToString(in.PublicIpAddress) != ""
			if hasPublic != tc.wantPublic || (hasPublic && !strings.HasSuffix(*in.PublicDnsName, ".eu-west-1.compute.amazonaws.com")) {
				t.Errorf("public IP %q dns %q, want public=%v", aws.ToString(in.PublicIpAddress), aws.ToString(in.PublicDnsName), tc.wantPublic)
			}
			if *in.RootDeviceName != "/dev/xvda" || in.Architecture != types.ArchitectureValuesX8664 {
				t.Errorf("root device %s arch %s", *in.RootDeviceName, in.Architecture)
			}
		})
	}
}

// TestRunAnswersPending: RunInstances always answers pending, even when
// instances run at once; the next describe sees them running.
func TestRunAnswersPending(t *testing.T) {
	c := sdk(t, New(cloudsim.NewSim(cloudsim.Faults{}, 1), Options{Backing: &recorder{}}), "us-east-1")
	out := must(launchOne(t, c, nil))(t)
	if s := out.Instances[0].State; *s.Code != 0 || s.Name != types.InstanceStateNamePending {
		t.Fatalf("RunInstances state = %d %s, want 0 pending", *s.Code, s.Name)
	}
	if in := describeOne(t, c, *out.Instances[0].InstanceId); in.State.Name != types.InstanceStateNameRunning || *in.PublicIpAddress != "192.0.2.1" {
		t.Errorf("then %s at %s, want running at the backing host's address", in.State.Name, aws.ToString(in.PublicIpAddress))
	}
}

// TestSpotRecorded: a spot launch is a spot instance with its request ID;
// a one-time spot instance cannot be stopped.
func TestSpotRecorded(t *testing.T) {
	c := sdk(t, New(cloudsim.NewSim(cloudsim.Faults{}, 1), Options{}), "us-east-1")
	out := must(launchOne(t, c, func(in *ec2.RunInstancesInput) {
		in.InstanceMarketOptions = &types.InstanceMarketOptionsRequest{MarketType: types.MarketTypeSpot,
			SpotOptions: &types.SpotMarketOptions{SpotInstanceType: types.SpotInstanceTypeOneTime}}
	}))(t)
	in := describeOne(t, c, *out.Instances[0].InstanceId)
	if in.InstanceLifecycle != types.InstanceLifecycleTypeSpot || !strings.HasPrefix(aws.ToString(in.SpotInstanceRequestId), "sir-") {
		t.Errorf("lifecycle %q request %q, want spot sir-…", in.InstanceLifecycle, aws.ToString(in.SpotInstanceRequestId))
	}
	if _, err := c.StopInstances(t.Context(), &ec2.StopInstancesInput{InstanceIds: []string{*in.InstanceId}}); code(err) != "UnsupportedOperation" {
		t.Errorf("stop a one-time spot instance = %v, want UnsupportedOperation", err)
	}
	od := describeOne(t, c, *must(launchOne(t, c, nil))(t).Instances[0].InstanceId)
	if od.InstanceLifecycle != "" || od.SpotInstanceRequestId != nil {
		t.Errorf("on-demand instance has lifecycle %q", od.InstanceLifecycle)
	}
}

// waitFor polls describe until the instance is in state want.
func waitFor(t *testing.T, c *ec2.Client, id string, want types.InstanceStateName) types.Instance {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		in := describeOne(t, c, id)
		if in.State.Name == want {
			return in
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %s is %s, want %s", id, in.State.Name, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStopStartTerminate: running → stopping → stopped → pending →
// running with the backing host powered off and on (its address may
// change), EC2's state-change answers, and a stopped instance terminates.
func TestStopStartTerminate(t *testing.T) {
	backing := &powerRecorder{}
	c := sdk(t, New(cloudsim.NewSim(cloudsim.Faults{PendingFor: 50 * time.Millisecond}, 1), Options{Backing: backing}), "us-east-1")
	ctx := t.Context()
	id := *must(launchOne(t, c, nil))(t).Instances[0].InstanceId
	if _, err := c.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{id}}); code(err) != "IncorrectInstanceState" {
		t.Errorf("stop a pending instance = %v, want IncorrectInstanceState", err)
	}
	first := waitFor(t, c, id, types.InstanceStateNameRunning)

	stop := must(c.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{id}}))(t)
	if sc := stop.StoppingInstances[0]; sc.PreviousState.Name != "running" || sc.CurrentState.Name != "stopping" || *sc.CurrentState.Code != 64 {
		t.Errorf("stop = %s → %s", sc.PreviousState.Name, sc.CurrentState.Name)
	}
	stopped := waitFor(t, c, id, types.InstanceStateNameStopped)
	if stopped.PublicIpAddress != nil || *stopped.StateReason.Code != "Client.UserInitiatedShutdown" {
		t.Errorf("stopped instance keeps public IP %v, reason %v", stopped.PublicIpAddress, stopped.StateReason)
	}
	if _, err := c.RebootInstances(ctx, &ec2.RebootInstancesInput{InstanceIds: []string{id}}); code(err) != "IncorrectInstanceState" {
		t.Errorf("reboot a stopped instance = %v", err)
	}
	start := must(c.StartInstances(ctx, &ec2.StartInstancesInput{InstanceIds: []string{id}}))(t)
	if sc := start.StartingInstances[0]; sc.PreviousState.Name != "stopped" || sc.CurrentState.Name != "pending" {
		t.Errorf("start = %s → %s", sc.PreviousState.Name, sc.CurrentState.Name)
	}
	again := waitFor(t, c, id, types.InstanceStateNameRunning)
	if *again.PublicIpAddress == *first.PublicIpAddress {
		t.Errorf("address after start %s, want the powered-on host's new one", *again.PublicIpAddress)
	}
	must(c.RebootInstances(ctx, &ec2.RebootInstancesInput{InstanceIds: []string{id}}))(t)
	must(c.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{id}}))(t)
	waitFor(t, c, id, types.InstanceStateNameStopped)
	term := must(c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}}))(t)
	if sc := term.TerminatingInstances[0]; sc.PreviousState.Name != "stopped" || sc.CurrentState.Name != "shutting-down" {
		t.Errorf("terminate = %s → %s", sc.PreviousState.Name, sc.CurrentState.Name)
	}
	waitFor(t, c, id, types.InstanceStateNameTerminated)
	backing.mu.Lock()
	defer backing.mu.Unlock()
	if want := []string{"off " + id, "on " + id, "off " + id}; !slices.Equal(backing.power, want) || !slices.Equal(backing.stopped, []string{id}) {
		t.Errorf("backing calls: power %v, removed %v; want %v and %s removed", backing.power, backing.stopped, want, id)
	}
}

// TestNoLockWhileHostsStart: while three instances' hosts take their time
// to start, another client's DescribeInstances still answers at once.
func TestNoLockWhileHostsStart(t *testing.T) {
	backing := &recorder{started: make(chan string, 3), gate: make(chan struct{})}
	srv := New(cloudsim.NewSim(cloudsim.Faults{}, 1), Options{Backing: backing})
	launcher, other := sdk(t, srv, "us-east-1"), sdk(t, srv, "us-east-1")
	done := make(chan error, 1)
	go func() {
		_, err := launchOne(t, launcher, func(in *ec2.RunInstancesInput) { in.MinCount, in.MaxCount = aws.Int32(3), aws.Int32(3) })
		done <- err
	}()
	for range 3 {
		select {
		case <-backing.started:
		case <-time.After(5 * time.Second):
			t.Fatal("hosts did not start")
		}
	}
	// The hosts are held in their start until the gate opens, so a lock
	// across a start would hold these calls to their deadline: the bound
	// only needs to tell "at once" from "never", on a loaded machine too.
	var slowest time.Duration
	for range 200 {
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		out, err := other.DescribeInstances(ctx, &ec2.DescribeInstancesInput{})
		cancel()
		if err != nil {
			t.Fatalf("DescribeInstances while hosts start: %v", err)
		}
		slowest = max(slowest, time.Since(start))
		if n := len(out.Reservations); n != 1 || out.Reservations[0].Instances[0].State.Name != types.InstanceStateNamePending {
			t.Fatalf("while starting: %+v, want one reservation of pending instances", out.Reservations)
		}
	}
	t.Logf("slowest of 200 DescribeInstances while 3 hosts start: %v", slowest)
	if slowest > time.Second {
		t.Errorf("slowest DescribeInstances %v while hosts start, want under 1s", slowest)
	}
	close(backing.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestPagesNeitherSkipNorRepeat: instances launched between pages do not
// shift the cursor.
func TestPagesNeitherSkipNorRepeat(t *testing.T) {
	c := sdk(t, New(cloudsim.NewSim(cloudsim.Faults{}, 1), Options{}), "us-east-1")
	var want []string
	for range 4 {
		out := must(launchOne(t, c, func(in *ec2.RunInstancesInput) { in.MinCount, in.MaxCount = aws.Int32(3), aws.Int32(3) }))(t)
		for _, in := range out.Instances {
			want = append(want, *in.InstanceId)
		}
	}
	var seen []string
	var token *string
	for page := 0; ; page++ {
		out := must(c.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{MaxResults: aws.Int32(5), NextToken: token}))(t)
		for _, r := range out.Reservations {
			for _, in := range r.Instances {
				seen = append(seen, *in.InstanceId)
			}
		}
		if page == 0 {
			must(launchOne(t, c, func(in *ec2.RunInstancesInput) { in.MinCount, in.MaxCount = aws.Int32(2), aws.Int32(2) }))(t)
			must(c.TerminateInstances(t.Context(), &ec2.TerminateInstancesInput{InstanceIds: want[:1]}))(t)
		}
		if token = out.NextToken; token == nil {
			break
		}
	}
	if len(seen) != len(want)+2 || !slices.Equal(seen[:len(want)], want) {
		t.Errorf("pages gave %d instances %v, want the %d launched first in order, then the 2 launched between pages", len(seen), seen, len(want))
	}
	if _, err := c.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{MaxResults: aws.Int32(5), NextToken: aws.String("page-2")}); code(err) != "InvalidParameterValue" {
		t.Errorf("a made-up NextToken = %v, want InvalidParameterValue", err)
	}
}

func TestWildcardMatch(t *testing.T) {
	tests := []struct {
		pattern, value string
		want           bool
	}{
		{"web-*", "web-1", true},
		{"web-?", "web-12", false},
		{"*", "", true},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"[ab]", "a", false}, // [ is not special
		{"[ab]", "[ab]", true},
		{`a\b`, `a\b`, true}, // a backslash before an ordinary character is itself
		{`\*`, "*", true},    // EC2's documented escapes: \* \? \\
		{`\*`, "x", false},
		{`50\?`, "50?", true},
		{`50\?`, "50%", false},
		{`c:\\`, `c:\`, true},
		{"ünï*", "ünïcode", true},
	}
	for _, tc := range tests {
		if got := wildcardMatch(tc.pattern, tc.value); got != tc.want {
			t.Errorf("wildcardMatch(%q, %q) = %v, want %v", tc.pattern, tc.value, got, tc.want)
		}
	}
	// And through the API: a tag value with brackets matches itself.
	c := sdk(t, New(cloudsim.NewSim(cloudsim.Faults{}, 1), Options{}), "us-east-1")
	must(launchOne(t, c, func(in *ec2.RunInstancesInput) {
		in.TagSpecifications = []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: []types.Tag{{Key: aws.String("Name"), Value: aws.String("db[1]")}}}}
	}))(t)
	out := must(c.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{Filters: []types.Filter{{Name: aws.String("tag:Name"), Values: []string{"db[1]"}}}}))(t)
	if len(out.Reservations) != 1 {
		t.Errorf("tag:Name=db[1] found %d reservations, want 1", len(out.Reservations))
	}
}

// TestImageCatalog: DescribeImages lists the catalog, filters it, knows
// each image's real root device and refuses unknown IDs.
func TestImageCatalog(t *testing.T) {
	c := sdk(t, New(cloudsim.NewSim(cloudsim.Faults{}, 1), Options{}), "us-east-1")
	ctx := t.Context()
	all := must(c.DescribeImages(ctx, &ec2.DescribeImagesInput{}))(t)
	if len(all.Images) != len(images) {
		t.Errorf("%d images, want the catalog's %d", len(all.Images), len(images))
	}
	debian := must(c.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{ownerDebian},
		Filters: []types.Filter{{Name: aws.String("name"), Values: []string{"debian-12-amd64-*"}}}}))(t)
	if len(debian.Images) != 2 {
		t.Errorf("debian-12-amd64-* images: %d, want 2", len(debian.Images))
	}
	for id, root := range map[string]string{"ami-0123456789abcdef0": "/dev/xvda", "ami-0abcdef1234567890": "/dev/sda1"} {
		out := must(c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{id}}))(t)
		if *out.Images[0].RootDeviceName != root || *out.Images[0].BlockDeviceMappings[0].DeviceName != root {
			t.Errorf("%s root device %s, want %s", id, *out.Images[0].RootDeviceName, root)
		}
	}
	if _, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{"ami-0aaaaaaaaaaaaaaa0"}}); code(err) != "InvalidAMIID.NotFound" {
		t.Errorf("unknown image = %v, want InvalidAMIID.NotFound", err)
	}
	if self := must(c.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}}))(t); len(self.Images) != 0 {
		t.Errorf("owner self: %d images, want none", len(self.Images))
	}
}

// TestUserDataStillReachesTheGuest: user-data is handed over as sent.
func TestUserDataStillReachesTheGuest(t *testing.T) {
	backing := &recorder{}
	c := sdk(t, New(cloudsim.NewSim(cloudsim.Faults{}, 1), Options{Backing: backing}), "us-east-1")
	out := must(launchOne(t, c, func(in *ec2.RunInstancesInput) {
		in.UserData = aws.String(base64.StdEncoding.EncodeToString([]byte("#cloud-config\n")))
	}))(t)
	if got := string(backing.boots[*out.Instances[0].InstanceId].UserData); got != "#cloud-config\n" {
		t.Errorf("guest user-data %q", got)
	}
}
