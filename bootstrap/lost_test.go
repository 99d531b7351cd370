package bootstrap_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/provisionhq/provision/bootstrap"
	"github.com/provisionhq/provision/bootstrap/cluster"
	"github.com/provisionhq/provision/bootstrap/sshfault"
	"github.com/provisionhq/provision/bootstrap/sshtest"
)

// TestLostConnection cuts the connection under a running command, directly
// and through a bastion: the command fails with cluster.ErrConnectionLost
// at once (not when its reply would have come), so does everything after it
// on that Client, and a new Dial with the same pinned key gets back in. A
// command that ran and failed, or a channel the server refused, on a live
// connection is not a lost connection.
func TestLostConnection(t *testing.T) {
	t.Parallel()
	hostKey, bastionKey, user := newKey(t), newKey(t), newKey(t)
	auth := []ssh.PublicKey{user.signer.PublicKey()}
	script := (&sshtest.Script{}).
		On("sleep", sshtest.Reply{Delay: time.Minute}).
		On("fail", sshtest.Reply{Exit: 3, Stderr: "no\n"}).
		On("true")
	machine := sshtest.Start(t, sshtest.Options{HostKey: hostKey.signer, AuthorizedKeys: auth, Script: script})

	tests := []struct {
		name string
		// dial connects through proxy, which the test drops.
		dial func(t *testing.T, proxy string) (*bootstrap.Client, error)
		// upstream is what the proxy forwards to.
		upstream func(t *testing.T) string
	}{
		{
			name:     "direct",
			upstream: func(*testing.T) string { return machine.Addr },
			dial: func(t *testing.T, proxy string) (*bootstrap.Client, error) {
				return bootstrap.Dial(timeout(t, 10*time.Second), target(t, "m-1", proxy, hostKey.public, "root"),
					bootstrap.Config{Signers: []ssh.Signer{user.signer}, Keepalive: -1})
			},
		},
		{
			name: "through a bastion",
			upstream: func(t *testing.T) string {
				return sshtest.Start(t, sshtest.Options{HostKey: bastionKey.signer, AuthorizedKeys: auth, Forwarding: true}).Addr
			},
			dial: func(t *testing.T, proxy string) (*bootstrap.Client, error) {
				b := target(t, "jump", proxy, bastionKey.public, "root")
				return bootstrap.Dial(timeout(t, 10*time.Second), target(t, "m-1", machine.Addr, hostKey.public, "root"),
					bootstrap.Config{Signers: []ssh.Signer{user.signer}, Bastion: &b, Keepalive: -1})
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proxy := sshfault.Start(t, tt.upstream(t), sshfault.Options{})
			c, err := tt.dial(t, proxy.Addr())
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()

			// A live connection: failures are the command's or the server's.
			ctx := timeout(t, 30*time.Second)
			err = c.Run(ctx, "fail", nil, nil)
			if _, exited := cluster.ExitStatus(err); !exited || errors.Is(err, cluster.ErrConnectionLost) {
				t.Fatalf("a command that exits 3: %v, want an exit status and no lost connection", err)
			}
			if _, err := c.DialUnix(ctx, "/run/nothing.sock"); err == nil || errors.Is(err, cluster.ErrConnectionLost) {
				t.Fatalf("a socket channel the server refuses: %v, want a refusal, not a lost connection", err)
			}

			sleeps := func() int {
				return len(slices.DeleteFunc(script.Commands(), func(c string) bool { return c != "sleep" }))
			}
			before := sleeps()
			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- c.Run(ctx, "sleep", nil, nil) }()
			for sleeps() == before {
				if time.Since(start) > 10*time.Second {
					t.Fatal("the command never reached the machine")
				}
				time.Sleep(5 * time.Millisecond)
			}
			if n := proxy.Drop(); n != 1 {
				t.Fatalf("Drop cut %d connections, want the client's 1", n)
			}
			select {
			case err = <-done:
			case <-time.After(15 * time.Second):
				t.Fatal("Run still waits 15 s after its connection was cut")
			}
			if !errors.Is(err, cluster.ErrConnectionLost) || !strings.Contains(err.Error(), "m-1") {
				t.Fatalf("Run cut off: %v, want cluster.ErrConnectionLost naming the machine", err)
			}
			if _, exited := cluster.ExitStatus(err); exited {
				t.Fatalf("Run cut off reports an exit status: %v", err)
			}
			if err := c.Run(ctx, "true", nil, nil); !errors.Is(err, cluster.ErrConnectionLost) {
				t.Fatalf("Run on the lost connection: %v, want cluster.ErrConnectionLost", err)
			}
			if _, err := c.DialUnix(ctx, "/run/nothing.sock"); !errors.Is(err, cluster.ErrConnectionLost) {
				t.Fatalf("DialUnix on the lost connection: %v, want cluster.ErrConnectionLost", err)
			}

			// The link is back: the same target, key pinned as before.
			again, err := tt.dial(t, proxy.Addr())
			if err != nil {
				t.Fatalf("Dial after the drop: %v", err)
			}
			defer again.Close()
			if err := again.Run(ctx, "true", nil, nil); err != nil {
				t.Fatalf("Run on the new connection: %v", err)
			}
		})
	}
}
