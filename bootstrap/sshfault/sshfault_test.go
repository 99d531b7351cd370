package sshfault_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/provisionhq/provision/bootstrap/sshfault"
)

// echo serves one line-echo per connection until the client closes.
func echo(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().String()
}

func roundTrip(c net.Conn, r *bufio.Reader, line string) (string, error) {
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	got, err := r.ReadString('\n')
	return got, err
}

func TestProxyForwardsAndDrops(t *testing.T) {
	t.Parallel()
	p := sshfault.Start(t, echo(t), sshfault.Options{})
	var conns []net.Conn
	var readers []*bufio.Reader
	for range 2 {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := bufio.NewReader(c)
		if got, err := roundTrip(c, r, "hello"); err != nil || got != "hello\n" {
			t.Fatalf("through the proxy: %q, %v", got, err)
		}
		conns, readers = append(conns, c), append(readers, r)
	}
	if n := p.Drop(); n != 2 {
		t.Fatalf("Drop cut %d connections, want 2", n)
	}
	for i, c := range conns {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err := roundTrip(c, readers[i], "again")
		if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
			t.Fatalf("connection %d after Drop: %v, want reset by peer", i, err)
		}
	}
	// A dropped client dials again and goes on, as after a real outage.
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := roundTrip(c, bufio.NewReader(c), "back"); err != nil || got != "back\n" {
		t.Fatalf("after Drop: %q, %v", got, err)
	}
	if acc, dropped := p.Stats(); acc != 3 || dropped != 2 {
		t.Fatalf("stats: %d accepted, %d dropped; want 3 and 2", acc, dropped)
	}
}

func TestProxyLatency(t *testing.T) {
	t.Parallel()
	const latency = 50 * time.Millisecond
	p := sshfault.Start(t, echo(t), sshfault.Options{Latency: latency})
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	start := time.Now()
	for range 3 {
		if got, err := roundTrip(c, r, "ping"); err != nil || got != "ping\n" {
			t.Fatalf("round trip: %q, %v", got, err)
		}
	}
	// Each round trip crosses the proxy twice.
	if took := time.Since(start); took < 6*latency {
		t.Fatalf("3 round trips took %v, want at least %v", took, 6*latency)
	}
}

func TestProxyCleanCloseStaysClean(t *testing.T) {
	t.Parallel()
	p := sshfault.Start(t, echo(t), sshfault.Options{})
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "last words"); err != nil {
		t.Fatal(err)
	}
	// A half close reaches the server, which answers and closes: the
	// client reads everything and then a clean end of file.
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "last words" {
		t.Fatalf("after a half close: %q, %v", got, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.Live() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := p.Live(); n != 0 {
		t.Fatalf("%d connections still live after both sides closed", n)
	}
}

func TestDropNextCutsTheNextRequest(t *testing.T) {
	t.Parallel()
	p := sshfault.Start(t, echo(t), sshfault.Options{})
	var conns []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got, err := roundTrip(c, bufio.NewReader(c), "hello"); err != nil || got != "hello\n" {
			t.Fatalf("through the proxy: %q, %v", got, err)
		}
		conns = append(conns, c)
	}
	dropped := p.DropNext()
	select {
	case cut := <-dropped:
		t.Fatalf("DropNext fired (%+v) before anyone sent anything", cut)
	case <-time.After(50 * time.Millisecond):
	}
	sent := time.Now()
	_ = conns[0].SetDeadline(time.Now().Add(5 * time.Second))
	got, err := roundTrip(conns[0], bufio.NewReader(conns[0]), "request")
	if err == nil {
		t.Fatalf("the request went through (%q); want it cut", got)
	}
	select {
	case cut := <-dropped:
		if cut.Conns != 2 || cut.At.Before(sent) {
			t.Fatalf("DropNext cut %d connections at %v, want both, after the request at %v", cut.Conns, cut.At, sent)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("DropNext never fired")
	}
	// Once: the next request goes through.
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := roundTrip(c, bufio.NewReader(c), "after"); err != nil || got != "after\n" {
		t.Fatalf("after the armed drop: %q, %v", got, err)
	}
}

func TestDropNextConnWaitsForANewConnection(t *testing.T) {
	t.Parallel()
	p := sshfault.Start(t, echo(t), sshfault.Options{})
	old, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	oldR := bufio.NewReader(old)
	if _, err := roundTrip(old, oldR, "hello"); err != nil {
		t.Fatal(err)
	}
	dropped := p.DropNextConn()
	// Traffic on a connection that has spoken before does not fire it.
	if got, err := roundTrip(old, oldR, "still here"); err != nil || got != "still here\n" {
		t.Fatalf("an old connection after DropNextConn: %q, %v", got, err)
	}
	fresh, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	_ = fresh.SetDeadline(time.Now().Add(5 * time.Second))
	if got, err := roundTrip(fresh, bufio.NewReader(fresh), "banner"); err == nil {
		t.Fatalf("a new connection's first bytes went through (%q); want them cut", got)
	}
	select {
	case cut := <-dropped:
		if cut.Conns != 2 {
			t.Fatalf("DropNextConn cut %d connections, want the old one and the new", cut.Conns)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("DropNextConn never fired")
	}
}
