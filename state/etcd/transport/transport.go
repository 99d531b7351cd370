// Package transport owns how provision may reach etcd: which endpoints may
// be spoken to in plaintext, and the TLS client configuration read from PEM
// files. The plan loader applies these rules when it reads state.endpoints
// and state.tls, and the etcd backend applies them again when it connects,
// so endpoints that come from the environment meet the same rules.
//
// The rules: an endpoint is TLS (https://, unixs://, or any endpoint once
// TLS is configured) or plaintext (http://, unix://, a bare host:port
// without TLS). Plaintext is allowed to this machine only (127.0.0.0/8,
// ::1, localhost, a unix socket) unless the user says the network is
// trusted (insecure). One connection uses one mode for all its endpoints,
// so plaintext and TLS endpoints cannot be mixed.
package transport

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
)

var (
	// ErrPlaintext: a plaintext endpoint that is not on this machine, and
	// plaintext was not allowed.
	ErrPlaintext = errors.New("plaintext etcd endpoint is not loopback")
	// ErrEndpoint: an endpoint provision cannot use as written.
	ErrEndpoint = errors.New("invalid etcd endpoint")
)

// EndpointError is an endpoint refused by Check, with what to do about it.
type EndpointError struct {
	Endpoint string
	Reason   string // what is wrong, after the endpoint: "is plaintext …"
	Fix      string // what to change
	Err      error  // ErrPlaintext or ErrEndpoint
}

func (e *EndpointError) Error() string {
	return fmt.Sprintf("etcd endpoint %s %s; %s", e.Endpoint, e.Reason, e.Fix)
}

func (e *EndpointError) Unwrap() error { return e.Err }

// UsesTLS reports whether a connection to endpoints is TLS: when TLS is
// configured, or when any endpoint asks for it (https://, unixs://).
func UsesTLS(endpoints []string, tlsConfigured bool) bool {
	if tlsConfigured {
		return true
	}
	for _, ep := range endpoints {
		if s, _, _ := split(ep); s == "https" || s == "unixs" {
			return true
		}
	}
	return false
}

// Check returns nil if endpoint may be used on a connection that is TLS
// (useTLS, see UsesTLS) or plaintext, and an *EndpointError otherwise.
// insecure allows plaintext to hosts other than this machine.
func Check(endpoint string, useTLS, insecure bool) error {
	scheme, host, err := split(endpoint)
	if err != nil {
		return &EndpointError{Endpoint: endpoint, Reason: err.Error(),
			Fix: "write a client URL such as https://etcd-1.example.com:2379", Err: ErrEndpoint}
	}
	switch scheme {
	case "https", "unixs":
		return nil
	case "http", "unix":
		if useTLS {
			return &EndpointError{Endpoint: endpoint,
				Reason: "is plaintext (" + scheme + "://) but the connection uses TLS (state.tls is set, or another endpoint is " + scheme + "s://)",
				Fix:    "write " + scheme + "s://" + strings.TrimPrefix(endpoint, scheme+"://") + ", as every endpoint of one connection is spoken to the same way",
				Err:    ErrEndpoint}
		}
	case "":
		if useTLS {
			return nil
		}
	default:
		return &EndpointError{Endpoint: endpoint, Reason: fmt.Sprintf("has an unsupported scheme %q", scheme),
			Fix: "use https:// (or http:// to this machine)", Err: ErrEndpoint}
	}
	if scheme == "unix" || insecure || Loopback(host) {
		return nil
	}
	secure := "https://" + strings.TrimPrefix(endpoint, "http://")
	return &EndpointError{Endpoint: endpoint,
		Reason: "is plaintext and not on this machine: the state, its lock and any password would cross the network unencrypted",
		Fix:    "add state.tls (ca, and cert and key if etcd checks client certificates) and use " + secure + ", or set state.insecure: true if the network to etcd is trusted",
		Err:    ErrPlaintext}
}

// split returns an endpoint's scheme ("" for a bare host:port) and host.
func split(endpoint string) (scheme, host string, err error) {
	if endpoint == "" {
		return "", "", errors.New("is empty")
	}
	if strings.HasPrefix(endpoint, "unix:") || strings.HasPrefix(endpoint, "unixs:") {
		scheme, _, _ = strings.Cut(endpoint, ":")
		return scheme, "", nil
	}
	if !strings.Contains(endpoint, "://") {
		host, _, err := net.SplitHostPort(endpoint)
		if err != nil {
			host = endpoint
		}
		if host == "" || strings.ContainsAny(host, "/ ") {
			return "", "", errors.New("is not a URL or host:port")
		}
		return "", host, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", "", errors.New("is not a URL")
	}
	if u.Hostname() == "" {
		return "", "", errors.New("has no host")
	}
	return strings.ToLower(u.Scheme), u.Hostname(), nil
}

