// Package hostkey holds the SSH host key provision generates for a machine:
// the private half is handed to the machine at creation, the public half is
// pinned in state so the first connection is already verified. It is a leaf
// package so that providers, bootstrap and test fakes can share the type
// without importing each other.
package hostkey

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"golang.org/x/crypto/ssh"
)

// ErrMismatch means a key's public half is not the public half of its
// private key: a machine given such a pair would fail host key verification.
var ErrMismatch = errors.New("host key halves do not match")

// Key is an SSH host key pair. The private half is a secret: it is never
// printed, logged or written to state.
type Key struct {
	PrivatePEM []byte // OpenSSH private key (PEM)
	Public     string // authorized_keys format, e.g. "ssh-ed25519 AAAA..."
}

// String keeps the private half out of any %v or log line.
func (k Key) String() string { return k.Public }

// LogValue keeps the private half out of slog output.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.Public) }

// MarshalJSON emits the public half only, so a spec can never carry the
// private key into a JSON document by accident.
func (k Key) MarshalJSON() ([]byte, error) { return json.Marshal(k.Public) }

// Generate makes a new ed25519 host key.
func Generate() (Key, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, fmt.Errorf("generate host key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return Key{}, fmt.Errorf("encode host key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return Key{}, fmt.Errorf("encode host key: %w", err)
	}
	return Key{PrivatePEM: pem.EncodeToMemory(block), Public: authorizedLine(sshPub)}, nil
}

// Parse checks a pair read back from somewhere (user-data, a file) and
// returns it as a Key. An empty public half is derived from the private one;
// a given public half must match it (ErrMismatch). Parse errors never quote
// the private half.
func Parse(privatePEM []byte, public string) (Key, error) {
	signer, err := ssh.ParsePrivateKey(privatePEM)
	if err != nil {
		return Key{}, fmt.Errorf("parse host private key: %w", err)
	}
	derived := authorizedLine(signer.PublicKey())
	if strings.TrimSpace(public) == "" {
		return Key{PrivatePEM: privatePEM, Public: derived}, nil
	}
	given, _, _, _, err := ssh.ParseAuthorizedKey([]byte(public))
	if err != nil {
		return Key{}, fmt.Errorf("parse host public key: %w", err)
	}
	if !bytes.Equal(given.Marshal(), signer.PublicKey().Marshal()) {
		return Key{}, fmt.Errorf("public key %s: %w", ssh.FingerprintSHA256(given), ErrMismatch)
	}
	return Key{PrivatePEM: privatePEM, Public: strings.TrimSpace(public)}, nil
}

// authorizedLine formats a key as one authorized_keys line without newline.
func authorizedLine(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}
