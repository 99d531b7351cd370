// Package bootstrap owns turning a reachable machine into a container host:
// the SSH client (pinned host keys, bastion hops, keepalives, uploads), the
// idempotent step runner, OS detection and the container runtime install.
// Cluster join drivers live in bootstrap/cluster and run through a Client.
package bootstrap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/provisionhq/provision/bootstrap/cluster"
	"github.com/provisionhq/provision/internal/retry"
)

const (
	// DefaultPort is the SSH port when a Target has none.
	DefaultPort = 22
	// DefaultDialTimeout bounds Dial when ctx has no deadline of its own: a
	// cloud machine usually answers SSH within a few minutes of boot.
	DefaultDialTimeout = 5 * time.Minute
	// attemptTimeout bounds one TCP connect plus SSH handshake, so a
	// half-open machine that accepts but never speaks does not eat the
	// whole dial budget.
	attemptTimeout = 20 * time.Second
	// maxAuthFailures: auth is retried a little, because cloud-init may
	// still be writing authorized_keys when sshd starts, then given up.
	maxAuthFailures = 5
	// DefaultKeepalive is the keepalive interval when Config has none: a
	// machine that vanishes (terminated by its cloud, network cut) is
	// detected within keepaliveMisses intervals (45s) instead of when TCP
	// gives up, many minutes later, with a Run hanging all along. It is
	// OpenSSH's ServerAliveInterval as commonly set, and costs one small
	// request per connection per interval.
	DefaultKeepalive = 15 * time.Second
	// keepaliveMisses: a keepalive unanswered for this many intervals
	// means the peer is gone and the connection is closed.
	keepaliveMisses = 3
	// stderrTailLines is how much stderr an ExitError carries.
	stderrTailLines = 10
	// probeTimeout bounds the keepalive request that asks a connection
	// whether it is still there after a session on it failed.
	probeTimeout = 10 * time.Second
)

// Target is one machine to connect to.
type Target struct {
	Name    string // machine ID, used in errors and logs
	Address string // IP or host name
	Port    int    // DefaultPort when zero
	User    string // "root" when empty
	HostKey string // pinned public host key, authorized_keys format; required
	// NextHostKey is the host key being rotated in, when a rotation is
	// unfinished (state.Machine.NextHostKey): the machine may offer it
	// instead of HostKey, and no third key is accepted.
	NextHostKey string
	// FormerHostKeys are keys an interrupted create of the machine may
	// have given it (state.Machine.FormerHostKeys), accepted as well until
	// its host key is rotated.
	FormerHostKeys []string
}

func (t Target) addr() string {
	port := t.Port
	if port == 0 {
		port = DefaultPort
	}
	return net.JoinHostPort(t.Address, strconv.Itoa(port))
}

func (t Target) user() string {
	if t.User == "" {
		return "root"
	}
	return t.User
}

// Config is how to authenticate and what to go through.
type Config struct {
	Signers []ssh.Signer
	Agent   bool // also offer the keys of the agent at SSH_AUTH_SOCK
	// Bastion, when set, is dialed first (verified against its own pinned
	// key) and the target is reached through it.
	Bastion        *Target
	BastionSigners []ssh.Signer // Signers when empty
	Logger         *slog.Logger
	// Keepalive is the interval of keepalive@openssh.com requests:
	// DefaultKeepalive when zero, none when negative.
	Keepalive time.Duration
}

// Client is a verified SSH connection to one machine. It implements
// cluster.Runner. Close it when done.
type Client struct {
	name    string
	addr    string
	user    string
	conn    *ssh.Client
	bastion *ssh.Client
	logger  *slog.Logger

	stop      chan struct{}
	wg        sync.WaitGroup // the keepalive goroutine
	closeOnce sync.Once
}

var _ cluster.Runner = (*Client)(nil)

