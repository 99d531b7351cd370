package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/provisionhq/provision/providers/docker/dockertest"
)

// openstackCLI is Debian's python3-openstackclient, as
// scripts/install-deps.sh installs it.
const openstackCLI = "/usr/bin/openstack"

// osCLI runs the real openstack CLI against one cloudsim.
type osCLI struct {
	t     *testing.T
	env   []string
	steps []string // "step: duration", reported at the end
}

// run runs one CLI command and fails the test when it fails; it records
// how long the step took.
func (c *osCLI) run(step string, args ...string) string {
	c.t.Helper()
	out, err := c.try(step, args...)
	if err != nil {
		c.t.Fatalf("openstack %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *osCLI) try(step string, args ...string) (string, error) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, openstackCLI, args...)
	cmd.Env = c.env
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start).Round(10 * time.Millisecond)
	if step != "" {
		c.steps = append(c.steps, fmt.Sprintf("%-28s %v", step, d))
		c.t.Logf("%s: %v", step, d)
	}
	return string(out), err
}

// serverState is what `openstack server show -f json` says of a server.
type serverState struct {
	ID        string          `json:"id"`
	Status    string          `json:"status"`
	Addresses json.RawMessage `json:"addresses"`
}

var ipv4 = regexp.MustCompile(`\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b`)

// address is the server's first IPv4 address, whatever shape the CLI
// version prints addresses in (a string or a network → list map).
func (s serverState) address() string {
	return ipv4.FindString(string(s.Addresses))
}

func (c *osCLI) show(step, name string) serverState {
	c.t.Helper()
	var s serverState
	out := c.run(step, "server", "show", "-f", "json", name)
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		c.t.Fatalf("server show %s: %v\n%s", name, err, out)
	}
	return s
}

// waitStatus polls `server show` (each poll is a CLI start, so slowly)
// until the server has status want.
func (c *osCLI) waitStatus(step, name, want string, within time.Duration) serverState {
	c.t.Helper()
	start := time.Now()
	deadline := start.Add(within)
	for {
		s := c.show("", name)
		if s.Status == want {
			c.steps = append(c.steps, fmt.Sprintf("%-28s %v", step, time.Since(start).Round(10*time.Millisecond)))
			c.t.Logf("%s: %v", step, time.Since(start).Round(10*time.Millisecond))
			return s
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("server %s still %s after %v, want %s", name, s.Status, within, want)
		}
		time.Sleep(time.Second)
	}
}

