package dockerhost

import (
	"context"
	"fmt"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"strings"

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
