package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"golang.org/x/crypto/ssh"

	"github.com/provisionhq/provision/internal/awshttp"
	"github.com/provisionhq/provision/providers/docker/dockertest"
)

// awsCLI is Debian's awscli, as scripts/install-deps.sh installs it.
const awsCLI = "/usr/bin/aws"

// awsRun runs the real AWS CLI against one cloudsim's EC2.
type awsRun struct {
	t        *testing.T
	env      []string
	endpoint string
	steps    []string // "step: duration", reported at the end
}

func (c *awsRun) step(name string, d time.Duration) {
	d = d.Round(10 * time.Millisecond)
	c.steps = append(c.steps, fmt.Sprintf("%-32s %v", name, d))
	c.t.Logf("%s: %v", name, d)
}

// ec2 runs `aws ec2 <args> --output json` and fails the test when it
// fails; a non-empty step is timed.
func (c *awsRun) ec2(step string, args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.t.Context(), 2*time.Minute)
	defer cancel()
	full := append([]string{"--endpoint-url", c.endpoint, "--output", "json", "ec2"}, args...)
	cmd := exec.CommandContext(ctx, awsCLI, full...)
	cmd.Env = c.env
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if step != "" {
		c.step(step, time.Since(start))
	}
	if err != nil {
		c.t.Fatalf("aws %s: %v\n%s", strings.Join(full, " "), err, out)
	}
	return string(out)
}

