package dockerhost

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/provisionhq/provision/bootstrap"
	"github.com/provisionhq/provision/cloudsim"
	"github.com/provisionhq/provision/cloudsim/userdata"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/cloudinit"
	"github.com/provisionhq/provision/providers/docker/dockertest"
	"github.com/provisionhq/provision/providers/hostkey"
)

// TestInstanceAnswersSSHWithItsUserDataHostKey: a backed instance is a real
// host that presents exactly the host key from its user-data and lets the
// user-data's key log in.
func TestInstanceAnswersSSHWithItsUserDataHostKey(t *testing.T) {
	if testing.Short() {
		t.Skip("needs docker")
	}
	dockertest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	group := fmt.Sprintf("dh%d", time.Now().UnixNano()%1e6)
	b, err := New(ctx, group, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.StopAll(context.Background()) })

	hk, err := hostkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := bootstrap.GenerateUserKey(t.TempDir() + "/id")
	if err != nil {
		t.Fatal(err)
	}
	ud, err := cloudinit.UserData(providers.MachineSpec{ID: "i-1", SSHUser: "root", HostKey: hk,
		AuthorizedKeys: []string{authorized(signer.PublicKey())}})
	if err != nil {
		t.Fatal(err)
	}
	id := group + "-i-1"
	addr, err := b.Start(ctx, id, cloudsim.Boot{UserData: ud, LaunchIndex: userdata.NoLaunchIndex})
	if err != nil {
		t.Fatal(err)
	}
	c, err := bootstrap.Dial(ctx, bootstrap.Target{Name: id, Address: addr, User: "root", HostKey: hk.Public}, bootstrap.Config{Signers: []ssh.Signer{signer}})
	if err != nil {
		t.Fatalf("dial the backed instance with its user-data host key pinned: %v", err)
	}
	c.Close()
	if err := b.Stop(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := b.Stop(ctx, id); err != nil {
		t.Fatalf("second stop: %v (gone must be success)", err)
	}
}

func authorized(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// TestKeyPairLoginWithoutUserDataSurvivesStopStart: an instance launched
// with only a cloud key pair (no user-data) lets that key in as the image's
// default user under a host key the guest made itself, and after a power
// cycle it answers again, with the same host key, at its new address.
func TestKeyPairLoginWithoutUserDataSurvivesStopStart(t *testing.T) {
	if testing.Short() {
		t.Skip("needs docker")
	}
	dockertest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	group := fmt.Sprintf("dk%d", time.Now().UnixNano()%1e6)
	b, err := New(ctx, group, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.StopAll(context.Background()) })
	signer, err := bootstrap.GenerateUserKey(t.TempDir() + "/id")
	if err != nil {
		t.Fatal(err)
	}
	id := group + "-i-2"
	addr, err := b.Start(ctx, id, cloudsim.Boot{LaunchIndex: 0, PublicKeys: []string{authorized(signer.PublicKey())}})
	if err != nil {
		t.Fatal(err)
	}
	login := func(addr string) string {
		t.Helper()
		var seen string
		cfg := &ssh.ClientConfig{User: cloudsim.DefaultUser, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, Timeout: 10 * time.Second,
			HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error { seen = authorized(k); return nil }}
		var c *ssh.Client
		deadline := time.Now().Add(time.Minute)
		for {
			if c, err = ssh.Dial("tcp", net.JoinHostPort(addr, "22"), cfg); err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("log in as %s with the key pair: %v", cloudsim.DefaultUser, err)
		}
		c.Close()
		return seen
	}
	before := login(addr)
	if err := b.PowerOff(ctx, id); err != nil {
		t.Fatal(err)
	}
	addr, err = b.PowerOn(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if after := login(addr); after != before {
		t.Fatalf("host key changed across stop/start: %s then %s", before, after)
	}
}

// TestNoLoginStillBoots: a launch with neither a user-data login nor a key
// pair boots (EC2 runs it; nobody can log in): the image's default user
// with no authorized key.
func TestNoLoginStillBoots(t *testing.T) {
	t.Parallel()
	spec, err := hostSpec("i-3", "g", cloudsim.Boot{LaunchIndex: 0})
	if err != nil {
		t.Fatalf("hostSpec without any login: %v", err)
	}
	if spec.SSHUser != cloudsim.DefaultUser || len(spec.AuthorizedKeys) != 0 || len(spec.HostKey.PrivatePEM) == 0 {
		t.Errorf("spec = user %q, keys %v, host key %d bytes; want %q, none, a generated key", spec.SSHUser, spec.AuthorizedKeys, len(spec.HostKey.PrivatePEM), cloudsim.DefaultUser)
	}
}
