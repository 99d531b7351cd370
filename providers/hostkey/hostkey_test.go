package hostkey_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/provisionhq/provision/providers/hostkey"
)

func TestGenerate(t *testing.T) {
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
	other, err := hostkey.Generate()
	if err != nil || other.Public == hk.Public {
		t.Errorf("two Generate calls gave the same key (%v)", err)
	}
}

// TestPrivateHalfNeverPrinted: every way a Key reaches text (fmt, slog, JSON)
// shows the public half only.
func TestPrivateHalfNeverPrinted(t *testing.T) {
	t.Parallel()
	hk, err := hostkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "key", hk)
	js, err := json.Marshal(struct{ K hostkey.Key }{hk})
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{
		"%v": fmt.Sprintf("%v", hk), "%+v": fmt.Sprintf("%+v", hk), "String": hk.String(),
		"slog": logged.String(), "json": string(js),
	} {
		if strings.Contains(out, "PRIVATE KEY") || !strings.Contains(out, strings.Fields(hk.Public)[1]) {
			t.Errorf("%s output = %q, want the public half only", name, out)
		}
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	a, err := hostkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	b, err := hostkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		priv    []byte
		pub     string
		want    string
		wantErr error
		anyErr  bool
	}{
		{name: "matching pair", priv: a.PrivatePEM, pub: a.Public + "\n", want: a.Public},
		{name: "public derived", priv: a.PrivatePEM, want: a.Public},
		{name: "halves of two keys", priv: a.PrivatePEM, pub: b.Public, wantErr: hostkey.ErrMismatch},
		{name: "garbage private", priv: []byte("not a key"), pub: a.Public, anyErr: true},
		{name: "garbage public", priv: a.PrivatePEM, pub: "ssh-ed25519 !!!", anyErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := hostkey.Parse(tt.priv, tt.pub)
			switch {
			case tt.wantErr != nil || tt.anyErr:
				if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "PRIVATE") {
					t.Errorf("error quotes the private key: %v", err)
				}
			case err != nil:
				t.Fatal(err)
			case got.Public != tt.want:
				t.Errorf("Public = %q, want %q", got.Public, tt.want)
			}
		})
	}
}