// TestOpenStackCLI drives cloudsim's Keystone, Nova, Glance and Neutron
// with the real openstack CLI (keystoneauth1 discovery, microversion
// negotiation, name lookups), against docker-backed servers: import a key
// pair, boot a server by flavor, image and network names, log in over SSH
// with the key pair as the image's default user, stop and start it, delete
// it and see its container go.
func TestOpenStackCLI(t *testing.T) {
	requireDocker(t)
	if _, err := os.Stat(openstackCLI); err != nil {
		if os.Getenv("PROVISION_REQUIRE_DOCKER") != "" {
			t.Fatalf("%s missing (scripts/install-deps.sh installs python3-openstackclient): %v", openstackCLI, err)
		}
		t.Skipf("%s missing; run scripts/install-deps.sh (python3-openstackclient)", openstackCLI)
	}
	group := fmt.Sprintf("oscli%d", time.Now().UnixNano()%1e6)
	sim := startCloudsim(t, group, "--pending", "1s")
	cli := &osCLI{t: t, env: cliEnv(sim.env)}
	t.Cleanup(func() { t.Logf("step times:\n  %s", strings.Join(cli.steps, "\n  ")) })

	dir := t.TempDir()
	signer, pubFile := keyPair(t, dir)

	cli.run("keypair create", "keypair", "create", "--public-key", pubFile, "k1")
	out := cli.run("server create --wait", "server", "create", "--flavor", "m1.small", "--image", "debian-12",
		"--network", "private", "--key-name", "k1", "--wait", "-f", "json", "s1")
	var created serverState
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatalf("server create output: %v\n%s", err, out)
	}
	if created.Status != "ACTIVE" || created.address() == "" {
		t.Fatalf("server create --wait returned status %q addresses %s, want ACTIVE with an address", created.Status, created.Addresses)
	}
	list := cli.run("server list", "server", "list", "-f", "json")
	var rows []map[string]any
	if err := json.Unmarshal([]byte(list), &rows); err != nil {
		t.Fatalf("server list output: %v\n%s", err, list)
	}
	if len(rows) != 1 || rows[0]["Name"] != "s1" || rows[0]["Status"] != "ACTIVE" || !strings.Contains(fmt.Sprint(rows[0]["Networks"]), created.address()) {
		t.Fatalf("server list = %v, want s1 ACTIVE at %s", rows, created.address())
	}

	login(t, cli, created.ID, created.address(), signer)

	cli.run("server stop", "server", "stop", "s1")
	cli.waitStatus("stop → SHUTOFF", "s1", "SHUTOFF", 2*time.Minute)
	cli.run("server start", "server", "start", "s1")
	started := cli.waitStatus("start → ACTIVE", "s1", "ACTIVE", 2*time.Minute)
	login(t, cli, created.ID, started.address(), signer) // the disk (and authorized key) survived

	cli.run("server delete --wait", "server", "delete", "--wait", "s1")
	start := time.Now()
	deadline := start.Add(time.Minute)
	for {
		names, err := dockertest.ContainerNames(t.Context(), "provision.cluster="+group)
		if err != nil {
			t.Fatalf("docker ps: %v", err)
		}
		if len(names) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("containers left after server delete: %v", names)
		}
		time.Sleep(500 * time.Millisecond)
	}
	cli.steps = append(cli.steps, fmt.Sprintf("%-28s %v", "container gone", time.Since(start).Round(10*time.Millisecond)))
	if out := cli.run("server list (empty)", "server", "list", "-f", "value"); strings.TrimSpace(out) != "" {
		t.Fatalf("server list after delete:\n%s", out)
	}
}

// cliEnv is the test's environment with cloudsim's OS_* variables in place
// of any the machine has (a stray OS_CLOUD would win over them).
func cliEnv(simEnv []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OS_") {
			env = append(env, kv)
		}
	}
	return append(env, simEnv...)
}

// keyPair makes an ed25519 login key and writes its public half for
// `keypair create --public-key`.
func keyPair(t *testing.T, dir string) (ssh.Signer, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pubFile := filepath.Join(dir, "k1.pub")
	if err := os.WriteFile(pubFile, ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	return signer, pubFile
}

// login logs in as the image's default user ("debian") with the key pair
// and runs `id -un`. The host key is the one the guest generated; the test
// reads it out of the container (as a user reads it from the console log)
// and pins it, so the connection is verified.
func login(t *testing.T, cli *osCLI, serverID, addr string, signer ssh.Signer) {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var lastErr error
	for ctx.Err() == nil {
		if err := tryLogin(ctx, serverID, addr, signer); err == nil {
			d := time.Since(start).Round(10 * time.Millisecond)
			cli.steps = append(cli.steps, fmt.Sprintf("%-28s %v", "ssh debian@"+addr, d))
			t.Logf("ssh debian@%s with key pair k1: %v", addr, d)
			return
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	t.Fatalf("ssh debian@%s with the key pair: %v", addr, lastErr)
}

func tryLogin(ctx context.Context, serverID, addr string, signer ssh.Signer) error {
	pubText, err := dockertest.Exec(ctx, serverID, "cat", "/etc/ssh/ssh_host_ed25519_key.pub")
	if err != nil {
		return fmt.Errorf("read the guest's host key: %w", err)
	}
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey(pubText)
	if err != nil {
		return fmt.Errorf("parse the guest's host key %q: %w", pubText, err)
	}
	cfg := &ssh.ClientConfig{
		User: "debian", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
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
	if got := strings.TrimSpace(string(out)); got != "debian" {
		return fmt.Errorf("logged in as %q, want debian", got)
	}
	return nil
}
