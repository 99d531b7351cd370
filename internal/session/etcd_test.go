package session

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/provisionhq/provision/state/etcd"
	"github.com/provisionhq/provision/state/etcd/etcdtest"
	"github.com/provisionhq/provision/state/etcd/transport"
)

// writePlan writes a plan with the given state block next to its files.
func writePlan(t *testing.T, dir, state string) string {
	t.Helper()
	path := filepath.Join(dir, "plan.yaml")
	plan := "version: 1\ncluster: {name: c}\nstate:\n" + state +
		"pools:\n  - {name: m, provider: docker, role: manager, count: 1}\n"
	if err := os.WriteFile(path, []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestEtcdEndpointsFromEnvChecked: endpoints from PROVISION_ETCD_ENDPOINTS
// meet the rules the loader applies to the plan's: plaintext to another
// host is refused before anything is dialled, saying where the endpoint
// came from and what to do.
func TestEtcdEndpointsFromEnvChecked(t *testing.T) {
	t.Setenv(etcd.EnvEndpoints, "http://10.1.2.3:2379")
	path := writePlan(t, t.TempDir(), "  backend: etcd\n  endpoints: [http://127.0.0.1:2379]\n")
	s, err := Load(t.Context(), path, nil)
	if err == nil {
		s.Close()
		t.Fatal("Load succeeded")
	}
	for _, want := range []string{etcd.EnvEndpoints, "http://10.1.2.3:2379", "state.tls", "state.insecure: true"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if !errors.Is(err, transport.ErrPlaintext) {
		t.Errorf("error %v is not transport.ErrPlaintext", err)
	}
}

// TestEtcdTLSAndLogin: a plan's state.tls files and user reach an etcd
// that requires both; the password comes from state.password_file (a path
// relative to the plan), and PROVISION_ETCD_PASSWORD overrides it.
func TestEtcdTLSAndLogin(t *testing.T) {
	const user, password, envPassword = "provision", "file-password-7f3a", "env-password-c91d"
	t.Setenv(etcd.EnvEndpoints, "")
	srv := etcdtest.StartPrivate(t, true)
	etcdtest.EnableAuth(t, srv, user, password, etcd.DefaultPrefix+"/")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "etcd-password"), []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := writePlan(t, dir, "  backend: etcd\n  endpoints: ["+srv.Endpoints[0]+"]\n"+
		"  tls: {ca: "+srv.TLS.CAFile+", cert: "+srv.TLS.CertFile+", key: "+srv.TLS.KeyFile+"}\n"+
		"  username: "+user+"\n  password_file: etcd-password\n")

	t.Setenv(etcd.EnvPassword, "")
	s, err := Load(t.Context(), path, nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if _, err := s.Backend.Read(t.Context()); err != nil {
		t.Errorf("Read: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}

	t.Setenv(etcd.EnvPassword, envPassword)
	s, err = Load(t.Context(), path, nil)
	if err == nil {
		s.Close()
		t.Fatal("Load with a wrong password in the environment succeeded: the file's was used")
	}
	if !errors.Is(err, rpctypes.ErrAuthFailed) {
		t.Errorf("error %v is not rpctypes.ErrAuthFailed", err)
	}
	if strings.Contains(err.Error(), password) || strings.Contains(err.Error(), envPassword) {
		t.Errorf("error %q shows a password", err)
	}
}
