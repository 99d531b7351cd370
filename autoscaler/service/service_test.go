package service

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestRelocate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		plan string
		set  map[string]string
		want map[string]any // dotted path -> value in the result
		keep string         // text that must survive
	}{
		{
			name: "replaces and keeps the rest",
			plan: "# our cluster\nversion: 1\nssh:\n  user: admin\n  key: keys/id_ed25519 # the team key\nstate:\n  backend: etcd\n  tls: {ca: ca.pem, cert: c.pem, key: k.pem}\npools:\n  - &w {name: a, provider: aws}\n  - *w\n",
			set:  map[string]string{"ssh.key": "/run/secrets/ssh-key", "state.tls.ca": "/run/secrets/etcd-ca", "state.tls.key": "/run/secrets/etcd-key"},
			want: map[string]any{"ssh.key": "/run/secrets/ssh-key", "ssh.user": "admin", "state.tls.ca": "/run/secrets/etcd-ca",
				"state.tls.cert": "c.pem", "state.tls.key": "/run/secrets/etcd-key", "state.backend": "etcd"},
			keep: "# our cluster",
		},
		{
			name: "adds what is missing",
			plan: "version: 1\ncluster: {name: x}\n",
			set:  map[string]string{"ssh.key": "/run/secrets/ssh-key", "state.password_file": "/run/secrets/etcd-password"},
			want: map[string]any{"ssh.key": "/run/secrets/ssh-key", "state.password_file": "/run/secrets/etcd-password", "cluster.name": "x"},
		},
		{
			name: "agent off is a boolean",
			plan: "version: 1\nssh:\n  agent: true\n",
			set:  map[string]string{"ssh.agent": "false", "ssh.key": "/run/secrets/ssh-key"},
			want: map[string]any{"ssh.agent": false, "ssh.key": "/run/secrets/ssh-key"},
		},
		{
			name: "an empty section",
			plan: "version: 1\nssh:\nstate:\n",
			set:  map[string]string{"ssh.key": "/k"},
			want: map[string]any{"ssh.key": "/k"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, err := Relocate([]byte(tt.plan), tt.set)
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string]any
			if err := yaml.Unmarshal(out, &doc); err != nil {
				t.Fatalf("result is not YAML: %v\n%s", err, out)
			}
			for path, want := range tt.want {
				var v any = doc
				for _, k := range strings.Split(path, ".") {
					m, _ := v.(map[string]any)
					v = m[k]
				}
				if v != want {
					t.Errorf("%s = %#v, want %#v in\n%s", path, v, want, out)
				}
			}
			if tt.keep != "" && !strings.Contains(string(out), tt.keep) {
				t.Errorf("%q lost:\n%s", tt.keep, out)
			}
		})
	}
	if _, err := Relocate([]byte("- a\n- b\n"), map[string]string{"ssh.key": "/k"}); err == nil {
		t.Error("a list was taken for a plan")
	}
	if _, err := Relocate([]byte("ssh: [a]\n"), map[string]string{"ssh.key": "/k"}); err == nil {
		t.Error("ssh as a list was taken for a mapping")
	}
}

func TestCredentials(t *testing.T) {
	t.Parallel()
	files := map[string]string{"/home/op/gcp.json": `{"type":"service_account"}`}
	read := func(p string) ([]byte, error) {
		if d, ok := files[p]; ok {
			return []byte(d), nil
		}
		return nil, os.ErrNotExist
	}
	environ := []string{
		"HOME=/home/op", "PATH=/usr/bin", "SSH_AUTH_SOCK=/tmp/agent",
		"AWS_SECRET_ACCESS_KEY=s3cr3t", "AWS_ACCESS_KEY_ID=AKIA", "AWS_REGION=eu-west-1", "AWS_EMPTY=",
		"GOOGLE_APPLICATION_CREDENTIALS=/home/op/gcp.json",
		"OS_PASSWORD=os-secret", "PROVISION_ETCD_PASSWORD=etcd-secret", "PROVISION_ETCD_ENDPOINTS=http://127.0.0.1:2379",
	}
	got, err := Credentials(environ, []string{"aws", "gcp"}, read)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != EnvFile || got[1].Name != "google-application-credentials" {
		t.Fatalf("files %v: want cloud-env and google-application-credentials", names(got))
	}
	want := "AWS_ACCESS_KEY_ID=AKIA\nAWS_REGION=eu-west-1\nAWS_SECRET_ACCESS_KEY=s3cr3t\n" +
		"GOOGLE_APPLICATION_CREDENTIALS=/run/secrets/google-application-credentials\nPROVISION_ETCD_PASSWORD=etcd-secret\n"
	if string(got[0].Data) != want {
		t.Errorf("cloud-env:\n%s\nwant (no OS_* for a plan without openstack, nothing unrelated, sorted):\n%s", got[0].Data, want)
	}
	if string(got[1].Data) != files["/home/op/gcp.json"] {
		t.Errorf("credentials file %q", got[1].Data)
	}
	again, _ := Credentials([]string{environ[9], environ[7], environ[5], environ[4], environ[3]}, []string{"gcp", "aws"}, read)
	if string(again[0].Data) != want {
		t.Error("another order of the same environment makes another secret")
	}

	if got, err := Credentials([]string{"HOME=/root"}, []string{"aws"}, read); err != nil || got != nil {
		t.Errorf("nothing to carry: got %v, %v", names(got), err)
	}
	_, err = Credentials([]string{"GOOGLE_APPLICATION_CREDENTIALS=/gone.json"}, []string{"gcp"}, read)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "GOOGLE_APPLICATION_CREDENTIALS names /gone.json") {
		t.Errorf("missing credentials file: %v", err)
	}
}

