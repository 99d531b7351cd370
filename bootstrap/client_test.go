package bootstrap_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/provisionhq/provision/bootstrap"
	"github.com/provisionhq/provision/bootstrap/sshtest"
	"github.com/provisionhq/provision/providers/hostkey"
)

// key is a test key pair: the signer and its public half in
// authorized_keys format.
type key struct {
	signer ssh.Signer
	public string
}

func newKey(t *testing.T) key {
	t.Helper()
	hk, err := hostkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(hk.PrivatePEM)
	if err != nil {
		t.Fatal(err)
	}
	return key{signer: signer, public: hk.Public}
}

func fingerprint(t *testing.T, k key) string {
	t.Helper()
	fp, err := bootstrap.Fingerprint(k.public)
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

// target points at s with a pinned key.
func target(t *testing.T, name, addr, pinned, user string) bootstrap.Target {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return bootstrap.Target{Name: name, Address: host, Port: p, User: user, HostKey: pinned}
}

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestDialVerifiesPinnedHostKey(t *testing.T) {
	t.Parallel()
	hostKey, otherKey, user := newKey(t), newKey(t), newKey(t)
	srv := sshtest.Start(t, sshtest.Options{HostKey: hostKey.signer, AuthorizedKeys: []ssh.PublicKey{user.signer.PublicKey()}})

	tests := []struct {
		name    string
		pinned  string
		wantErr error
		wantMsg []string
	}{
		{name: "pinned key matches", pinned: hostKey.public},
		{
			name: "changed key is refused", pinned: otherKey.public, wantErr: bootstrap.ErrHostKeyChanged,
			wantMsg: []string{"web-1", srv.Addr, fingerprint(t, otherKey), fingerprint(t, hostKey), "provision down"},
		},
		{name: "empty pin is refused", pinned: "", wantErr: bootstrap.ErrNoHostKey},
		{name: "garbage pin is refused", pinned: "ssh-ed25519 not-base64!", wantErr: nil, wantMsg: []string{"pinned host key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := srv.Conns()
			start := time.Now()
			c, err := bootstrap.Dial(timeout(t, 10*time.Second), target(t, "web-1", srv.Addr, tt.pinned, "root"),
				bootstrap.Config{Signers: []ssh.Signer{user.signer}})
			if tt.wantErr == nil && tt.wantMsg == nil {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				c.Close()
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded, want an error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			if time.Since(start) > 2*time.Second {
				t.Errorf("Dial took %s: a refused key must not be retried", time.Since(start))
			}
			if errors.Is(err, bootstrap.ErrHostKeyChanged) {
				var hk *bootstrap.HostKeyError
				if !errors.As(err, &hk) {
					t.Fatalf("err %T is not a *HostKeyError", err)
				}
				// Subtests run in order on one server, so the count is exact.
				if n := srv.Conns() - before; n != 1 {
					t.Errorf("server saw %d connections, want 1 (no retry on key mismatch)", n)
				}
			}
		})
	}
}

func TestDialRetriesUntilServerStarts(t *testing.T) {
	t.Parallel()
	hostKey, user := newKey(t), newKey(t)
	addr := freeAddr(t)

	started := make(chan *sshtest.Server, 1)
	errc := make(chan error, 1)
	go func() {
		time.Sleep(time.Second) // a booting machine refuses connections for a while
		s, err := sshtest.Listen(sshtest.Options{Addr: addr, HostKey: hostKey.signer,
			AuthorizedKeys: []ssh.PublicKey{user.signer.PublicKey()},
			Script:         (&sshtest.Script{}).On("hostname", sshtest.Reply{Stdout: "late\n"})})
		errc <- err
		started <- s
	}()
	t.Cleanup(func() {
		if err := <-errc; err != nil {
			t.Errorf("start server: %v", err)
			return
		}
		(<-started).Close()
	})

	c, err := bootstrap.Dial(timeout(t, 15*time.Second), target(t, "late-1", addr, hostKey.public, "root"),
		bootstrap.Config{Signers: []ssh.Signer{user.signer}})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	var out bytes.Buffer
	if err := c.Run(t.Context(), "hostname", nil, &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "late\n" {
		t.Errorf("stdout = %q", out.String())
	}
}

func TestDialGivesUpAtDeadline(t *testing.T) {
	t.Parallel()
	hostKey, user := newKey(t), newKey(t)
	addr := freeAddr(t) // nothing listens there

	start := time.Now()
	_, err := bootstrap.Dial(timeout(t, 1500*time.Millisecond), target(t, "gone-1", addr, hostKey.public, "root"),
		bootstrap.Config{Signers: []ssh.Signer{user.signer}})
	if err == nil {
		t.Fatal("Dial succeeded with no server")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
	for _, m := range []string{"gone-1", addr, "not reachable", "refused"} {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %q", err, m)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Dial returned after %s, deadline was 1.5s", d)
	}
}

func TestDialThroughBastion(t *testing.T) {
	t.Parallel()
	bastionKey, targetKey, user := newKey(t), newKey(t), newKey(t)
	auth := []ssh.PublicKey{user.signer.PublicKey()}
	bastion := sshtest.Start(t, sshtest.Options{HostKey: bastionKey.signer, AuthorizedKeys: auth, Forwarding: true})
	inner := sshtest.Start(t, sshtest.Options{HostKey: targetKey.signer, AuthorizedKeys: auth,
		Script: (&sshtest.Script{}).On("hostname", sshtest.Reply{Stdout: "inner\n"})})

	tests := []struct {
		name          string
		bastionPinned string
		wantErr       error
	}{
		{name: "verified hop", bastionPinned: bastionKey.public},
		{name: "bastion key changed", bastionPinned: targetKey.public, wantErr: bootstrap.ErrHostKeyChanged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := target(t, "jump", bastion.Addr, tt.bastionPinned, "jumper")
			c, err := bootstrap.Dial(timeout(t, 10*time.Second), target(t, "app-1", inner.Addr, targetKey.public, "root"),
				bootstrap.Config{Signers: []ssh.Signer{user.signer}, Bastion: &b})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), "jump") {
					t.Fatalf("err = %v, want %v naming the bastion", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			var out bytes.Buffer
			if err := c.Run(t.Context(), "hostname", nil, &out); err != nil {
				t.Fatal(err)
			}
			if out.String() != "inner\n" {
				t.Errorf("stdout = %q, want the inner server's", out.String())
			}
			if bastion.Hops() != 1 {
				t.Errorf("bastion forwarded %d times, want 1", bastion.Hops())
			}
		})
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	hostKey, user := newKey(t), newKey(t)
	var stderr strings.Builder
	for i := 1; i <= 15; i++ {
		fmt.Fprintf(&stderr, "E: line %d\n", i)
	}
	script := (&sshtest.Script{}).
		On("echo", sshtest.Reply{Stdout: "hello\n"}).
		On("cat > /etc/provision/secret").
		On("apt-get install", sshtest.Reply{Stderr: stderr.String(), Exit: 100}).
		On("sleep", sshtest.Reply{Delay: time.Minute})
	srv := sshtest.Start(t, sshtest.Options{HostKey: hostKey.signer, AuthorizedKeys: []ssh.PublicKey{user.signer.PublicKey()}, Script: script})

	dial := func(t *testing.T, login string, logger *slog.Logger) *bootstrap.Client {
		c, err := bootstrap.Dial(timeout(t, 10*time.Second), target(t, "node-1", srv.Addr, hostKey.public, login),
			bootstrap.Config{Signers: []ssh.Signer{user.signer}, Logger: logger, Keepalive: 50 * time.Millisecond})
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// lastCall finds the call for cmd: subtests share the server.
	lastCall := func(t *testing.T, inner string) sshtest.Call {
		calls := script.Calls()
		for i := len(calls) - 1; i >= 0; i-- {
			if calls[i].Inner == inner {
				return calls[i]
			}
		}
		t.Fatalf("no call %q in %v", inner, script.Commands())
		return sshtest.Call{}
	}

	t.Run("sudo wrapping", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			user, cmd, wantCmd string
		}{
			{"root", "echo root", "echo root"},
			{"deploy", "echo deploy", `sudo -n sh -c 'echo deploy'`},
			{"deploy", "echo 'quoted' && echo $HOME", `sudo -n sh -c 'echo '\''quoted'\'' && echo $HOME'`},
		}
		for _, tt := range tests {
			c := dial(t, tt.user, nil)
			var out bytes.Buffer
			if err := c.Run(t.Context(), tt.cmd, nil, &out); err != nil {
				t.Fatalf("Run(%q) as %s: %v", tt.cmd, tt.user, err)
			}
			call := lastCall(t, tt.cmd)
			if call.Cmd != tt.wantCmd || call.User != tt.user {
				t.Errorf("as %s: server got %q from %s, want %q", tt.user, call.Cmd, call.User, tt.wantCmd)
			}
			if out.String() != "hello\n" {
				t.Errorf("stdout = %q", out.String())
			}
		}
	})

	t.Run("stdin reaches the command, not argv or logs", func(t *testing.T) {
		t.Parallel()
		var logs bytes.Buffer
		logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c := dial(t, "deploy", logger)
		const secret = "SWMTKN-1-topsecret"
		if err := c.Run(t.Context(), "cat > /etc/provision/secret", strings.NewReader(secret), nil); err != nil {
			t.Fatal(err)
		}
		call := lastCall(t, "cat > /etc/provision/secret")
		if string(call.Stdin) != secret {
			t.Errorf("stdin = %q, want the secret", call.Stdin)
		}
		if strings.Contains(call.Cmd, secret) {
			t.Errorf("secret in command line %q", call.Cmd)
		}
		if strings.Contains(logs.String(), secret) {
			t.Errorf("secret in logs: %s", logs.String())
		}
		if !strings.Contains(logs.String(), "node-1") {
			t.Errorf("debug logs do not name the machine: %s", logs.String())
		}
	})

	t.Run("non-zero exit carries stderr tail", func(t *testing.T) {
		t.Parallel()
		c := dial(t, "root", nil)
		err := c.Run(t.Context(), "apt-get install -y foo", nil, nil)
		var ee *bootstrap.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("err = %v (%T), want *ExitError", err, err)
		}
		if ee.Status != 100 {
			t.Errorf("status = %d, want 100", ee.Status)
		}
		msg := err.Error()
		for _, want := range []string{`run "apt-get install -y foo": exit 100`, "E: line 6", "E: line 15", "node-1"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q lacks %q", msg, want)
			}
		}
		if strings.Contains(msg, "E: line 5\n") {
			t.Errorf("error %q has more than the last 10 stderr lines", msg)
		}
	})

	t.Run("cancel ends the session", func(t *testing.T) {
		t.Parallel()
		c := dial(t, "root", nil)
		start := time.Now()
		err := c.Run(timeout(t, 300*time.Millisecond), "sleep 60", nil, nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want deadline exceeded", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Run returned after %s", d)
		}
		// The connection survives a cancelled session.
		if err := c.Run(t.Context(), "echo again", nil, nil); err != nil {
			t.Errorf("Run after cancel: %v", err)
		}
	})

	t.Run("upload sends content on stdin", func(t *testing.T) {
		t.Parallel()
		c := dial(t, "deploy", nil)
		script.On("umask 077 && mkdir -p '/etc/provision'")
		content := []byte("private key material")
		if err := c.Upload(t.Context(), "/etc/provision/host key", content, 0o600); err != nil {
			t.Fatal(err)
		}
		var call sshtest.Call
		for _, cl := range script.Calls() {
			if strings.HasPrefix(cl.Inner, "umask 077") {
				call = cl
			}
		}
		if string(call.Stdin) != string(content) || bytes.Contains([]byte(call.Cmd), content) {
			t.Errorf("upload call = %+v, want content on stdin only", call)
		}
		for _, want := range []string{"chmod 0600", `'/etc/provision/host key'`, "mv -f"} {
			if !strings.Contains(call.Inner, want) {
				t.Errorf("upload command %q lacks %q", call.Inner, want)
			}
		}
	})
}

// freeAddr returns a local address nothing listens on (for now).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
