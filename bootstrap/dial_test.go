package bootstrap_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/provisionhq/provision/bootstrap"
	"github.com/provisionhq/provision/bootstrap/sshtest"
)

// echoSocket serves a unix socket that writes back what it reads, in a short
// temp dir (socket paths are limited to ~108 bytes, t.TempDir's can be longer).
func echoSocket(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dial")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "echo.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return path
}

func TestDialUnix(t *testing.T) {
	t.Parallel()
	hostKey, user := newKey(t), newKey(t)
	auth := []ssh.PublicKey{user.signer.PublicKey()}
	sock := echoSocket(t)
	forwarding := sshtest.Start(t, sshtest.Options{HostKey: hostKey.signer, AuthorizedKeys: auth, UnixForwarding: true})
	plain := sshtest.Start(t, sshtest.Options{HostKey: hostKey.signer, AuthorizedKeys: auth})

	tests := []struct {
		name    string
		addr    string
		path    string
		cancel  bool
		wantErr []string // substrings; none means the echo must work
		wantIs  error
	}{
		{name: "reaches the socket on the machine", addr: forwarding.Addr, path: sock},
		{name: "server refuses unix forwarding", addr: plain.Addr, path: sock,
			wantErr: []string{"mgr-1", "dial unix socket " + sock, "over ssh"}},
		{name: "no socket at that path", addr: forwarding.Addr, path: sock + ".missing",
			wantErr: []string{"mgr-1", sock + ".missing", "no such file"}},
		{name: "cancelled context", addr: forwarding.Addr, path: sock, cancel: true,
			wantErr: []string{"mgr-1"}, wantIs: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := bootstrap.Dial(timeout(t, 10*time.Second), target(t, "mgr-1", tt.addr, hostKey.public, "root"),
				bootstrap.Config{Signers: []ssh.Signer{user.signer}})
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			ctx := timeout(t, 5*time.Second)
			if tt.cancel {
				cctx, cancel := context.WithCancel(ctx)
				cancel()
				ctx = cctx
			}
			conn, err := c.DialUnix(ctx, tt.path)
			if len(tt.wantErr) > 0 {
				if err == nil {
					conn.Close()
					t.Fatal("DialUnix succeeded, want an error")
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("err = %q, want it to mention %q", err, s)
					}
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Errorf("err = %v, want errors.Is %v", err, tt.wantIs)
				}
				return
			}
			if err != nil {
				t.Fatalf("DialUnix: %v", err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, "ping\n"); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 5)
			if _, err := io.ReadFull(conn, buf); err != nil {
				t.Fatal(err)
			}
			if string(buf) != "ping\n" {
				t.Errorf("read %q through the socket, want the echo %q", buf, "ping\n")
			}
		})
	}
}
