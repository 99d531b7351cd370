package etcdtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// TLS is how a client reaches a TLS test server: the CA that signed the
// server's certificate and a client certificate the server accepts, in
// memory and as PEM files (for code that takes paths, as a plan does).
type TLS struct {
	CAFile, CertFile, KeyFile string
	Roots                     *x509.CertPool
	Client                    tls.Certificate
}

// Config returns a client configuration with the CA and the client
// certificate.
func (t *TLS) Config() *tls.Config {
	return &tls.Config{RootCAs: t.Roots, Certificates: []tls.Certificate{t.Client}, MinVersion: tls.VersionTLS12}
}

// ClientCN is the common name of the test client certificate. etcd with
// authentication enabled takes a certificate's CN as the user name when a
// request carries no token, so no test should create a user of this name.
const ClientCN = "provision-etcdtest-client"

// WriteCerts writes a fresh CA, a server certificate and a client
// certificate into dir (see writeCerts), for tests of code that reads
// certificate files without an etcd.
func WriteCerts(dir string) (*TLS, error) {
	t, _, err := writeCerts(dir, nil)
	return t, err
}

// writeCerts makes a CA, a server certificate for 127.0.0.1, ::1,
// localhost and ip (when not nil), and a client certificate, writes them as PEM files into dir,
// and returns them with the etcd flags that serve TLS and require client
// certificates signed by that CA.
func writeCerts(dir string, ip net.IP) (*TLS, []string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "provision etcdtest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, err
	}
	leaf := func(cn string, usage []x509.ExtKeyUsage, hosts bool) (certDER []byte, key *ecdsa.PrivateKey, err error) {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial(),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  usage,
		}
		if hosts {
			tmpl.DNSNames = []string{"localhost"}
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
			if ip != nil && !ip.IsLoopback() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		}
		certDER, err = x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		return certDER, key, err
	}
	// etcd's own gateway dials the server with the server's certificate,
	// so it serves as a client certificate too.
	serverDER, serverKey, err := leaf("127.0.0.1", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, true)
	if err != nil {
		return nil, nil, err
	}
	clientDER, clientKey, err := leaf(ClientCN, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, false)
	if err != nil {
		return nil, nil, err
	}

	t := &TLS{
		CAFile:   filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "client.pem"),
		KeyFile:  filepath.Join(dir, "client-key.pem"),
		Roots:    x509.NewCertPool(),
	}
	t.Roots.AddCert(ca)
	serverCert, serverKeyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	files := []struct {
		path string
		pem  func() ([]byte, error)
	}{
		{t.CAFile, certPEM(caDER)},
		{serverCert, certPEM(serverDER)},
		{serverKeyFile, keyPEM(serverKey)},
		{t.CertFile, certPEM(clientDER)},
		{t.KeyFile, keyPEM(clientKey)},
	}
	for _, f := range files {
		data, err := f.pem()
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", f.path, err)
		}
		if err := os.WriteFile(f.path, data, 0o600); err != nil {
			return nil, nil, err
		}
	}
	t.Client = tls.Certificate{Certificate: [][]byte{clientDER}, PrivateKey: clientKey}
	args := []string{
		"--cert-file", serverCert, "--key-file", serverKeyFile,
		"--client-cert-auth", "--trusted-ca-file", t.CAFile,
	}
	return t, args, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}

func certPEM(der []byte) func() ([]byte, error) {
	return func() ([]byte, error) {
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
	}
}

func keyPEM(key *ecdsa.PrivateKey) func() ([]byte, error) {
	return func() ([]byte, error) {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
	}
}
