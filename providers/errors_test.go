package providers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestConnectionLost: a reset or a close before the answer is a lost
// connection however the HTTP client wraps it; a refused dial, an ended
// context and an HTTP error are not.
func TestConnectionLost(t *testing.T) {
	t.Parallel()
	drop := func(linger bool) string {
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			if linger {
				_ = conn.(*net.TCPConn).SetLinger(0) // RST
			}
			_ = conn.Close()
		}))
		t.Cleanup(hs.Close)
		return hs.URL
	}
	send := func(ctx context.Context, url string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader("x=1"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	refused, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedURL := "http://" + refused.Addr().String()
	refused.Close()
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"reset", send(t.Context(), drop(true)), true},
		{"closed before the answer", send(t.Context(), drop(false)), true},
		{"wrapped", fmt.Errorf("list: %w", send(t.Context(), drop(true))), true},
		{"refused", send(t.Context(), refusedURL), false},
		{"canceled", send(canceled, drop(true)), false},
		{"nil", nil, false},
		{"other", errors.New("500 Internal Server Error"), false},
	} {
		if got := ConnectionLost(tt.err); got != tt.want {
			t.Errorf("%s: ConnectionLost(%v) = %t, want %t", tt.name, tt.err, got, tt.want)
		}
	}
}
