package cloudinit_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/provisionhq/provision/cloudsim/userdata"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/cloudinit"
	"github.com/provisionhq/provision/providers/hostkey"
)

// The user-data is read back with cloudsim/userdata, which shares no code
// with this package and reads as cloud-init does: a format bug here cannot
// be mirrored by the reader.

func TestUserDataAsCloudInitReadsIt(t *testing.T) {
	t.Parallel()
	hk, err := hostkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{"root", "ops"} {
		t.Run(user, func(t *testing.T) {
			t.Parallel()
			spec := providers.MachineSpec{ID: "c-p-1", SSHUser: user, AuthorizedKeys: []string{"ssh-ed25519 AAAAuser"}, HostKey: hk}
			ud, err := cloudinit.UserData(spec)
			if err != nil {
				t.Fatal(err)
			}
			c, err := userdata.Decode(ud, userdata.NoLaunchIndex)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.HostKey()
			if err != nil || got.Public != hk.Public || string(got.PrivatePEM) != string(hk.PrivatePEM) {
				t.Fatalf("host key = %s, %v; want the spec's %s", got, err, hk)
			}
			u, ok := c.LoginUser()
			if !ok || u.Name != user || len(u.SSHAuthorizedKeys) != 1 || u.SSHAuthorizedKeys[0] != "ssh-ed25519 AAAAuser" || c.Hostname != "c-p-1" {
				t.Fatalf("hostname %q, users = %+v", c.Hostname, c.Users)
			}
			if (user != "root") != strings.Contains(string(ud), "NOPASSWD") {
				t.Fatalf("sudo for %s: %s", user, ud)
			}
		})
	}
	if _, err := cloudinit.UserData(providers.MachineSpec{ID: "x"}); !errors.Is(err, providers.ErrInvalidSpec) {
		t.Fatalf("no host key: err = %v, want ErrInvalidSpec", err)
	}
}
