package bootstrap_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/provisionhq/provision/bootstrap"
	"github.com/provisionhq/provision/bootstrap/sshtest"
	"github.com/provisionhq/provision/providers/hostkey"
)

// TestDialAcceptsPinnedOrNextKeyOnly: while a rotation is unfinished a
// machine may offer its pinned key or the one being rotated in; a third
// key is refused at once, naming all three.
func TestDialAcceptsPinnedOrNextKeyOnly(t *testing.T) {
	t.Parallel()
	served, other, third, user := newKey(t), newKey(t), newKey(t), newKey(t)
	script := (&sshtest.Script{}).On("true")
	srv := sshtest.Start(t, sshtest.Options{HostKey: served.signer, AuthorizedKeys: []ssh.PublicKey{user.signer.PublicKey()}, Script: script})
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaSigner, err := ssh.NewSignerFromKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaPublic := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(rsaSigner.PublicKey())))
	rsaSrv := sshtest.Start(t, sshtest.Options{HostKey: rsaSigner, AuthorizedKeys: []ssh.PublicKey{user.signer.PublicKey()}, Script: script})

	tests := []struct {
		name          string
		addr          string
		pinned, next  string
		former        []string
		wantErr       error
		wantMsg       []string
		wantNoOffered bool
	}{
		{name: "the pinned key", addr: srv.Addr, pinned: served.public},
		{name: "the next key", addr: srv.Addr, pinned: other.public, next: served.public},
		{name: "the pinned key while a next one is recorded", addr: srv.Addr, pinned: served.public, next: other.public},
		{
			name: "a third key is refused", addr: srv.Addr, pinned: other.public, next: third.public, wantErr: bootstrap.ErrHostKeyChanged,
			wantMsg: []string{fingerprint(t, other), fingerprint(t, third), fingerprint(t, served), "being rotated in"},
		},
		{name: "the next key of another type", addr: rsaSrv.Addr, pinned: other.public, next: rsaPublic},
		{
			name: "no accepted type offered", addr: rsaSrv.Addr, pinned: other.public, next: third.public, wantErr: bootstrap.ErrHostKeyChanged,
			wantMsg: []string{fingerprint(t, other), fingerprint(t, third), "no key of the pinned type"}, wantNoOffered: true,
		},
		{name: "a garbage next key", addr: srv.Addr, pinned: served.public, next: "ssh-ed25519 not-base64!", wantMsg: []string{"next host key"}},
		{name: "a dead run's key", addr: srv.Addr, pinned: other.public, former: []string{third.public, served.public}},
		{
			name: "neither pinned nor a dead run's", addr: srv.Addr, pinned: other.public, former: []string{third.public}, wantErr: bootstrap.ErrHostKeyChanged,
			wantMsg: []string{fingerprint(t, other), fingerprint(t, served)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tg := target(t, "web-1", tt.addr, tt.pinned, "root")
			tg.NextHostKey = tt.next
			tg.FormerHostKeys = tt.former
			start := time.Now()
			c, err := bootstrap.Dial(timeout(t, 10*time.Second), tg, bootstrap.Config{Signers: []ssh.Signer{user.signer}, Keepalive: -1})
			if tt.wantErr == nil && tt.wantMsg == nil {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				if err := c.Run(t.Context(), "true", nil, nil); err != nil {
					t.Fatalf("run over the connection: %v", err)
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
			var hk *bootstrap.HostKeyError
			if errors.As(err, &hk) && (hk.Offered == "") != tt.wantNoOffered {
				t.Errorf("offered fingerprint %q", hk.Offered)
			}
			if time.Since(start) > 2*time.Second {
				t.Errorf("Dial took %s: a refused key must not be retried", time.Since(start))
			}
		})
	}
}

// machine is a host for the rotation steps: their scripts run for real
// (sh, ssh-keygen) against a directory standing for the machine's root,
// behind an in-process SSH server whose "sshd reload" serves the key file
// as it is then.
type machine struct {
	root string
	srv  *sshtest.Server
	user key
}

func newMachine(t *testing.T, hostKey key, pem []byte) *machine {
	t.Helper()
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen is not installed")
	}
	m := &machine{root: t.TempDir(), user: newKey(t)}
	m.write(t, "etc/ssh/ssh_host_ed25519_key", string(pem), 0o600)
	m.write(t, "etc/ssh/ssh_host_ed25519_key.pub", hostKey.public+"\n", 0o644)
	script := &sshtest.Script{}
	m.srv = sshtest.Start(t, sshtest.Options{HostKey: hostKey.signer, AuthorizedKeys: []ssh.PublicKey{m.user.signer.PublicKey()}, Script: script})
	for _, step := range []string{"stage", "install", "scrub"} {
		script.OnFunc("# provision host key: "+step+"\n", m.sh)
	}
	script.OnFunc("# provision host key: reload sshd\n", func(sshtest.Call) sshtest.Reply {
		b, err := os.ReadFile(filepath.Join(m.root, "etc/ssh/ssh_host_ed25519_key"))
		if err != nil {
			return sshtest.Reply{Stderr: err.Error(), Exit: 1}
		}
		k, err := ssh.ParsePrivateKey(b)
		if err != nil {
			return sshtest.Reply{Stderr: "sshd -t: cannot load host key", Exit: 255}
		}
		m.srv.SetHostKey(k)
		return sshtest.Reply{}
	})
	return m
}