func names(fs []File) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Name)
	}
	return out
}

func TestParseEnv(t *testing.T) {
	t.Parallel()
	got, err := ParseEnv([]byte("# creds\nexport A=1\n\nB=x=y\n  C=  \n"), "f")
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]string{{"A", "1"}, {"B", "x=y"}, {"C", ""}}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: %v, want %v", i, got[i], want[i])
		}
	}
	_, err = ParseEnv([]byte("A=1\nhunter2\n"), "cloud-env")
	if err == nil || err.Error() != "cloud-env:2: not KEY=VALUE" {
		t.Errorf("bad line: %v (and the line itself must not be quoted)", err)
	}
}

// TestSpecKeepsSecretsOut: what docker service inspect shows anyone with
// access to a manager holds no secret, only references to them.
func TestSpecKeepsSecretsOut(t *testing.T) {
	t.Parallel()
	d := Deployment{
		Cluster: "prod", Image: "provision.local/provision:0123456789ab", Replicas: 2,
		Plan:    []byte("version: 1\nssh: {key: /run/secrets/ssh-key}\n"),
		Secrets: []File{{Name: "ssh-key", Data: []byte("PRIVATE-KEY-SENTINEL")}, {Name: EnvFile, Data: []byte("AWS_SECRET_ACCESS_KEY=SECRET-SENTINEL\n")}},
	}
	spec := d.Spec(Refs{Secrets: map[string]string{"ssh-key": "s1", EnvFile: "s2"}, Config: "c1"})
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"SENTINEL", "AWS_SECRET"} {
		if strings.Contains(string(b), s) {
			t.Errorf("service spec holds %q:\n%s", s, b)
		}
	}
	cs := spec.TaskTemplate.ContainerSpec
	if !strings.Contains(strings.Join(cs.Args, " "), "--env-file /run/secrets/cloud-env") {
		t.Errorf("args %v do not read the credentials secret", cs.Args)
	}
	if len(cs.Secrets) != 2 || cs.Secrets[0].File.Mode != 0o400 || cs.Secrets[0].SecretID != "s1" {
		t.Errorf("secrets %+v", cs.Secrets)
	}
	if c := spec.TaskTemplate.Placement.Constraints; len(c) != 2 || c[1] != "node.labels.provision.autoscaler.image == 0123456789ab" {
		t.Errorf("constraints %v: want managers holding this image", c)
	}
	if *spec.Mode.Replicated.Replicas != 2 {
		t.Errorf("replicas %d", *spec.Mode.Replicated.Replicas)
	}

	// New content is a new object; the same content the same one.
	other := d
	other.Secrets = []File{{Name: "ssh-key", Data: []byte("ROTATED")}, d.Secrets[1]}
	if a, b := d.objectName("ssh-key", d.Secrets[0].Data), other.objectName("ssh-key", other.Secrets[0].Data); a == b {
		t.Errorf("a rotated key keeps the secret name %s", a)
	}
	if !sameSpec(spec, d.Spec(Refs{})) {
		t.Error("the same deployment is taken for a change")
	}
	if sameSpec(spec, other.Spec(Refs{})) {
		t.Error("a rotated key is not taken for a change")
	}
	long := Deployment{Cluster: strings.Repeat("c", 80)}
	if n := long.objectName("etcd-password", nil); len(n) > 64 {
		t.Errorf("name %s is %d characters: Swarm allows 64", n, len(n))
	}
}
