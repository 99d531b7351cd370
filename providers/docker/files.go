package docker

import (
	"archive/tar"
	"bytes"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/provisionhq/provision/providers"
)

// machineFiles builds the tar stream copied into a new container: its SSH
// host key and the login user's authorized keys. Root's keys go straight
// to /root/.ssh; another user does not exist yet, so provision-init creates
// it at start from /etc/provision/{ssh-user,authorized_keys}.
func machineFiles(spec providers.MachineSpec) (*bytes.Buffer, error) {
	signer, err := ssh.ParsePrivateKey(spec.HostKey.PrivatePEM)
	if err != nil {
		// Do not wrap err: parse errors can quote key material.
		return nil, fmt.Errorf("%w: machine %s: host key is not an OpenSSH private key", providers.ErrInvalidSpec, spec.ID)
	}
	if signer.PublicKey().Type() != ssh.KeyAlgoED25519 {
		return nil, fmt.Errorf("%w: machine %s: host key is %s, the node image serves ssh-ed25519 only", providers.ErrInvalidSpec, spec.ID, signer.PublicKey().Type())
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	if spec.HostKey.Public != "" {
		given, _, _, _, err := ssh.ParseAuthorizedKey([]byte(spec.HostKey.Public))
		if err != nil || !bytes.Equal(given.Marshal(), signer.PublicKey().Marshal()) {
			return nil, fmt.Errorf("%w: machine %s: host key public half does not match the private key", providers.ErrInvalidSpec, spec.ID)
		}
	}
	authorized := strings.Join(spec.AuthorizedKeys, "\n") + "\n"

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	dir := func(name string, mode int64) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: now})
	}
	file := func(name string, mode int64, body []byte) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: now})
		tw.Write(body)
	}
	file("etc/ssh/ssh_host_ed25519_key", 0o600, spec.HostKey.PrivatePEM)
	file("etc/ssh/ssh_host_ed25519_key.pub", 0o644, []byte(pub+"\n"))
	if spec.SSHUser == "root" {
		dir("root/.ssh/", 0o700)
		file("root/.ssh/authorized_keys", 0o600, []byte(authorized))
	} else {
		dir("etc/provision/", 0o755)
		file("etc/provision/ssh-user", 0o644, []byte(spec.SSHUser+"\n"))
		file("etc/provision/authorized_keys", 0o600, []byte(authorized))
	}
	// Writes to a bytes.Buffer cannot fail; Close reports any header error.
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("machine %s: build key archive: %w", spec.ID, err)
	}
	return &buf, nil
}
