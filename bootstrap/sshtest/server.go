package sshtest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"

	gliderssh "github.com/gliderlabs/ssh"
	"golang.org/x/crypto/ssh"
)

// Options configure a Server.
type Options struct {
	// Addr to listen on; "127.0.0.1:0" when empty.
	Addr string
	// HostKey is the server's host key; required.
	HostKey ssh.Signer
	// AuthorizedKeys may log in (any user); every key is refused when empty.
	AuthorizedKeys []ssh.PublicKey
	// Script answers commands; an empty script when nil.
	Script *Script
	// Forwarding allows direct-tcpip channels, so the server can be a bastion.
	Forwarding bool
	// Dial, when set with Forwarding, is how the bastion reaches a
	// forwarded address (a test puts a fault proxy on the way to each
	// machine); a plain TCP dial when nil.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// UnixForwarding allows direct-streamlocal@openssh.com channels (what
	// `ssh -L port:/path.sock` opens), so a client can reach a unix socket
	// on the server's side, like a manager's /var/run/docker.sock.
	UnixForwarding bool
}

// Server is an in-process SSH server. It is closed by t.Cleanup.
type Server struct {
	Addr   string // host:port it listens on
	Script *Script

	srv   *gliderssh.Server
	done  chan struct{}
	mu    sync.Mutex
	hops  int
	conns int
}

// Start starts a server and registers its shutdown with t.Cleanup.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := Listen(opts)
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Listen starts a server; the caller must Close it. Unlike Start it may be
// called off the test goroutine (to start a server late).
func Listen(opts Options) (*Server, error) {
	if opts.HostKey == nil {
		return nil, errors.New("Options.HostKey is required")
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Script == nil {
		opts.Script = &Script{}
	}
	l, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: l.Addr().String(), Script: opts.Script, done: make(chan struct{})}
	s.srv = &gliderssh.Server{
		Handler: s.handle,
		PublicKeyHandler: func(_ gliderssh.Context, key gliderssh.PublicKey) bool {
			for _, k := range opts.AuthorizedKeys {
				if bytes.Equal(k.Marshal(), key.Marshal()) {
					return true
				}
			}
			return false
		},
		ConnCallback: func(_ gliderssh.Context, c net.Conn) net.Conn {
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
			return c
		},
		ChannelHandlers: map[string]gliderssh.ChannelHandler{
			"session": gliderssh.DefaultSessionHandler,
		},
	}
	if opts.Forwarding && opts.Dial != nil {
		s.srv.ChannelHandlers["direct-tcpip"] = s.directTCPIP(opts.Dial)
	} else if opts.Forwarding {
		s.srv.ChannelHandlers["direct-tcpip"] = gliderssh.DirectTCPIPHandler
		s.srv.LocalPortForwardingCallback = func(gliderssh.Context, string, uint32) bool {
			s.mu.Lock()
			s.hops++
			s.mu.Unlock()
			return true
		}
	}
	if opts.UnixForwarding {
		// gliderlabs/ssh has no handler for this channel type.
		s.srv.ChannelHandlers["direct-streamlocal@openssh.com"] = directStreamLocal
	}
	s.srv.AddHostKey(opts.HostKey)
	go func() {
		defer close(s.done)
		s.srv.Serve(l)
	}()
	return s, nil
}

// Close stops the server, drops its connections and waits for it.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	return err
}

// SetHostKey makes the server offer k to new connections instead of its
// key of k's type (another type is offered beside it), as sshd does after a
// reload with a new key file; connections already open keep theirs.
func (s *Server) SetHostKey(k ssh.Signer) { s.srv.AddHostKey(k) }

// Conns is how many TCP connections the server accepted.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// Hops is how many direct-tcpip forwards the server allowed.
func (s *Server) Hops() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hops
}

// directTCPIP connects a direct-tcpip channel to the address it names
// (RFC 4254, section 7.2) through dial.
func (s *Server) directTCPIP(dial func(ctx context.Context, addr string) (net.Conn, error)) gliderssh.ChannelHandler {
	return func(_ *gliderssh.Server, _ *ssh.ServerConn, newChan ssh.NewChannel, ctx gliderssh.Context) {
		var req struct {
			DestAddr   string
			DestPort   uint32
			OriginAddr string
			OriginPort uint32
		}
		if err := ssh.Unmarshal(newChan.ExtraData(), &req); err != nil {
			newChan.Reject(ssh.ConnectionFailed, "parse direct-tcpip request: "+err.Error())
			return
		}
		dconn, err := dial(ctx, net.JoinHostPort(req.DestAddr, strconv.Itoa(int(req.DestPort))))
		if err != nil {
			newChan.Reject(ssh.ConnectionFailed, err.Error())
			return
		}
		s.mu.Lock()
		s.hops++
		s.mu.Unlock()
		pipeChannel(newChan, dconn)
	}
}

// directStreamLocal connects a direct-streamlocal@openssh.com channel to the
// unix socket it names (OpenSSH PROTOCOL, section 2.4).
func directStreamLocal(_ *gliderssh.Server, _ *ssh.ServerConn, newChan ssh.NewChannel, ctx gliderssh.Context) {
	var req struct {
		SocketPath string
		Reserved0  string
		Reserved1  uint32
	}
	if err := ssh.Unmarshal(newChan.ExtraData(), &req); err != nil {
		newChan.Reject(ssh.ConnectionFailed, "parse streamlocal request: "+err.Error())
		return
	}
	var d net.Dialer
	dconn, err := d.DialContext(ctx, "unix", req.SocketPath)
	if err != nil {
		newChan.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	pipeChannel(newChan, dconn)
}

// pipeChannel accepts newChan and copies between it and dconn both ways;
// either end closing closes both.
func pipeChannel(newChan ssh.NewChannel, dconn net.Conn) {
	ch, reqs, err := newChan.Accept()
	if err != nil {
		dconn.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	go func() {
		defer ch.Close()
		defer dconn.Close()
		io.Copy(ch, dconn)
	}()
	go func() {
		defer ch.Close()
		defer dconn.Close()
		io.Copy(dconn, ch)
	}()
}

func (s *Server) handle(sess gliderssh.Session) {
	if _, _, isPty := sess.Pty(); isPty {
		io.WriteString(sess.Stderr(), "sshtest: unexpected pty request\n")
		sess.Exit(1)
		return
	}
	stdin, err := io.ReadAll(sess)
	if err != nil && !errors.Is(err, io.EOF) {
		sess.Exit(255)
		return
	}
	reply := s.Script.Handle(Call{User: sess.User(), Cmd: sess.RawCommand(), Stdin: stdin})
	if err := wait(sess.Context(), reply.Delay); err != nil {
		return
	}
	io.WriteString(sess, reply.Stdout)
	io.WriteString(sess.Stderr(), reply.Stderr)
	sess.Exit(reply.Exit)
}