// sh runs a call's script with sh, as the machine's shell would.
func (m *machine) sh(c sshtest.Call) sshtest.Reply {
	cmd := exec.Command("sh", "-c", c.Inner)
	cmd.Stdin = bytes.NewReader(c.Stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return sshtest.Reply{Stdout: out.String(), Stderr: errOut.String(), Exit: ee.ExitCode()}
	case err != nil:
		return sshtest.Reply{Stderr: err.Error(), Exit: 127}
	}
	return sshtest.Reply{Stdout: out.String(), Stderr: errOut.String()}
}

func (m *machine) write(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	full := filepath.Join(m.root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func (m *machine) exists(p string) bool {
	_, err := os.Lstat(filepath.Join(m.root, p))
	return err == nil
}

// keyFile is the public half of the machine's key file, as sshd would
// load it.
func (m *machine) keyFile(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(m.root, "etc/ssh/ssh_host_ed25519_key"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k.PublicKey())))
}

func (m *machine) dial(t *testing.T, pinned, next string) (*bootstrap.Client, error) {
	t.Helper()
	tg := target(t, "m-1", m.srv.Addr, pinned, "root")
	tg.NextHostKey = next
	return bootstrap.Dial(timeout(t, 10*time.Second), tg, bootstrap.Config{Signers: []ssh.Signer{m.user.signer}, Keepalive: -1})
}

