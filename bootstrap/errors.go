package bootstrap

import (
	"errors"
	"fmt"
	"strings"
)

// Kinds of bootstrap failure callers act on, classified with errors.Is.
var (
	// ErrHostKeyChanged: the machine offered a host key other than the
	// pinned one. Never retried: it is either a rebuilt machine or an attack.
	ErrHostKeyChanged = errors.New("host key changed")
	// ErrNoHostKey: a target without a pinned host key; provision never
	// connects unverified.
	ErrNoHostKey = errors.New("no pinned host key")
	// ErrNoAuth: no signer and no agent to authenticate with.
	ErrNoAuth = errors.New("no ssh credentials")
	// ErrKeyPassphrase: a user key file is passphrase-protected.
	ErrKeyPassphrase = errors.New("ssh key is passphrase-protected")
	// ErrUnsupportedOS: the machine's OS has no known package family.
	ErrUnsupportedOS = errors.New("unsupported operating system")
	// ErrStepNotDone: a step's check still fails after its apply.
	ErrStepNotDone = errors.New("step not done after apply")
)

// HostKeyError is a host key mismatch. errors.Is(err, ErrHostKeyChanged).
type HostKeyError struct {
	Machine string
	Address string // host:port dialed
	Pinned  string // SHA256 fingerprint of the pinned key
	// Next is the SHA256 fingerprint of the key being rotated in, accepted
	// too; empty when no rotation is under way.
	Next    string
	Offered string // SHA256 fingerprint of the offered key; empty when the server offered none of the pinned type
}

func (e *HostKeyError) Error() string {
	offered := e.Offered
	if offered == "" {
		offered = "no key of the pinned type"
	}
	pinned := e.Pinned
	if e.Next != "" {
		pinned += " (or " + e.Next + ", being rotated in)"
	}
	return fmt.Sprintf("%s (%s): %v: pinned %s, offered %s; "+
		"if the machine was rebuilt on purpose, run `provision down` for it or remove it from state, "+
		"otherwise treat this as a possible attack",
		e.Machine, e.Address, ErrHostKeyChanged, pinned, offered)
}

func (e *HostKeyError) Is(target error) bool { return target == ErrHostKeyChanged }

// ExitError is a remote command that exited non-zero. Its message carries the
// command (never its stdin) and the tail of its stderr.
type ExitError struct {
	Cmd    string // the command as the caller wrote it, shortened
	Status int
	Stderr string // last lines of stderr
}

// ExitStatus lets cluster.ExitStatus classify the error without importing
// this package.
func (e *ExitError) ExitStatus() int { return e.Status }

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("run %q: exit %d", e.Cmd, e.Status)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}
