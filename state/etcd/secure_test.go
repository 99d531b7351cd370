package etcd_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/provisionhq/provision/state"
	"github.com/provisionhq/provision/state/etcd"
	"github.com/provisionhq/provision/state/etcd/etcdtest"
	"github.com/provisionhq/provision/state/etcd/transport"
)

// TestTLSRefuses: the TLS etcd, which requires client certificates,
// refuses a client that has none, does not trust it, or speaks plaintext;
// New says why within its dial timeout.
func TestTLSRefuses(t *testing.T) {
	t.Parallel()
	srv := etcdtest.StartTLS(t)
	ep := srv.Endpoints[0]
	unknownCA := srv.TLS.Config()
	unknownCA.RootCAs = x509.NewCertPool()
	tests := []struct {
		name     string
		endpoint string
		tls      *tls.Config
		user     string // logging in does not hide why the connection failed
		want     string
	}{
		{"client without certificate", ep, &tls.Config{RootCAs: srv.TLS.Roots}, "", "if etcd requires client certificates, give one: state.tls.cert and state.tls.key"},
		{"client without certificate, with a user", ep, &tls.Config{RootCAs: srv.TLS.Roots}, "root", "if etcd requires client certificates"},
		{"server's CA not trusted", ep, unknownCA, "", "certificate"},
		{"plaintext client", strings.Replace(ep, "https://", "http://", 1), nil, "", "if etcd serves TLS, use https:// and state.tls"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			cfg := etcd.Config{Endpoints: []string{tt.endpoint}, TLS: tt.tls, Cluster: cluster, DialTimeout: time.Second}
			if tt.user != "" {
				cfg.Username, cfg.Password = tt.user, etcd.NewPassword("pw")
			}
			b, err := etcd.New(t.Context(), cfg)
			if err == nil {
				b.Close()
				t.Fatal("New succeeded")
			}
			t.Logf("refused in %v: %v", time.Since(start).Round(time.Millisecond), err)
			if !strings.Contains(err.Error(), tt.endpoint) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name the endpoint and say %q", err, tt.want)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error %v is not DeadlineExceeded", err)
			}
		})
	}
}

// TestNewRefusesInsecure: what New refuses before it dials anything.
func TestNewRefusesInsecure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  etcd.Config
		is   error
		want string
	}{
		{"plaintext to another host", etcd.Config{Endpoints: []string{"http://10.0.0.5:2379"}},
			transport.ErrPlaintext, "http://10.0.0.5:2379 is plaintext and not on this machine"},
		{"plaintext to another host, bare", etcd.Config{Endpoints: []string{"etcd.example.com:2379"}},
			transport.ErrPlaintext, "add state.tls"},
		{"one plaintext endpoint of several", etcd.Config{Endpoints: []string{"http://127.0.0.1:2379", "http://etcd-2.example.com:2379"}},
			transport.ErrPlaintext, "set state.insecure: true"},
		{"http with TLS configured", etcd.Config{Endpoints: []string{"http://127.0.0.1:2379"}, TLS: &tls.Config{}},
			transport.ErrEndpoint, "write https://127.0.0.1:2379"},
		{"http next to https", etcd.Config{Endpoints: []string{"https://127.0.0.1:2379", "http://127.0.0.1:2380"}},
			transport.ErrEndpoint, "write https://127.0.0.1:2380"},
		{"user without password", etcd.Config{Endpoints: []string{"http://127.0.0.1:2379"}, Username: "root"},
			nil, etcd.EnvPassword},
		{"password without user", etcd.Config{Endpoints: []string{"http://127.0.0.1:2379"}, Password: etcd.NewPassword("pw-without-user")},
			nil, "a password without a user name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.cfg.Cluster = cluster
			start := time.Now()
			b, err := etcd.New(t.Context(), tt.cfg)
			if err == nil {
				b.Close()
				t.Fatal("New succeeded")
			}
			if (tt.is != nil && !errors.Is(err, tt.is)) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q: want %v saying %q", err, tt.is, tt.want)
			}
			if strings.Contains(err.Error(), "pw-without-user") {
				t.Errorf("error %q shows the password", err)
			}
			if d := time.Since(start); d > 100*time.Millisecond {
				t.Errorf("New took %v to refuse: it should not dial", d)
			}
		})
	}
}