// Loopback reports whether host is this machine: localhost, 127.0.0.0/8
// or ::1. Other names are not resolved: a name's address can change.
func Loopback(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" {
		return true
	}
	addr, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && addr.Unmap().IsLoopback()
}

// Files are the PEM files of a TLS client: the CA that signed etcd's
// certificate (empty: the system's roots), and a client certificate and
// its key (both or neither), which etcd asks for with --client-cert-auth.
type Files struct {
	CA, Cert, Key string
}

// FileError is a problem with one of the Files. Field is "ca", "cert" or
// "key": a certificate and key that do not match are reported on "key".
type FileError struct {
	Field string
	File  string
	Err   error
}

func (e *FileError) Error() string {
	if e.File == "" {
		return fmt.Sprintf("%s: %v", e.Field, e.Err)
	}
	return fmt.Sprintf("%s %s %v", e.Field, e.File, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// Load reads and checks every file and returns the TLS configuration,
// or every problem found, each a *FileError, joined.
func (f Files) Load() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	var errs []error
	fail := func(field, file string, err error) {
		errs = append(errs, &FileError{Field: field, File: file, Err: err})
	}
	if f.CA != "" {
		pool, err := loadCA(f.CA)
		if err != nil {
			fail("ca", f.CA, err)
		}
		cfg.RootCAs = pool
	}
	var certPEM, keyPEM []byte
	var certErr, keyErr error
	if f.Cert != "" {
		if certPEM, certErr = readPEM(f.Cert, "CERTIFICATE"); certErr != nil {
			fail("cert", f.Cert, certErr)
		}
	}
	if f.Key != "" {
		if keyPEM, keyErr = readPEM(f.Key, "PRIVATE KEY"); keyErr != nil {
			fail("key", f.Key, keyErr)
		}
	}
	switch {
	case f.Cert == "" && f.Key == "":
	case f.Cert == "":
		fail("cert", "", errors.New("a client key needs its certificate"))
	case f.Key == "":
		fail("key", "", errors.New("a client certificate needs its key"))
	case certErr == nil && keyErr == nil:
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			fail("key", f.Key, fmt.Errorf("does not go with certificate %s: %w", f.Cert, err))
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return cfg, nil
}

// loadCA reads a PEM bundle of CA certificates.
func loadCA(file string) (*x509.CertPool, error) {
	data, err := readPEM(file, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for i := 1; ; i++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return pool, nil
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("has a certificate that does not parse (the %s): %w", ordinal(i), err)
		}
		pool.AddCert(cert)
	}
}

// readPEM reads file, which must be a regular file holding a PEM block
// whose type ends in want ("CERTIFICATE", "PRIVATE KEY").
func readPEM(file, want string) ([]byte, error) {
	// Stat first: reading a FIFO or a device would block or read something
	// that is not PEM.
	st, err := os.Stat(file)
	if err != nil {
		return nil, unreadable(err)
	}
	switch {
	case st.IsDir():
		return nil, errors.New("is a directory")
	case !st.Mode().IsRegular():
		return nil, errors.New("is not a regular file")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, unreadable(err)
	}
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("has no PEM %s", want)
		}
		if strings.HasSuffix(block.Type, want) {
			return data, nil
		}
	}
}

// reason is an error said after a file's name ("does not exist"), still
// matching what it wraps (fs.ErrNotExist).
type reason struct {
	msg string
	err error
}

func (r *reason) Error() string { return r.msg }
func (r *reason) Unwrap() error { return r.err }

// unreadable says why a file cannot be read, without the "open <file>:"
// the caller's message already has.
func unreadable(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &reason{"does not exist", err}
	case errors.Is(err, fs.ErrPermission):
		return &reason{"cannot be read: permission denied", err}
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return &reason{"cannot be read: " + err.Error(), err}
}

func ordinal(i int) string {
	switch i {
	case 1:
		return "first"
	case 2:
		return "second"
	case 3:
		return "third"
	}
	return fmt.Sprintf("%dth", i)
}

// OnThisMachine reports whether endpoint reaches etcd only from this
// machine: a loopback host or a unix socket. Another machine (a service in
// the cluster) cannot use such an endpoint.
func OnThisMachine(endpoint string) bool {
	scheme, host, err := split(endpoint)
	if err != nil {
		return false
	}
	return scheme == "unix" || scheme == "unixs" || Loopback(host)
}
