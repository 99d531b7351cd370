package bootstrap_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"

	"golang.org/x/crypto/ssh"

	"github.com/provisionhq/provision/bootstrap"
	"github.com/provisionhq/provision/providers/hostkey"
)

func TestGenerateHostKey(t *testing.T) {
	t.Parallel()
	hk, err := hostkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(hk.PrivatePEM), "-----BEGIN OPENSSH PRIVATE KEY-----") {
		t.Errorf("private key is not OpenSSH PEM: %.40q", hk.PrivatePEM)
	}
	if !strings.HasPrefix(hk.Public, "ssh-ed25519 ") || strings.HasSuffix(hk.Public, "\n") {
		t.Errorf("public = %q, want one authorized_keys line without newline", hk.Public)
	}
	signer, err := ssh.ParsePrivateKey(hk.PrivatePEM)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(hk.Public))
	if err != nil {
		t.Fatal(err)
	}
	if string(pub.Marshal()) != string(signer.PublicKey().Marshal()) {
		t.Error("public half does not match private half")
	}
	fp, err := bootstrap.Fingerprint(hk.Public)
	if err != nil || fp != ssh.FingerprintSHA256(pub) || !strings.HasPrefix(fp, "SHA256:") {
		t.Errorf("Fingerprint = %q, %v", fp, err)
	}
	if _, err := bootstrap.Fingerprint("not a key"); err == nil {
		t.Error("Fingerprint accepted garbage")
	}
}

func TestLoadSigner(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	locked, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("hunter2"))
	if err != nil {
		t.Fatal(err)
	}
	lockedPath := filepath.Join(dir, "locked")
	if err := os.WriteFile(lockedPath, pem.EncodeToMemory(locked), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		wantErr error
	}{
		{name: "missing file", path: filepath.Join(dir, "nope"), wantErr: fs.ErrNotExist},
		{name: "passphrase-protected", path: lockedPath, wantErr: bootstrap.ErrKeyPassphrase},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := bootstrap.LoadSigner(tt.path)
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.path) {
				t.Errorf("err = %v, want %v naming %s", err, tt.wantErr, tt.path)
			}
		})
	}
}

func TestGenerateUserKey(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keys", "id_ed25519")
	first, err := bootstrap.GenerateUserKey(path)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]fs.FileMode{path: 0o600, filepath.Dir(path): 0o700 | fs.ModeDir} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s mode = %v, want %v", p, fi.Mode(), want)
		}
	}
	pub, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	parsed, _, _, _, err := ssh.ParseAuthorizedKey(pub)
	if err != nil || string(parsed.Marshal()) != string(first.PublicKey().Marshal()) {
		t.Errorf("%s.pub does not hold the key's public half: %v", path, err)
	}
	second, err := bootstrap.GenerateUserKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(second.PublicKey().Marshal()) != string(first.PublicKey().Marshal()) {
		t.Error("second call made a new key instead of loading the existing one")
	}
}