// Dial connects to t, retrying with backoff and jitter while the machine is
// not ready (refused, timed out, closed during handshake) until ctx's
// deadline (DefaultDialTimeout when it has none). A host key other than the
// pinned one (or the target's NextHostKey) fails at once with a
// *HostKeyError (ErrHostKeyChanged).
func Dial(ctx context.Context, t Target, cfg Config) (*Client, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	addr := t.addr()
	clientCfg, err := clientConfig(t, cfg.Signers)
	if err != nil {
		return nil, err
	}
	var bastionCfg *ssh.ClientConfig
	if cfg.Bastion != nil {
		signers := cfg.BastionSigners
		if len(signers) == 0 {
			signers = cfg.Signers
		}
		b := *cfg.Bastion
		if b.Name == "" {
			b.Name = "bastion"
		}
		cfg.Bastion = &b
		if bastionCfg, err = clientConfig(b, signers); err != nil {
			return nil, err
		}
	}
	if cfg.Agent {
		ag, closeAgent, err := dialAgent(ctx)
		if err != nil {
			return nil, fmt.Errorf("ssh %s (%s): %w", t.Name, addr, err)
		}
		// The agent is only needed during handshakes, all inside Dial.
		defer closeAgent()
		clientCfg.Auth = append(clientCfg.Auth, ssh.PublicKeysCallback(ag.Signers))
		if bastionCfg != nil {
			bastionCfg.Auth = append(bastionCfg.Auth, ssh.PublicKeysCallback(ag.Signers))
		}
	}
	if len(clientCfg.Auth) == 0 || (bastionCfg != nil && len(bastionCfg.Auth) == 0) {
		return nil, fmt.Errorf("ssh %s (%s): %w: give a key or enable agent auth", t.Name, addr, ErrNoAuth)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultDialTimeout)
		defer cancel()
	}

	var (
		bastion      *ssh.Client
		conn         *ssh.Client
		lastErr      error
		attempts     int
		authFailures int
		start        = time.Now()
	)
	// classify sorts one attempt's failure into "stop" (done) or "retry".
	classify := func(err error) (bool, error) {
		if ctx.Err() != nil && lastErr != nil {
			// The deadline cut this attempt short; the previous error
			// says more about why the machine is unreachable.
			return false, lastErr
		}
		if errors.Is(err, ErrHostKeyChanged) {
			return true, err
		}
		// x/crypto reports auth failure only as text; there is no type.
		if strings.Contains(err.Error(), "unable to authenticate") {
			authFailures++
			if authFailures >= maxAuthFailures {
				return true, fmt.Errorf("ssh %s (%s) as %s: authentication refused %d times: %w", t.Name, addr, t.user(), authFailures, err)
			}
		}
		lastErr = err
		logger.Debug("ssh not ready", "machine", t.Name, "addr", addr, "attempt", attempts, "err", err)
		return false, err
	}
	err = retry.Do(ctx, retry.Policy{Initial: 250 * time.Millisecond, Max: 5 * time.Second}, func(ctx context.Context) (bool, error) {
		attempts++
		if cfg.Bastion != nil && bastion == nil {
			b, err := dialDirect(ctx, *cfg.Bastion, bastionCfg)
			if err != nil {
				return classify(fmt.Errorf("bastion %s: %w", cfg.Bastion.addr(), err))
			}
			bastion = b
		}
		var (
			c   *ssh.Client
			err error
		)
		if bastion != nil {
			c, err = dialVia(ctx, bastion, t, clientCfg)
			var oce *ssh.OpenChannelError
			if err != nil && !errors.As(err, &oce) && !errors.Is(err, ErrHostKeyChanged) {
				// Not a refusal relayed by the bastion: the bastion
				// connection itself may be broken, so redial it.
				bastion.Close()
				bastion = nil
			}
		} else {
			c, err = dialDirect(ctx, t, clientCfg)
		}
		if err != nil {
			return classify(err)
		}
		conn = c
		return true, nil
	})
	if err != nil {
		if bastion != nil {
			bastion.Close()
		}
		if ctx.Err() == nil || errors.Is(err, ErrHostKeyChanged) {
			return nil, err
		}
		return nil, fmt.Errorf("ssh %s (%s): not reachable after %d attempts in %s: %w",
			t.Name, addr, attempts, time.Since(start).Round(time.Second), err)
	}
	logger.Debug("ssh connected", "machine", t.Name, "addr", addr, "attempts", attempts)

	c := &Client{
		name:    t.Name,
		addr:    addr,
		user:    t.user(),
		conn:    conn,
		bastion: bastion,
		logger:  logger,
		stop:    make(chan struct{}),
	}
	if every := cfg.keepaliveInterval(); every > 0 {
		c.wg.Add(1)
		go c.keepalive(every)
	}
	return c, nil
}