// TestRotatorOnTheMachine runs each rotation step's script against a
// machine's files: the new key is made there and only its public half comes
// back; install is atomic and idempotent; after the reload the machine
// offers the new key only; scrub leaves no copy of the user-data and keeps
// cloud-init's semaphores. Nothing secret is on a command line or stdin.
func TestRotatorOnTheMachine(t *testing.T) {
	t.Parallel()
	hk, err := hostkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(hk.PrivatePEM)
	if err != nil {
		t.Fatal(err)
	}
	old := key{signer: signer, public: hk.Public}
	m := newMachine(t, old, hk.PrivatePEM)
	// What cloud-init leaves on a machine after its first boot.
	inst := "var/lib/cloud/instances/i-0abc/"
	copies := []string{inst + "user-data.txt", inst + "user-data.txt.i", inst + "cloud-config.txt", inst + "obj.pkl",
		inst + "scripts/part-001", "run/cloud-init/combined-cloud-config.json", "run/provision/user-data.yaml"}
	kept := []string{inst + "sem/config_ssh", inst + "vendor-data.txt", "run/cloud-init/instance-data.json", "var/lib/cloud/instance"}
	for _, p := range append(copies, kept[:3]...) {
		m.write(t, p, "ssh_keys: {ed25519_private: ...}\n", 0o600)
	}
	if err := os.Symlink("instances/i-0abc", filepath.Join(m.root, "var/lib/cloud/instance")); err != nil {
		t.Fatal(err)
	}

	ctx := timeout(t, time.Minute)
	c, err := m.dial(t, old.public, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rot := bootstrap.Rotator{Root: m.root}

	first, err := rot.Stage(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	// A second stage (a run killed before recording the first) replaces it.
	next, err := rot.Stage(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if next == first || !strings.HasPrefix(next, "ssh-ed25519 ") || strings.Contains(next, "PRIVATE") {
		t.Fatalf("staged %q then %q: want two different ed25519 public keys", first, next)
	}
	if got := m.keyFile(t); got != old.public {
		t.Fatalf("staging changed the served key file to %s", got)
	}
	staged := "etc/ssh/ssh_host_ed25519_key.provision-next"
	if fi, err := os.Stat(filepath.Join(m.root, staged)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("staged key: %v, mode %v; want 0600", err, fi)
	}

	if ok, err := rot.Install(ctx, c, first); err != nil || ok {
		t.Fatalf("install of a key the machine no longer holds = %v, %v; want false (stage again)", ok, err)
	}
	if ok, err := rot.Install(ctx, c, next); err != nil || !ok {
		t.Fatalf("install = %v, %v", ok, err)
	}
	if got := m.keyFile(t); got != next {
		t.Fatalf("key file is %s after install, want %s", got, next)
	}
	if m.exists(staged) || m.exists(staged+".pub") {
		t.Fatal("the staged key is still there after install")
	}
	// A run killed between the rename and the public half: installing
	// again is a no-op that mends the .pub.
	m.write(t, "etc/ssh/ssh_host_ed25519_key.pub", old.public+"\n", 0o644)
	if ok, err := rot.Install(ctx, c, next); err != nil || !ok {
		t.Fatalf("install again = %v, %v", ok, err)
	}
	if b, _ := os.ReadFile(filepath.Join(m.root, "etc/ssh/ssh_host_ed25519_key.pub")); strings.TrimSpace(string(b)) != next {
		t.Fatalf(".pub after install = %q, want %q", b, next)
	}

	// Until sshd reloads, the machine offers the old key.
	if c2, err := m.dial(t, next, ""); !errors.Is(err, bootstrap.ErrHostKeyChanged) {
		if c2 != nil {
			c2.Close()
		}
		t.Fatalf("dial with the new key before the reload: %v, want a host key error", err)
	}
	if err := rot.Reload(ctx, c); err != nil {
		t.Fatal(err)
	}
	if c2, err := m.dial(t, old.public, ""); !errors.Is(err, bootstrap.ErrHostKeyChanged) {
		if c2 != nil {
			c2.Close()
		}
		t.Fatalf("dial with the old key after the reload: %v, want a host key error", err)
	}
	for _, pin := range [][2]string{{next, ""}, {old.public, next}} {
		c2, err := m.dial(t, pin[0], pin[1])
		if err != nil {
			t.Fatalf("dial pinning %q next %q after the reload: %v", pin[0], pin[1], err)
		}
		c2.Close()
	}
	// The connection made with the old key is still open.
	if err := rot.Scrub(ctx, c); err != nil {
		t.Fatal(err)
	}
	for _, p := range copies {
		if m.exists(p) {
			t.Errorf("%s is still on the machine after scrub", p)
		}
	}
	for _, p := range kept {
		if !m.exists(p) {
			t.Errorf("scrub removed %s", p)
		}
	}
	if err := rot.Scrub(ctx, c); err != nil {
		t.Fatalf("scrub again: %v", err)
	}

	priv, err := os.ReadFile(filepath.Join(m.root, "etc/ssh/ssh_host_ed25519_key"))
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Split(strings.TrimSpace(string(priv)), "\n")[1] // a line of the key's body
	for _, call := range m.srv.Script.Calls() {
		if len(call.Stdin) > 0 || strings.Contains(call.Cmd, "PRIVATE KEY") || strings.Contains(call.Cmd, body) {
			t.Errorf("a step sent key material: %q (stdin %d bytes)", shortCmd(call.Cmd), len(call.Stdin))
		}
	}
}

func shortCmd(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// TestRotatorReportsFailures: a machine without ssh-keygen, or a reload
// that fails (sshd -t refuses), is an error naming the step.
func TestRotatorReportsFailures(t *testing.T) {
	t.Parallel()
	host, user := newKey(t), newKey(t)
	script := (&sshtest.Script{}).
		On("# provision host key: stage\n", sshtest.Reply{Stderr: "sh: 5: ssh-keygen: not found", Exit: 127}).
		On("# provision host key: install\n", sshtest.Reply{Stdout: "what\n"}).
		On("# provision host key: reload sshd\n", sshtest.Reply{Stderr: "/etc/ssh/sshd_config line 3: Bad configuration option", Exit: 255})
	srv := sshtest.Start(t, sshtest.Options{HostKey: host.signer, AuthorizedKeys: []ssh.PublicKey{user.signer.PublicKey()}, Script: script})
	c, err := bootstrap.Dial(timeout(t, 10*time.Second), target(t, "m-1", srv.Addr, host.public, "ops"), bootstrap.Config{Signers: []ssh.Signer{user.signer}, Keepalive: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := t.Context()
	var rot bootstrap.Rotator
	if _, err := rot.Stage(ctx, c); err == nil || !strings.Contains(err.Error(), "stage a new host key") || !strings.Contains(err.Error(), "ssh-keygen: not found") {
		t.Errorf("stage without ssh-keygen: %v", err)
	}
	if _, err := rot.Install(ctx, c, host.public); err == nil || !strings.Contains(err.Error(), "unexpected answer") {
		t.Errorf("install with a garbled answer: %v", err)
	}
	if _, err := rot.Install(ctx, c, "not a key"); err == nil {
		t.Error("install of a garbage key: want an error")
	}
	if err := rot.Reload(ctx, c); err == nil || !strings.Contains(err.Error(), "reload sshd") || !strings.Contains(err.Error(), "Bad configuration") {
		t.Errorf("reload refused by sshd -t: %v", err)
	}
	// A non-root login runs every step through sudo.
	for _, call := range script.Calls() {
		if !strings.HasPrefix(call.Cmd, "sudo -n sh -c ") {
			t.Errorf("step ran without sudo: %q", shortCmd(call.Cmd))
		}
	}
}
