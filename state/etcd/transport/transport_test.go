package transport_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisionhq/provision/state/etcd/etcdtest"
	"github.com/provisionhq/provision/state/etcd/transport"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		endpoint        string
		useTLS, allowed bool // allowed: Insecure
		want            error
		wantText        string
	}{
		{endpoint: "http://127.0.0.1:2379"},
		{endpoint: "http://127.9.8.7:2379"},
		{endpoint: "http://[::1]:2379"},
		{endpoint: "http://localhost:2379"},
		{endpoint: "http://LocalHost.:2379"},
		{endpoint: "127.0.0.1:2379"},
		{endpoint: "unix:///run/etcd.sock"},
		{endpoint: "https://etcd.example.com:2379"},
		{endpoint: "https://etcd.example.com:2379", useTLS: true},
		{endpoint: "etcd.example.com:2379", useTLS: true},
		{endpoint: "unixs:///run/etcd.sock", useTLS: true},
		{endpoint: "http://10.0.0.5:2379", allowed: true},
		{endpoint: "http://10.0.0.5:2379", want: transport.ErrPlaintext,
			wantText: "etcd endpoint http://10.0.0.5:2379 is plaintext and not on this machine: the state, its lock and any password would cross the network unencrypted; " +
				"add state.tls (ca, and cert and key if etcd checks client certificates) and use https://10.0.0.5:2379, or set state.insecure: true if the network to etcd is trusted"},
		{endpoint: "http://etcd.example.com:2379", want: transport.ErrPlaintext},
		{endpoint: "http://localhost.example.com:2379", want: transport.ErrPlaintext},
		{endpoint: "http://[::ffff:10.0.0.1]:2379", want: transport.ErrPlaintext},
		{endpoint: "etcd.example.com:2379", want: transport.ErrPlaintext, wantText: "use https://etcd.example.com:2379"},
		{endpoint: "http://127.0.0.1:2379", useTLS: true, want: transport.ErrEndpoint, wantText: "write https://127.0.0.1:2379"},
		{endpoint: "http://10.0.0.5:2379", useTLS: true, allowed: true, want: transport.ErrEndpoint},
		{endpoint: "unix:///run/etcd.sock", useTLS: true, want: transport.ErrEndpoint, wantText: "write unixs:///run/etcd.sock"},
		{endpoint: "ftp://etcd:2379", want: transport.ErrEndpoint, wantText: `unsupported scheme "ftp"`},
		{endpoint: "http://:2379", want: transport.ErrEndpoint, wantText: "has no host"},
		{endpoint: "", want: transport.ErrEndpoint, wantText: "is empty"},
	}
	for _, tt := range tests {
		err := transport.Check(tt.endpoint, tt.useTLS, tt.allowed)
		switch {
		case tt.want == nil && err != nil:
			t.Errorf("Check(%q, tls %v, insecure %v) = %v, want nil", tt.endpoint, tt.useTLS, tt.allowed, err)
		case tt.want != nil && !errors.Is(err, tt.want):
			t.Errorf("Check(%q, tls %v, insecure %v) = %v, want %v", tt.endpoint, tt.useTLS, tt.allowed, err, tt.want)
		case tt.want != nil && !strings.Contains(err.Error(), tt.wantText):
			t.Errorf("Check(%q) = %q, want it to say %q", tt.endpoint, err, tt.wantText)
		}
		var ee *transport.EndpointError
		if tt.want != nil && (!errors.As(err, &ee) || ee.Endpoint != tt.endpoint || ee.Fix == "") {
			t.Errorf("Check(%q) = %#v, want an *EndpointError naming the endpoint and the fix", tt.endpoint, err)
		}
	}
}

func TestUsesTLS(t *testing.T) {
	t.Parallel()
	tests := []struct {
		endpoints  []string
		configured bool
		want       bool
	}{
		{[]string{"http://127.0.0.1:2379"}, false, false},
		{[]string{"http://127.0.0.1:2379"}, true, true},
		{[]string{"http://127.0.0.1:2379", "https://127.0.0.1:2380"}, false, true},
		{[]string{"unixs:///run/etcd.sock"}, false, true},
		{[]string{"127.0.0.1:2379"}, false, false},
	}
	for _, tt := range tests {
		if got := transport.UsesTLS(tt.endpoints, tt.configured); got != tt.want {
			t.Errorf("UsesTLS(%q, %v) = %v, want %v", tt.endpoints, tt.configured, got, tt.want)
		}
	}
}