// ec2JSON runs ec2 and decodes its JSON answer into v.
func (c *awsRun) ec2JSON(step string, v any, args ...string) {
	c.t.Helper()
	out := c.ec2(step, args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("aws ec2 %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// cliInstance is what describe-instances says of an instance.
type cliInstance struct {
	InstanceID       string `json:"InstanceId"`
	PublicIPAddress  string `json:"PublicIpAddress"`
	PrivateIPAddress string `json:"PrivateIpAddress"`
	KeyName          string
	State            struct{ Name string }
}

func (c *awsRun) describe(id string) cliInstance {
	c.t.Helper()
	var out struct {
		Reservations []struct{ Instances []cliInstance }
	}
	c.ec2JSON("", &out, "describe-instances", "--instance-ids", id)
	if len(out.Reservations) != 1 || len(out.Reservations[0].Instances) != 1 {
		c.t.Fatalf("describe-instances %s = %+v, want one instance", id, out)
	}
	return out.Reservations[0].Instances[0]
}

// waitState polls describe-instances (each poll is a CLI start) until the
// instance is in state want. `aws ec2 wait` would do the same every 15 s.
func (c *awsRun) waitState(step, id, want string, within time.Duration) cliInstance {
	c.t.Helper()
	start := time.Now()
	for {
		in := c.describe(id)
		if in.State.Name == want {
			c.step(step, time.Since(start))
			return in
		}
		if time.Since(start) > within {
			c.t.Fatalf("instance %s still %s after %v, want %s", id, in.State.Name, within, want)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// awsEnv is the test's environment without the machine's own AWS
// configuration, with cloudsim's credentials and region.
func awsEnv(t *testing.T, simEnv []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	dir := t.TempDir()
	env = append(env, simEnv...)
	return append(env, "AWS_CONFIG_FILE="+filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "credentials"),
		"AWS_PAGER=", "AWS_EC2_METADATA_DISABLED=true")
}

// TestAWSCLI drives cloudsim's EC2 with the real AWS CLI and its stock
// commands only, against docker-backed instances: find the Debian image,
// make a security group open on tcp/22, import a key pair, launch with it
// (no user-data), log in over SSH as the image's default user "admin" with
// the key pair, stop and start the instance, log in again, terminate it
// and see its container go.
func TestAWSCLI(t *testing.T) {
	requireDocker(t)
	if _, err := os.Stat(awsCLI); err != nil {
		if os.Getenv("PROVISION_REQUIRE_DOCKER") != "" {
			t.Fatalf("%s missing (scripts/install-deps.sh installs awscli): %v", awsCLI, err)
		}
		t.Skipf("%s missing; run scripts/install-deps.sh (awscli)", awsCLI)
	}
	group := fmt.Sprintf("awscli%d", time.Now().UnixNano()%1e6)
	sim := startCloudsim(t, group, "--pending", "1s")
	cli := &awsRun{t: t, env: awsEnv(t, sim.env), endpoint: sim.urls["aws"]}
	t.Cleanup(func() { t.Logf("step times:\n  %s", strings.Join(cli.steps, "\n  ")) })
	signer, pubFile := keyPair(t, t.TempDir())

	image := strings.TrimSpace(cli.ec2("describe-images", "describe-images", "--owners", "136693071363",
		"--filters", "Name=name,Values=debian-12-amd64-*", "Name=architecture,Values=x86_64",
		"--query", "sort_by(Images, &CreationDate)[-1].ImageId", "--output", "text"))
	if !strings.HasPrefix(image, "ami-") {
		t.Fatalf("describe-images found %q, want the newest Debian 12 AMI", image)
	}
	var sg struct{ GroupId string }
	cli.ec2JSON("create-security-group", &sg, "create-security-group", "--group-name", "ssh", "--description", "SSH from anywhere")
	cli.ec2("authorize-security-group-ingress", "authorize-security-group-ingress", "--group-id", sg.GroupId,
		"--protocol", "tcp", "--port", "22", "--cidr", "0.0.0.0/0")
	var key struct{ KeyName, KeyFingerprint string }
	cli.ec2JSON("import-key-pair", &key, "import-key-pair", "--key-name", "k1", "--public-key-material", "fileb://"+pubFile)
	if key.KeyName != "k1" || key.KeyFingerprint == "" {
		t.Fatalf("import-key-pair = %+v", key)
	}

	describeWhileHostsStart(t, cli, image) // with key pair k1

	var run struct {
		Instances []struct {
			InstanceId string
			State      struct{ Name string }
		}
	}
	cli.ec2JSON("run-instances", &run, "run-instances", "--image-id", image, "--instance-type", "t3.micro",
		"--key-name", "k1", "--security-group-ids", sg.GroupId, "--count", "1")
	if len(run.Instances) != 1 || run.Instances[0].State.Name != "pending" {
		t.Fatalf("run-instances = %+v, want one pending instance", run)
	}
	id := run.Instances[0].InstanceId
	in := cli.waitState("describe → running", id, "running", 3*time.Minute)
	if in.KeyName != "k1" || in.PublicIPAddress == "" {
		t.Fatalf("running instance %+v, want key k1 and a public address (the default subnet maps one)", in)
	}
	sshAdmin(t, cli, "ssh admin (first boot)", id, in.PublicIPAddress, signer)

	var stop struct {
		StoppingInstances []struct{ CurrentState, PreviousState struct{ Name string } }
	}
	cli.ec2JSON("stop-instances", &stop, "stop-instances", "--instance-ids", id)
	if len(stop.StoppingInstances) != 1 || stop.StoppingInstances[0].PreviousState.Name != "running" || stop.StoppingInstances[0].CurrentState.Name != "stopping" {
		t.Fatalf("stop-instances = %+v, want running → stopping", stop)
	}
	cli.waitState("describe → stopped", id, "stopped", 2*time.Minute)
	var start struct {
		StartingInstances []struct{ CurrentState, PreviousState struct{ Name string } }
	}
	cli.ec2JSON("start-instances", &start, "start-instances", "--instance-ids", id)
	if len(start.StartingInstances) != 1 || start.StartingInstances[0].PreviousState.Name != "stopped" || start.StartingInstances[0].CurrentState.Name != "pending" {
		t.Fatalf("start-instances = %+v, want stopped → pending", start)
	}
	in = cli.waitState("describe → running again", id, "running", 2*time.Minute)
	sshAdmin(t, cli, "ssh admin (after start)", id, in.PublicIPAddress, signer)

	// Neither a key pair nor user-data: EC2 still runs it (nobody can log in).
	var bare struct{ Instances []struct{ InstanceId string } }
	cli.ec2JSON("run-instances (no key, no user-data)", &bare, "run-instances", "--image-id", image, "--instance-type", "t3.micro", "--count", "1")
	if len(bare.Instances) != 1 {
		t.Fatalf("run-instances without key or user-data = %+v", bare)
	}
	cli.waitState("describe → running (no key)", bare.Instances[0].InstanceId, "running", 2*time.Minute)

	cli.ec2("terminate-instances", "terminate-instances", "--instance-ids", id, bare.Instances[0].InstanceId)
	began := time.Now()
	for {
		names, err := dockertest.ContainerNames(t.Context(), "provision.cluster="+group)
		if err != nil {
			t.Fatalf("docker ps: %v", err)
		}
		if len(names) == 0 {
			break
		}
		if time.Since(began) > time.Minute {
			t.Fatalf("containers left after terminate-instances: %v", names)
		}
		time.Sleep(500 * time.Millisecond)
	}
	cli.step("container gone", time.Since(began))
	cli.waitState("describe → terminated", id, "terminated", time.Minute)
}

// describeWhileHostsStart launches three docker-backed instances with the
// CLI and, while their hosts start, makes 200 DescribeInstances calls with
// the Go SDK: cloudsim holds no lock while a host starts, so each answers
// at once. It reports the slowest and terminates the three.
func describeWhileHostsStart(t *testing.T, cli *awsRun, image string) {
	t.Helper()
	c := ec2.New(ec2.Options{Region: "us-east-1", BaseEndpoint: aws.String(cli.endpoint),
		Credentials: credentials.NewStaticCredentialsProvider("cloudsim", "cloudsim", ""),
		HTTPClient:  awshttp.Client(nil)})
	launched := make(chan string, 1)
	go func() {
		cmd := exec.CommandContext(t.Context(), awsCLI, "--endpoint-url", cli.endpoint, "--output", "text", "ec2", "run-instances",
			"--image-id", image, "--instance-type", "t3.micro", "--key-name", "k1", "--count", "3", "--query", "Instances[].InstanceId")
		cmd.Env = cli.env
		out, err := cmd.CombinedOutput()
		if err != nil {
			launched <- "error: " + err.Error() + ": " + string(out)
			return
		}
		launched <- string(out)
	}()
	pending := func() int {
		out, err := c.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{Filters: []types.Filter{
			{Name: aws.String("instance-state-name"), Values: []string{"pending"}}}})
		if err != nil {
			t.Fatalf("DescribeInstances: %v", err)
		}
		n := 0
		for _, r := range out.Reservations {
			n += len(r.Instances)
		}
		return n
	}
	deadline := time.Now().Add(time.Minute)
	for pending() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the three instances never showed up pending")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var slowest time.Duration
	stillStarting := 0
	for range 200 {
		start := time.Now()
		n := pending()
		slowest = max(slowest, time.Since(start))
		if n == 3 {
			stillStarting++
		}
	}
	ids := strings.Fields(<-launched)
	t.Logf("200 DescribeInstances while 3 docker hosts start: slowest %v (%d answered while all 3 were still pending)", slowest, stillStarting)
	cli.steps = append(cli.steps, fmt.Sprintf("%-32s %v", "slowest describe while starting", slowest.Round(time.Microsecond)))
	if len(ids) != 3 || !strings.HasPrefix(ids[0], "i-") {
		t.Fatalf("run-instances --count 3: %v", ids)
	}
	if slowest > time.Second {
		t.Errorf("a DescribeInstances took %v while hosts started: something waits for them", slowest)
	}
	cli.ec2("terminate the three", append([]string{"terminate-instances", "--instance-ids"}, ids...)...)
}

// sshAdmin logs in as "admin" (the Debian AMI's default user, whom EC2
// gives the key pair) and runs `id -un`. The host key is the one the guest
// generated; the test reads it out of the container (as a user reads it
// from the console output) and pins it.
func sshAdmin(t *testing.T, cli *awsRun, step, id, addr string, signer ssh.Signer) {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var lastErr error
	for ctx.Err() == nil {
		if lastErr = trySSH(ctx, id, addr, "admin", signer); lastErr == nil {
			cli.step(step+" "+addr, time.Since(start))
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	t.Fatalf("ssh admin@%s with the key pair: %v", addr, lastErr)
}

func trySSH(ctx context.Context, container, addr, user string, signer ssh.Signer) error {
	pubText, err := dockertest.Exec(ctx, container, "cat", "/etc/ssh/ssh_host_ed25519_key.pub")
	if err != nil {
		return fmt.Errorf("read the guest's host key: %w", err)
	}
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey(pubText)
	if err != nil {
		return fmt.Errorf("parse the guest's host key %q: %w", pubText, err)
	}
	cfg := &ssh.ClientConfig{
		User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(hostKey), HostKeyAlgorithms: []string{hostKey.Type()}, Timeout: 10 * time.Second,
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(addr, "22"))
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		return err
	}
	client := ssh.NewClient(c, chans, reqs)
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	out, err := sess.CombinedOutput("id -un")
	if err != nil {
		return fmt.Errorf("id -un: %w (%s)", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != user {
		return fmt.Errorf("logged in as %q, want %s", got, user)
	}
	return nil
}
