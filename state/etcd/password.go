package etcd

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// EnvPassword names the variable ReadPassword reads first.
const EnvPassword = "PROVISION_ETCD_PASSWORD"

// Password is an etcd user's password. It never reaches output: fmt,
// slog and encoding/json all show "[redacted]".
type Password struct{ secret string }

// NewPassword wraps a password.
func NewPassword(s string) Password { return Password{secret: s} }

// IsZero reports whether there is no password.
func (p Password) IsZero() bool { return p.secret == "" }

const redacted = "[redacted]"

func (Password) String() string               { return redacted }
func (Password) GoString() string             { return redacted }
func (Password) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (Password) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// ReadPassword returns the password in PROVISION_ETCD_PASSWORD if it is
// set, else the content of file without its trailing newline, else no
// password (file empty). A password never comes from the command line,
// where other users of the machine can read it.
func ReadPassword(file string) (Password, error) {
	if pw, ok := os.LookupEnv(EnvPassword); ok && pw != "" {
		return NewPassword(pw), nil
	}
	if file == "" {
		return Password{}, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return Password{}, fmt.Errorf("read etcd password: %w", err)
	}
	pw := strings.TrimRight(string(data), "\r\n")
	if pw == "" {
		return Password{}, fmt.Errorf("read etcd password: %s: %w", file, errEmptyPassword)
	}
	return NewPassword(pw), nil
}

var errEmptyPassword = errors.New("empty password")
