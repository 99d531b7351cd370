package bootstrap_test

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/provisionhq/provision/bootstrap"
	"github.com/provisionhq/provision/bootstrap/sshtest"
)

// blackhole forwards TCP to addr until frozen, then silently drops
// everything, like a machine that vanished without closing its sockets.
type blackhole struct {
	l      net.Listener
	frozen atomic.Bool
	wg     sync.WaitGroup
}

func newBlackhole(t *testing.T, addr string) *blackhole {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{l: l}
	var conns []net.Conn
	var mu sync.Mutex
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, up)
			mu.Unlock()
			b.wg.Add(2)
			go b.pipe(c, up)
			go b.pipe(up, c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *blackhole) pipe(dst, src net.Conn) {
	defer b.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !b.frozen.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func TestKeepaliveClosesDeadConnection(t *testing.T) {
	t.Parallel()
	hostKey, user := newKey(t), newKey(t)
	srv := sshtest.Start(t, sshtest.Options{HostKey: hostKey.signer, AuthorizedKeys: []ssh.PublicKey{user.signer.PublicKey()},
		Script: (&sshtest.Script{}).On("true")})
	hole := newBlackhole(t, srv.Addr)

	c, err := bootstrap.Dial(timeout(t, 10*time.Second), target(t, "vanishing-1", hole.l.Addr().String(), hostKey.public, "root"),
		bootstrap.Config{Signers: []ssh.Signer{user.signer}, Keepalive: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Run(t.Context(), "true", nil, nil); err != nil {
		t.Fatal(err)
	}

	hole.frozen.Store(true)
	// Without keepalives this Run would hang until TCP gave up; with them
	// the connection is closed after 3 unanswered intervals and Run fails.
	start := time.Now()
	err = c.Run(timeout(t, 10*time.Second), "true", nil, nil)
	if err == nil {
		t.Fatal("Run on a vanished machine succeeded")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Run failed after %s, want the keepalive to cut it short", d)
	}
	if err := c.Close(); err != nil {
		t.Logf("Close: %v", err)
	}
}