// keepaliveInterval resolves Keepalive: on by default for every client.
func (cfg Config) keepaliveInterval() time.Duration {
	switch {
	case cfg.Keepalive == 0:
		return DefaultKeepalive
	case cfg.Keepalive < 0:
		return 0
	}
	return cfg.Keepalive
}

// clientConfig builds the verified config for one target.
func clientConfig(t Target, signers []ssh.Signer) (*ssh.ClientConfig, error) {
	addr := t.addr()
	if strings.TrimSpace(t.HostKey) == "" {
		return nil, fmt.Errorf("ssh %s (%s): %w: provision never connects to a machine it cannot verify", t.Name, addr, ErrNoHostKey)
	}
	pinned, err := parsePublicKey(t.HostKey)
	if err != nil {
		return nil, fmt.Errorf("ssh %s (%s): pinned host key: %w", t.Name, addr, err)
	}
	accepted := []ssh.PublicKey{pinned}
	if strings.TrimSpace(t.NextHostKey) != "" {
		next, err := parsePublicKey(t.NextHostKey)
		if err != nil {
			return nil, fmt.Errorf("ssh %s (%s): next host key: %w", t.Name, addr, err)
		}
		accepted = append(accepted, next)
	}
	for _, f := range t.FormerHostKeys {
		former, err := parsePublicKey(f)
		if err != nil {
			return nil, fmt.Errorf("ssh %s (%s): former host key: %w", t.Name, addr, err)
		}
		accepted = append(accepted, former)
	}
	cfg := &ssh.ClientConfig{
		User: t.user(),
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			for _, k := range accepted {
				if bytes.Equal(key.Marshal(), k.Marshal()) {
					return nil
				}
			}
			return t.hostKeyError(ssh.FingerprintSHA256(key))
		},
		// Ask only for the accepted keys' types: a server with several host
		// keys must present one we pinned, not another valid one.
		HostKeyAlgorithms: hostKeyAlgorithms(accepted...),
	}
	if len(signers) > 0 {
		cfg.Auth = append(cfg.Auth, ssh.PublicKeys(signers...))
	}
	return cfg, nil
}

