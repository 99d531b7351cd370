package cloudinit_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/provisionhq/provision/cloudsim/userdata"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/cloudinit"
	"github.com/provisionhq/provision/providers/hostkey"
)

func batchSpecs(t *testing.T, n int) []providers.MachineSpec {
	out := make([]providers.MachineSpec, n)
	for i := range out {
		hk, err := hostkey.Generate()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = providers.MachineSpec{ID: providers.MachineID(fmt.Sprintf("c-p-%d", i)), AuthorizedKeys: []string{"ssh-ed25519 AAAAuser"}, HostKey: hk}
	}
	return out
}

func TestMultiPartGivesEachLaunchIndexItsOwnMachine(t *testing.T) {
	t.Parallel()
	sp := batchSpecs(t, 5)
	ud, err := cloudinit.MultiPart(sp)
	if err != nil {
		t.Fatal(err)
	}
	if ud[0] != 0x1f || ud[1] != 0x8b {
		t.Fatal("batch user-data is not gzipped")
	}
	again, err := cloudinit.MultiPart(sp)
	if err != nil || !bytes.Equal(ud, again) {
		t.Fatalf("the same batch rendered different user-data (%v): an idempotent retry would mismatch", err)
	}
	for i, spec := range sp {
		c, err := userdata.Decode(ud, i)
		if err != nil {
			t.Fatalf("launch index %d: %v", i, err)
		}
		hk, err := c.HostKey()
		if err != nil || hk.Public != spec.HostKey.Public || !bytes.Equal(hk.PrivatePEM, spec.HostKey.PrivatePEM) || c.Hostname != string(spec.ID) {
			t.Fatalf("launch index %d got host %s key %s (%v), want machine %s's", i, c.Hostname, hk, err, spec.ID)
		}
	}
	// An instance past the batch gets no part, so no host key: cloud-init
	// would boot it with none of provision's configuration.
	c, err := userdata.Decode(ud, len(sp))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.HostKey(); err == nil || c.Hostname != "" {
		t.Fatalf("launch index past the batch configured host %q", c.Hostname)
	}
	if _, err := cloudinit.MultiPart([]providers.MachineSpec{{ID: "nokey"}}); err == nil {
		t.Fatal("a machine without a host key: want an error")
	}
}