// TestAuth: an etcd with authentication enabled admits a backend, its
// lock and its elections, as a user whose role may only use the
// provision prefix; it refuses a wrong password, no user, and keys
// outside the role, and no error or log line shows a password.
func TestAuth(t *testing.T) {
	t.Parallel()
	const (
		user  = "provision"
		good  = "correct-horse-battery-staple"
		wrong = "Tr0ub4dor&3-wrong"
	)
	srv := etcdtest.StartPrivate(t, true)
	etcdtest.EnableAuth(t, srv, user, good, etcd.DefaultPrefix+"/")

	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() { // after the parallel cases
		if out := logs.String(); strings.Contains(out, good) || strings.Contains(out, wrong) {
			t.Errorf("a password reached the log:\n%s", out)
		}
	})
	config := func(username, password, prefix string) etcd.Config {
		cfg := etcd.Config{
			Endpoints: srv.Endpoints, TLS: srv.TLS.Config(), Cluster: cluster, Prefix: prefix,
			Username: username, LockTTL: testTTL, DialTimeout: 2 * time.Second, Logger: log,
		}
		if password != "" {
			cfg.Password = etcd.NewPassword(password)
		}
		return cfg
	}

	t.Run("right password", func(t *testing.T) {
		t.Parallel()
		// A user with the right password sees no warning: etcd refusing
		// the anonymous connection check is expected, not news.
		var own syncBuffer
		cfg := config(user, good, "")
		cfg.Logger = slog.New(slog.NewTextHandler(&own, nil))
		b, err := etcd.New(t.Context(), cfg)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		defer b.Close()
		defer func() {
			if out := own.String(); strings.Contains(out, "level=WARN") || strings.Contains(out, "level=ERROR") {
				t.Errorf("a successful session logged:\n%s", out)
			}
		}()
		ctx := t.Context()
		id, err := b.Lock(ctx, state.NewLockInfo("up"))
		if err != nil {
			t.Fatalf("Lock: %v", err)
		}
		s, err := b.Read(ctx)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		if err := b.Write(ctx, s); err != nil {
			t.Fatalf("Write: %v", err)
		}
		if err := b.Unlock(ctx, id); err != nil {
			t.Fatalf("Unlock: %v", err)
		}
		el := etcd.NewElector(b, testTTL)
		_, resign, err := el.Campaign(ctx, "me")
		if err != nil {
			t.Fatalf("Campaign: %v", err)
		}
		if ok, err := el.IsLeader(ctx); !ok || err != nil {
			t.Errorf("IsLeader = %v, %v", ok, err)
		}
		resign()
		if err := b.Destroy(ctx); err != nil {
			t.Fatalf("Destroy: %v", err)
		}
	})
	refused := []struct {
		name                    string
		username, password, pfx string
		is                      error
		want                    string
	}{
		{"wrong password", user, wrong, "", rpctypes.ErrAuthFailed, `as user "provision"`},
		{"no user", "", "", "", rpctypes.ErrPermissionDenied, "set state.username"},
		{"prefix outside the role", user, good, "/elsewhere", rpctypes.ErrPermissionDenied, "permission denied"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := etcd.New(t.Context(), config(tt.username, tt.password, tt.pfx))
			if err == nil {
				b.Close()
				t.Fatal("New succeeded")
			}
			t.Logf("refused: %v", err)
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q: want %v saying %q", err, tt.is, tt.want)
			}
			if strings.Contains(err.Error(), good) || strings.Contains(err.Error(), wrong) {
				t.Errorf("error %q shows a password", err)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer for loggers on several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestPasswordNeverPrinted: a Config, and the password in it, print and
// log without the password; the password marshals to JSON without it.
func TestPasswordNeverPrinted(t *testing.T) {
	t.Parallel()
	const secret = "hunter2-secret"
	cfg := etcd.Config{Endpoints: []string{"https://etcd:2379"}, Username: "root", Password: etcd.NewPassword(secret)}
	var out bytes.Buffer
	fmt.Fprintf(&out, "%v %+v %#v %s %v %#v\n", cfg, cfg, cfg, cfg.Password, cfg.Password, cfg.Password)
	slog.New(slog.NewTextHandler(&out, nil)).Info("text", "cfg", cfg, "pw", cfg.Password)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("json", "cfg", cfg, "pw", cfg.Password)
	data, err := json.Marshal(struct {
		Username string
		Password etcd.Password
	}{cfg.Username, cfg.Password})
	if err != nil {
		t.Fatal(err)
	}
	out.Write(data)
	if strings.Contains(out.String(), secret) {
		t.Errorf("the password reached output:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "[redacted]") {
		t.Errorf("no [redacted] in:\n%s", out.String())
	}
}

// TestReadPassword: the environment first, then the file without its
// line ending; never an empty password from an empty file.
func TestReadPassword(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, env, file string
		want            etcd.Password
		err             bool
	}{
		{name: "nothing"},
		{name: "file", file: file("pw", "from-file\n"), want: etcd.NewPassword("from-file")},
		{name: "file with CRLF", file: file("crlf", "from-file\r\n"), want: etcd.NewPassword("from-file")},
		{name: "environment over file", env: "from-env", file: file("pw2", "from-file\n"), want: etcd.NewPassword("from-env")},
		{name: "empty file", file: file("empty", "\n"), err: true},
		{name: "missing file", file: filepath.Join(dir, "missing"), err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(etcd.EnvPassword, tt.env)
			got, err := etcd.ReadPassword(tt.file)
			if (err != nil) != tt.err || got != tt.want {
				t.Errorf("ReadPassword(%q) = %v (same as want: %v), %v; want error %v", tt.file, got, got == tt.want, err, tt.err)
			}
		})
	}
}
