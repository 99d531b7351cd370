package etcdtest

import (
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// EnableAuth sets srv up as an operator would for provision, then turns
// authentication on: a root user (etcd needs one; its password is
// "root-" + password), a role "provision" that may read and write keys
// under prefix only, and user with that role and password. Use it on a
// server of the test's own (StartPrivate): every later client of srv
// needs a login.
func EnableAuth(t testing.TB, srv *Server, user, password, prefix string) {
	t.Helper()
	cfg := clientv3.Config{Endpoints: srv.Endpoints, DialTimeout: 5 * time.Second}
	if srv.TLS != nil {
		cfg.TLS = srv.TLS.Config()
	}
	admin, err := clientv3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx := t.Context()
	steps := []struct {
		what string
		do   func() error
	}{
		{"add user root", func() error { _, err := admin.UserAdd(ctx, "root", "root-"+password); return err }},
		{"grant root the root role", func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err }},
		{"add role provision", func() error { _, err := admin.RoleAdd(ctx, "provision"); return err }},
		{"let role provision read and write " + prefix, func() error {
			_, err := admin.RoleGrantPermission(ctx, "provision", prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		}},
		{"add user " + user, func() error { _, err := admin.UserAdd(ctx, user, password); return err }},
		{"grant " + user + " the role provision", func() error { _, err := admin.UserGrantRole(ctx, user, "provision"); return err }},
		{"enable auth", func() error { _, err := admin.AuthEnable(ctx); return err }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("etcd auth setup: %s: %v", s.what, err)
		}
	}
}