// hostKeyAlgorithms are the algorithms that can verify keys, in order,
// without repeats.
func hostKeyAlgorithms(keys ...ssh.PublicKey) []string {
	var out []string
	for _, k := range keys {
		algos := []string{k.Type()}
		if k.Type() == ssh.KeyAlgoRSA {
			algos = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
		}
		for _, a := range algos {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

// hostKeyError is the refusal of an offered key ("" when the server
// offered none of the accepted types).
func (t Target) hostKeyError(offered string) *HostKeyError {
	e := &HostKeyError{Machine: t.Name, Address: t.addr(), Offered: offered}
	e.Pinned, _ = Fingerprint(t.HostKey)
	if strings.TrimSpace(t.NextHostKey) != "" {
		e.Next, _ = Fingerprint(t.NextHostKey)
	}
	return e
}

func dialAgent(ctx context.Context) (agent.ExtendedAgent, func(), error) {
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil, nil, fmt.Errorf("%w: agent auth requested but SSH_AUTH_SOCK is not set", ErrNoAuth)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to ssh-agent: %w", err)
	}
	return agent.NewClient(conn), func() { conn.Close() }, nil
}

func dialDirect(ctx context.Context, t Target, cfg *ssh.ClientConfig) (*ssh.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", t.addr())
	if err != nil {
		return nil, err
	}
	return handshake(ctx, nc, t, cfg)
}

func dialVia(ctx context.Context, bastion *ssh.Client, t Target, cfg *ssh.ClientConfig) (*ssh.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	nc, err := bastion.DialContext(ctx, "tcp", t.addr())
	if err != nil {
		return nil, fmt.Errorf("via bastion: %w", err)
	}
	return handshake(ctx, nc, t, cfg)
}

// handshake runs the SSH handshake on nc, bounded by ctx. Closing nc is the
// only way to interrupt it (a channel through a bastion has no deadlines).
func handshake(ctx context.Context, nc net.Conn, t Target, cfg *ssh.ClientConfig) (*ssh.Client, error) {
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	c, chans, reqs, err := ssh.NewClientConn(nc, t.addr(), cfg)
	interrupted := !stop()
	if err != nil {
		nc.Close()
		var hk *HostKeyError
		if errors.As(err, &hk) {
			return nil, hk
		}
		var ane *ssh.AlgorithmNegotiationError
		if errors.As(err, &ane) && ane.What == "host key" {
			return nil, t.hostKeyError("")
		}
		if interrupted {
			return nil, fmt.Errorf("ssh handshake: %w", ctx.Err())
		}
		return nil, err
	}
	if interrupted {
		c.Close()
		return nil, fmt.Errorf("ssh handshake: %w", ctx.Err())
	}
	return ssh.NewClient(c, chans, reqs), nil
}

// keepalive pings the server and closes the connection when it stops
// answering, so a Run on a dead machine fails instead of hanging.
func (c *Client) keepalive(interval time.Duration) {
	defer c.wg.Done()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
		// A dead peer can leave SendRequest blocked until TCP gives up;
		// closing the connection is what unblocks it.
		timer := time.AfterFunc(keepaliveMisses*interval, func() {
			c.logger.Warn("ssh keepalive unanswered, closing connection", "machine", c.name, "addr", c.addr)
			c.conn.Close()
		})
		_, _, err := c.conn.SendRequest("keepalive@openssh.com", true, nil)
		timer.Stop()
		if err != nil {
			return // the connection is closed, by us or by the peer
		}
	}
}

// Close closes the connection (and the bastion's) and waits for the
// keepalive goroutine.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.stop)
		if cerr := c.conn.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = cerr
		}
		c.wg.Wait()
		if c.bastion != nil {
			c.bastion.Close()
		}
	})
	return err
}

// Run runs cmd on the machine (through `sudo -n sh -c` when the login user is
// not root), with stdin as its standard input. Secrets belong in stdin: it is
// never logged. stdout the caller captures is data and is not logged either
// (it may be a secret, like a join token); when stdout is nil, its lines and
// stderr's are logged at Debug. A non-zero exit returns an *ExitError with
// the tail of stderr. A connection that broke under the command (or before
// it) returns an error wrapping cluster.ErrConnectionLost: the command may
// or may not have run, and this Client runs nothing more; dial again. No
// PTY is requested. Cancelling ctx ends the session.
func (c *Client) Run(ctx context.Context, cmd string, stdin io.Reader, stdout io.Writer) error {
	short := shorten(cmd, 80)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: run %q: %w", c.name, short, err)
	}
	sess, err := c.conn.NewSession()
	if err != nil {
		return fmt.Errorf("%s: run %q: open session: %w", c.name, short, c.broken(err))
	}
	defer sess.Close()

	tail := &tailLines{max: stderrTailLines}
	stderr := &lineWriter{emit: func(line string) {
		c.logger.Debug("stderr", "machine", c.name, "line", line)
		tail.add(line)
	}}
	sess.Stderr = stderr
	var stdoutLog *lineWriter
	if stdout != nil {
		sess.Stdout = stdout
	} else {
		stdoutLog = &lineWriter{emit: func(line string) {
			c.logger.Debug("stdout", "machine", c.name, "line", line)
		}}
		sess.Stdout = stdoutLog
	}
	sess.Stdin = stdin

	start := time.Now()
	c.logger.Debug("run", "machine", c.name, "cmd", short)
	if err := sess.Start(c.wrap(cmd)); err != nil {
		return fmt.Errorf("%s: run %q: %w", c.name, short, c.broken(err))
	}
	stop := context.AfterFunc(ctx, func() {
		sess.Signal(ssh.SIGTERM)
		sess.Close()
	})
	err = sess.Wait()
	stop()
	stderr.flush()
	if stdoutLog != nil {
		stdoutLog.flush()
	}
	c.logger.Debug("ran", "machine", c.name, "cmd", short, "duration", time.Since(start).Round(time.Millisecond), "err", err)
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%s: run %q: %w", c.name, short, ctxErr)
	}
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("%s: %w", c.name, &ExitError{Cmd: short, Status: ee.ExitStatus(), Stderr: tail.String()})
	}
	// No exit status: the session ended under the command.
	return fmt.Errorf("%s: run %q: %w", c.name, short, c.broken(err))
}