// TestFilesLoad reads the PEM files of a TLS client, and names the file
// and what is wrong with it when it cannot.
func TestFilesLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good, err := etcdtest.WriteCerts(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := etcdtest.WriteCerts(filepath.Join(dir, "b"))
	if err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	cfg, err := transport.Files{CA: good.CAFile, Cert: good.CertFile, Key: good.KeyFile}.Load()
	if err != nil {
		t.Fatalf("Load of good files: %v", err)
	}
	if cfg.RootCAs == nil || len(cfg.Certificates) != 1 || cfg.MinVersion == 0 {
		t.Errorf("Load of good files: RootCAs %v, %d certificates, MinVersion %x", cfg.RootCAs, len(cfg.Certificates), cfg.MinVersion)
	}
	if cfg, err := (transport.Files{}).Load(); err != nil || cfg.RootCAs != nil || len(cfg.Certificates) != 0 {
		t.Errorf("Load of no files = %+v, %v; want the system's roots and no client certificate", cfg, err)
	}

	type problem struct{ field, text string }
	tests := []struct {
		name  string
		files transport.Files
		want  []problem
	}{
		{"ca missing", transport.Files{CA: missing}, []problem{{"ca", "ca " + missing + " does not exist"}}},
		{"ca is a directory", transport.Files{CA: dir}, []problem{{"ca", "is a directory"}}},
		{"ca is not a file", transport.Files{CA: os.DevNull}, []problem{{"ca", "is not a regular file"}}},
		{"ca is a key", transport.Files{CA: good.KeyFile}, []problem{{"ca", "has no PEM CERTIFICATE"}}},
		{"ca does not parse", transport.Files{CA: garbage}, []problem{{"ca", "has a certificate that does not parse (the first): x509: "}}},
		{"cert without key", transport.Files{Cert: good.CertFile}, []problem{{"key", "a client certificate needs its key"}}},
		{"key without cert", transport.Files{Key: good.KeyFile}, []problem{{"cert", "a client key needs its certificate"}}},
		{"cert is a key", transport.Files{Cert: good.KeyFile, Key: good.KeyFile}, []problem{{"cert", "has no PEM CERTIFICATE"}}},
		{"key is a cert", transport.Files{Cert: good.CertFile, Key: good.CertFile}, []problem{{"key", "has no PEM PRIVATE KEY"}}},
		{"key of another cert", transport.Files{Cert: good.CertFile, Key: other.KeyFile},
			[]problem{{"key", "does not go with certificate " + good.CertFile}}},
		{"every problem at once", transport.Files{CA: missing, Cert: dir, Key: missing},
			[]problem{{"ca", "does not exist"}, {"cert", "is a directory"}, {"key", "does not exist"}}},
		{"a bad cert without key", transport.Files{Cert: dir}, []problem{{"cert", "is a directory"}, {"key", "needs its key"}}},
	}
	for _, tt := range tests {
		_, err := tt.files.Load()
		if err == nil {
			t.Errorf("%s: Load succeeded", tt.name)
			continue
		}
		var got []*transport.FileError
		for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
			var fe *transport.FileError
			if !errors.As(e, &fe) {
				t.Fatalf("%s: %T is not a *FileError: %v", tt.name, e, e)
			}
			got = append(got, fe)
		}
		if len(got) != len(tt.want) {
			t.Errorf("%s: Load = %v, want %d problems", tt.name, err, len(tt.want))
			continue
		}
		if len(got) > 0 && got[0].Field == "ca" && strings.Contains(tt.name, "missing") && !errors.Is(got[0], os.ErrNotExist) {
			t.Errorf("%s: %v is not os.ErrNotExist", tt.name, got[0])
		}
		for i, w := range tt.want {
			if got[i].Field != w.field || !strings.Contains(got[i].Error(), w.text) {
				t.Errorf("%s: problem %d = %s (field %s), want field %s saying %q", tt.name, i, got[i], got[i].Field, w.field, w.text)
			}
		}
	}
}
