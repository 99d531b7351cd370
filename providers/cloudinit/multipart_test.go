package cloudinit

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"testing"

	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/hostkey"
)

func batchSpecs(n int) []providers.MachineSpec {
	out := make([]providers.MachineSpec, n)
	for i := range out {
		out[i] = providers.MachineSpec{ID: providers.MachineID(fmt.Sprintf("c-p-%d", i)), AuthorizedKeys: []string{"ssh-ed25519 AAAAuser"},
			HostKey: hostkey.Key{
				PrivatePEM: []byte(fmt.Sprintf("-----BEGIN OPENSSH PRIVATE KEY-----\nkey%d\n-----END OPENSSH PRIVATE KEY-----\n", i)),
				Public:     fmt.Sprintf("ssh-ed25519 AAAAhost%d", i),
			}}
	}
	return out
}

func TestMultiPartGivesEachLaunchIndexItsOwnMachine(t *testing.T) {
	t.Parallel()
	sp := batchSpecs(5)
	ud, err := MultiPart(sp)
	if err != nil {
		t.Fatal(err)
	}
	if ud[0] != 0x1f || ud[1] != 0x8b {
		t.Fatal("batch user-data is not gzipped")
	}
	again, err := MultiPart(sp)
	if err != nil || !bytes.Equal(ud, again) {
		t.Fatalf("the same batch rendered different user-data (%v): an idempotent retry would mismatch", err)
	}
	for i, spec := range sp {
		one, err := ForLaunchIndex(ud, i)
		if err != nil {
			t.Fatalf("launch index %d: %v", i, err)
		}
		c, err := Parse(one)
		if err != nil {
			t.Fatalf("launch index %d: %v", i, err)
		}
		hk, err := c.HostKey()
		if err != nil || hk.Public != spec.HostKey.Public || !bytes.Equal(hk.PrivatePEM, spec.HostKey.PrivatePEM) || c.Hostname != string(spec.ID) {
			t.Fatalf("launch index %d got host %s key %+v (%v), want machine %s's", i, c.Hostname, hk, err, spec.ID)
		}
	}
	if _, err := ForLaunchIndex(ud, len(sp)); err == nil {
		t.Fatal("launch index past the batch has no part: want an error")
	}
	if _, err := MultiPart([]providers.MachineSpec{{ID: "nokey"}}); err == nil {
		t.Fatal("a machine without a host key: want an error")
	}
}

func TestForLaunchIndexPicksTheLaunchIndex(t *testing.T) {
	t.Parallel()
	mime := "Content-Type: multipart/mixed; boundary=\"B\"\r\nMIME-Version: 1.0\r\n\r\n" +
		"--B\r\nContent-Type: text/cloud-config\r\nLaunch-Index: 0\r\n\r\n#cloud-config\nzero: 0\r\n" +
		"--B\r\nContent-Type: text/cloud-config\r\nLaunch-Index: 1\r\n\r\n#cloud-config\none: 1\r\n" +
		"--B--\r\n"
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(mime))
	_ = zw.Close()
	for _, in := range [][]byte{[]byte(mime), gz.Bytes()} {
		got, err := ForLaunchIndex(in, 1)
		if err != nil || string(got) != "#cloud-config\none: 1" {
			t.Fatalf("ForLaunchIndex(…, 1) = %q, %v", got, err)
		}
	}
	if _, err := ForLaunchIndex([]byte(mime), 5); err == nil {
		t.Fatal("launch index 5 has no part: want an error")
	}
	shared := "Content-Type: multipart/mixed; boundary=\"B\"\r\n\r\n" +
		"--B\r\nContent-Type: text/x-shellscript\r\n\r\n#!/bin/sh\r\n" +
		"--B\r\nContent-Type: text/cloud-config\r\n\r\n#cloud-config\nall: 1\r\n" +
		"--B--\r\n"
	if got, err := ForLaunchIndex([]byte(shared), 7); err != nil || string(got) != "#cloud-config\nall: 1" {
		t.Fatalf("a part without Launch-Index applies to every index: got %q, %v", got, err)
	}
	plain := []byte("#cloud-config\nx: 1\n")
	if got, _ := ForLaunchIndex(plain, 3); !bytes.Equal(got, plain) {
		t.Fatalf("plain user-data changed: %q", got)
	}
}