// broken tells why a session or channel failed: when the connection under
// it is gone, err wrapped with cluster.ErrConnectionLost, so the caller
// connects again and reruns its step (the command may or may not have run);
// otherwise err as it is. The ssh package reports a dead connection with
// plain io errors (EOF, a channel closed without an exit status) that a live
// one can give too, so the connection itself is asked, with a keepalive
// request; one that does not answer within probeTimeout is closed as dead.
func (c *Client) broken(err error) error {
	var oce *ssh.OpenChannelError
	if errors.As(err, &oce) {
		return err // the server answered: it refused the channel
	}
	answered := make(chan error, 1)
	go func() {
		_, _, err := c.conn.SendRequest("keepalive@openssh.com", true, nil)
		answered <- err
	}()
	t := time.NewTimer(probeTimeout)
	defer t.Stop()
	select {
	case perr := <-answered:
		if perr == nil {
			return err
		}
	case <-t.C:
		c.logger.Warn("ssh connection does not answer after a failed session, closing it", "machine", c.name, "addr", c.addr)
		c.conn.Close() // unblocks the request
	}
	return fmt.Errorf("%w: %w", cluster.ErrConnectionLost, err)
}

// Upload writes data to path with mode, atomically (temp file, then rename).
// The content goes over stdin, never into a command line.
func (c *Client) Upload(ctx context.Context, p string, data []byte, mode os.FileMode) error {
	tmp := p + ".provision-tmp"
	script := fmt.Sprintf("umask 077 && mkdir -p %s && cat > %s && chmod %04o %s && mv -f %s %s",
		shellQuote(path.Dir(p)), shellQuote(tmp), mode.Perm(), shellQuote(tmp), shellQuote(tmp), shellQuote(p))
	if err := c.Run(ctx, script, bytes.NewReader(data), io.Discard); err != nil {
		return fmt.Errorf("upload %s: %w", p, err)
	}
	return nil
}

// wrap runs cmd as root: through sudo without a password prompt (-n fails
// fast instead of hanging) when the login user is not root.
func (c *Client) wrap(cmd string) string {
	if c.user == "root" {
		return cmd
	}
	return "sudo -n sh -c " + shellQuote(cmd)
}

// shellQuote quotes s as one POSIX shell word.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// lineWriter calls emit once per line written to it.
type lineWriter struct {
	buf  []byte
	emit func(line string)
}

// maxLine bounds the buffer for output that never ends a line.
const maxLine = 64 << 10

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(strings.TrimRight(string(w.buf[:i]), "\r"))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > maxLine {
		w.flush()
	}
	return len(p), nil
}

func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.emit(string(w.buf))
		w.buf = nil
	}
}

// tailLines keeps the last max lines.
type tailLines struct {
	max   int
	lines []string
}

func (t *tailLines) add(line string) {
	t.lines = append(t.lines, line)
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
}

func (t *tailLines) String() string { return strings.Join(t.lines, "\n") }
