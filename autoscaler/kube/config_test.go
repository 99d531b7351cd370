package kube_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisionhq/provision/autoscaler/kube"
)

func TestConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "kubeconfig")
	const kubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://k8s.example.test:6443
contexts:
- name: ctx
  context: {cluster: c, user: u}
current-context: ctx
users:
- name: u
  user: {token: secret-token}
`
	if err := os.WriteFile(good, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		path     string
		wantHost string
		wantErr  string
	}{
		{name: "explicit kubeconfig", path: good, wantHost: "https://k8s.example.test:6443"},
		{name: "missing kubeconfig", path: filepath.Join(dir, "nope"), wantErr: "kubernetes config from " + filepath.Join(dir, "nope")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := kube.Config(tt.path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Config(%q) error = %v, want one containing %q", tt.path, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Host != tt.wantHost || cfg.BearerToken != "secret-token" {
				t.Errorf("Config(%q) = host %q token %q, want %q and the kubeconfig's token", tt.path, cfg.Host, cfg.BearerToken, tt.wantHost)
			}
		})
	}
}
