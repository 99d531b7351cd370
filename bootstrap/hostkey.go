package bootstrap

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Fingerprint returns the SHA256 fingerprint ("SHA256:...") of a public key in
// authorized_keys format, as ssh-keygen -l prints it.
func Fingerprint(authorizedKey string) (string, error) {
	pub, err := parsePublicKey(authorizedKey)
	if err != nil {
		return "", err
	}
	return ssh.FingerprintSHA256(pub), nil
}

// LoadSigner reads a user's private key file. Passphrase-protected keys are
// refused with ErrKeyPassphrase: provision runs unattended, so such keys are
// used through ssh-agent (Config.Agent) instead.
func LoadSigner(path string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("ssh key %s does not exist (create one with ssh-keygen -t ed25519, or let provision generate it): %w", path, err)
		}
		return nil, fmt.Errorf("read ssh key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			return nil, fmt.Errorf("ssh key %s: %w; add it to ssh-agent (ssh-add %s) and enable agent auth", path, ErrKeyPassphrase, path)
		}
		return nil, fmt.Errorf("parse ssh key %s: %w", path, err)
	}
	return signer, nil
}

// GenerateUserKey loads the key at path, or when there is none writes a new
// ed25519 key there (0600, directory 0700) and its public half to path.pub.
func GenerateUserKey(path string) (ssh.Signer, error) {
	if _, err := os.Stat(path); err == nil {
		return LoadSigner(path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("ssh key %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create ssh key directory: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ssh key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "provision")
	if err != nil {
		return nil, fmt.Errorf("encode ssh key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("ssh key signer: %w", err)
	}
	// O_EXCL: two provision runs racing to create the key must not overwrite
	// each other's; the loser loads the winner's key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return LoadSigner(path)
	}
	if err != nil {
		return nil, fmt.Errorf("write ssh key: %w", err)
	}
	if _, err := f.Write(pem.EncodeToMemory(block)); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("write ssh key: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("write ssh key: %w", err)
	}
	pub := authorizedKey(signer.PublicKey()) + " provision\n"
	if err := os.WriteFile(path+".pub", []byte(pub), 0o644); err != nil {
		return nil, fmt.Errorf("write ssh public key: %w", err)
	}
	return signer, nil
}

// authorizedKey formats a key as one authorized_keys line without newline.
func authorizedKey(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func parsePublicKey(authorizedKey string) (ssh.PublicKey, error) {
	if strings.TrimSpace(authorizedKey) == "" {
		return nil, ErrNoHostKey
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorizedKey))
	if err != nil {
		return nil, fmt.Errorf("parse public key %q: %w", shorten(authorizedKey, 40), err)
	}
	return pub, nil
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
