package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/term"
)

// Exec runs a user's command as the login user (no sudo: it is the user's
// own command, as with `ssh host cmd`) with the given streams attached.
// A non-zero exit returns an *ExitError carrying the status.
func (c *Client) Exec(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	sess, err := c.conn.NewSession()
	if err != nil {
		return fmt.Errorf("%s: open session: %w", c.name, err)
	}
	defer sess.Close()
	sess.Stdin, sess.Stdout, sess.Stderr = stdin, stdout, stderr
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()
	return c.exitError(cmd, sess.Run(cmd))
}

// Shell opens an interactive login shell. When stdin is a terminal it asks
// for a PTY of the same size and puts the local terminal in raw mode.
func (c *Client) Shell(ctx context.Context, stdin *os.File, stdout, stderr io.Writer) error {
	sess, err := c.conn.NewSession()
	if err != nil {
		return fmt.Errorf("%s: open session: %w", c.name, err)
	}
	defer sess.Close()
	sess.Stdin, sess.Stdout, sess.Stderr = stdin, stdout, stderr
	if fd := int(stdin.Fd()); term.IsTerminal(fd) {
		w, h, err := term.GetSize(fd)
		if err != nil {
			w, h = 80, 24
		}
		termType := os.Getenv("TERM")
		if termType == "" {
			termType = "xterm-256color"
		}
		if err := sess.RequestPty(termType, h, w, ssh.TerminalModes{ssh.ECHO: 1}); err != nil {
			return fmt.Errorf("%s: request pty: %w", c.name, err)
		}
		old, err := term.MakeRaw(fd)
		if err != nil {
			return fmt.Errorf("terminal raw mode: %w", err)
		}
		defer term.Restore(fd, old)
	}
	if err := sess.Shell(); err != nil {
		return fmt.Errorf("%s: start shell: %w", c.name, err)
	}
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()
	return c.exitError("shell", sess.Wait())
}

func (c *Client) exitError(cmd string, err error) error {
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return &ExitError{Cmd: shorten(cmd, 80), Status: ee.ExitStatus()}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	return nil
}

// AgentPublicKeys lists the keys in the ssh-agent at SSH_AUTH_SOCK, in
// authorized_keys format, to install on new machines.
func AgentPublicKeys() ([]string, error) {
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil, fmt.Errorf("%w: SSH_AUTH_SOCK is not set", ErrNoAuth)
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("connect to ssh-agent: %w", err)
	}
	defer conn.Close()
	keys, err := agent.NewClient(conn).List()
	if err != nil {
		return nil, fmt.Errorf("list ssh-agent keys: %w", err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: ssh-agent holds no key (ssh-add one)", ErrNoAuth)
	}
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))))
	}
	return out, nil
}
