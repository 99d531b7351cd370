package cloudinit

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/hostkey"
)

func TestUserDataRoundTrip(t *testing.T) {
	t.Parallel()
	for _, user := range []string{"root", "ops"} {
		t.Run(user, func(t *testing.T) {
			t.Parallel()
			spec := providers.MachineSpec{ID: "c-p-1", SSHUser: user, AuthorizedKeys: []string{"ssh-ed25519 AAAAuser"},
				HostKey: hostkey.Key{PrivatePEM: []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n"), Public: "ssh-ed25519 AAAAhost"}}
			ud, err := UserData(spec)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Parse(ud)
			if err != nil {
				t.Fatal(err)
			}
			hk, err := c.HostKey()
			if err != nil || !reflect.DeepEqual(hk, spec.HostKey) {
				t.Fatalf("host key = %+v, %v; want the spec's", hk, err)
			}
			if c.Users[0].Name != user || c.Users[0].SSHAuthorizedKeys[0] != "ssh-ed25519 AAAAuser" {
				t.Fatalf("users = %+v", c.Users)
			}
			if (user != "root") != strings.Contains(string(ud), "NOPASSWD") {
				t.Fatalf("sudo for %s: %s", user, ud)
			}
		})
	}
	if _, err := UserData(providers.MachineSpec{ID: "x"}); !errors.Is(err, providers.ErrInvalidSpec) {
		t.Fatalf("no host key: err = %v, want ErrInvalidSpec", err)
	}
}
