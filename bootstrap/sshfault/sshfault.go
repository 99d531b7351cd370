// Package sshfault is a TCP proxy for tests that breaks connections on
// command. Put it between an SSH client and a server (or a bastion) and call
// Drop to cut every connection it carries at once, both ways, as a NAT
// table flush, a restarted load balancer or a flapping link does: the client
// reads "connection reset by peer" and the server loses its session.
//
// Latency, when set, holds every chunk for that long in each direction
// (order kept, throughput not limited). A test that reacts to a step
// starting then has at least a round trip of that length to cut the
// connection before the step can finish, however short the step is.
//
// It speaks no SSH: it is a byte pipe, so it can carry any TCP protocol.
package sshfault

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Options configure a Proxy.
type Options struct {
	// Addr to listen on; "127.0.0.1:0" when empty.
	Addr string
	// Latency is added to every chunk in each direction; none when zero.
	Latency time.Duration
}

// Proxy forwards every connection it accepts to its target.
type Proxy struct {
	l       net.Listener
	target  string
	latency time.Duration

	mu       sync.Mutex
	live     map[*pair]struct{}
	accepted int
	dropped  int
	closed   bool
	armed    *arming        // DropNext's or DropNextConn's
	wg       sync.WaitGroup // accept loop and every pair
}

// pair is one proxied connection: the client's side and the target's.
type pair struct {
	client, server net.Conn
	once           sync.Once
	spoke          bool // the client has sent something (read by its pipe only)
}

// arming is a cut asked for, waiting for the client bytes that fire it.
type arming struct {
	cut     chan Cut
	newConn bool // only a connection's first bytes fire it
}

// Start starts a proxy to target and registers its Close with t.Cleanup.
func Start(t testing.TB, target string, opts Options) *Proxy {
	t.Helper()
	p, err := Listen(target, opts)
	if err != nil {
		t.Fatalf("sshfault: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// Listen starts a proxy to target; the caller must Close it.
func Listen(target string, opts Options) (*Proxy, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, err
	}
	p := &Proxy{l: l, target: target, latency: opts.Latency, live: map[*pair]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the host:port the proxy listens on: what the client dials.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return // closed
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.target, 10*time.Second)
	if err != nil {
		// Nothing listens there (yet): the client sees the connection
		// close, as it would meeting a machine whose sshd is not up.
		client.Close()
		return
	}
	pr := &pair{client: client, server: server}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		pr.close(true)
		return
	}
	p.live[pr] = struct{}{}
	p.accepted++
	p.mu.Unlock()

	var dirs sync.WaitGroup
	dirs.Add(2)
	go func() { defer dirs.Done(); p.pipe(pr, server, client, true) }()
	go func() { defer dirs.Done(); p.pipe(pr, client, server, false) }()
	dirs.Wait()
	pr.close(false)
	p.mu.Lock()
	delete(p.live, pr)
	p.mu.Unlock()
}

// chunk is bytes read from one side, due on the other at due.
type chunk struct {
	b   []byte
	due time.Time
}

// pipe copies src to dst, each chunk held back by the latency. An end of
// file is passed on as a half close, so a clean disconnect stays clean; an
// error closes the pair. Bytes from the client fire an armed DropNext
// before they go anywhere.
func (p *Proxy) pipe(pr *pair, dst, src net.Conn, fromClient bool) {
	chunks := make(chan chunk, 256)
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for c := range chunks {
			if d := time.Until(c.due); d > 0 {
				time.Sleep(d)
			}
			if _, err := dst.Write(c.b); err != nil {
				pr.close(false)
				for range chunks { // let the reader finish
				}
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && fromClient {
			first := !pr.spoke
			pr.spoke = true
			if p.fire(first) {
				n, err = 0, net.ErrClosed
			}
		}
		if n > 0 {
			chunks <- chunk{b: append([]byte(nil), buf[:n]...), due: time.Now().Add(p.latency)}
		}
		if err != nil {
			close(chunks)
			<-wrote
			if errors.Is(err, io.EOF) {
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
					return
				}
			}
			pr.close(false)
			return
		}
	}
}

// close closes both sides once; reset sends a TCP RST instead of a FIN
// (SO_LINGER 0), as a middlebox that forgot the connection does.
func (pr *pair) close(reset bool) {
	pr.once.Do(func() {
		for _, c := range []net.Conn{pr.client, pr.server} {
			if tc, ok := c.(*net.TCPConn); ok && reset {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
		}
	})
}

// Drop resets every connection the proxy carries now, both ways, and
// returns how many. New connections are accepted as before.
func (p *Proxy) Drop() int {
	p.mu.Lock()
	prs := make([]*pair, 0, len(p.live))
	for pr := range p.live {
		prs = append(prs, pr)
		delete(p.live, pr)
	}
	p.dropped += len(prs)
	p.mu.Unlock()
	for _, pr := range prs {
		pr.close(true)
	}
	return len(prs)
}

// Cut is one DropNext that happened.
type Cut struct {
	At    time.Time // just before the connections were reset
	Conns int       // how many were
}

// DropNext arms the proxy to reset every connection it carries the next
// time a client sends anything on any of them, before those bytes go on:
// the client's request is cut off whatever its timing, where a Drop from a
// test reacting to a log line may come after a short exchange is over. The
// channel gets the cut when it happens. Arming again before then replaces
// the earlier arming, whose channel gets nothing.
func (p *Proxy) DropNext() <-chan Cut { return p.arm(false) }

// DropNextConn is DropNext fired only by the first bytes a client sends on
// a connection, new or one that has said nothing yet: it cuts the next
// handshake, not the tail of an earlier exchange still on its way (through
// a bastion, say) on a connection already there.
func (p *Proxy) DropNextConn() <-chan Cut { return p.arm(true) }

func (p *Proxy) arm(newConn bool) <-chan Cut {
	a := &arming{cut: make(chan Cut, 1), newConn: newConn}
	p.mu.Lock()
	p.armed = a
	p.mu.Unlock()
	return a.cut
}

// fire runs an armed cut that bytes from a client, its first on their
// connection or not, set off; it reports whether it did.
func (p *Proxy) fire(first bool) bool {
	p.mu.Lock()
	a := p.armed
	if a == nil || (a.newConn && !first) {
		p.mu.Unlock()
		return false
	}
	p.armed = nil
	p.mu.Unlock()
	at := time.Now()
	a.cut <- Cut{At: at, Conns: p.Drop()}
	return true
}

// Live is how many connections the proxy carries now.
func (p *Proxy) Live() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.live)
}

// Stats are how many connections the proxy accepted (and connected to its
// target) and how many Drop cut.
func (p *Proxy) Stats() (accepted, dropped int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted, p.dropped
}

// Close stops accepting, drops every connection and waits for them.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	err := p.l.Close()
	p.Drop()
	p.wg.Wait()
	return err
}
