package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/hostkey"
)

// fakeDocker answers docker CLI calls from memory, so Create's command
// sequence is tested without a daemon.
type fakeDocker struct {
	mu    sync.Mutex
	argv  [][]string
	stdin [][]byte
	down  bool
}

func (f *fakeDocker) run(ctx context.Context, stdin io.Reader, name string, args ...string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var in []byte
	if stdin != nil {
		in, _ = io.ReadAll(stdin)
	}
	f.argv = append(f.argv, append([]string{name}, args...))
	f.stdin = append(f.stdin, in)
	if f.down {
		return nil, &cmdError{Args: args, Stderr: "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?", Err: errors.New("exit status 1")}
	}
	switch {
	case args[0] == "image":
		return []byte("sha256:x\n"), nil
	case args[0] == "network":
		return []byte("net\n"), nil
	case args[0] == "ps":
		return nil, nil
	case args[0] == "create":
		return []byte("c0ffee" + args[2] + "\n"), nil
	case args[0] == "container" && args[1] == "inspect":
		var parts []string
		for _, id := range args[2:] {
			m := strings.TrimPrefix(id, "c0ffee")
			parts = append(parts, fmt.Sprintf(`{"Id":%q,"State":{"Status":"running"},"Config":{"Labels":{"provision.cluster":"c","provision.pool":"p","provision.machine":%q}},"NetworkSettings":{"Networks":{"provision-c":{"IPAddress":"172.30.0.2"}}}}`, id, m))
		}
		return []byte("[" + strings.Join(parts, ",") + "]"), nil
	}
	return nil, nil
}

func TestCreateKeepsPrivateKeyOutOfArgv(t *testing.T) {
	f := &fakeDocker{}
	p := newProvider(providers.Env{Cluster: "c"}, f)
	var specs []providers.MachineSpec
	var keys []hostkey.Key
	for i := range 3 {
		k, err := hostkey.Generate()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
		specs = append(specs, providers.MachineSpec{ID: providers.MachineID(fmt.Sprintf("m%d", i)), Cluster: "c", Pool: "p",
			SSHUser: "root", HostKey: k, Settings: providers.Settings{"image": "img:1"}})
	}
	ms, err := p.Create(t.Context(), specs)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 || ms[2].ID != "m2" || ms[2].Address != "172.30.0.2" || ms[2].Port != 22 {
		t.Fatalf("machines = %+v", ms)
	}
	rec := &recordingRunner{argv: f.argv, in: f.stdin}
	rec.assertNoSecretInArgv(t, keys...)
	copies := 0
	for _, a := range f.argv {
		if a[1] == "cp" {
			copies++
			if a[2] != "-" {
				t.Errorf("docker cp not from stdin: %v", a)
			}
		}
	}
	if copies != 3 {
		t.Errorf("%d docker cp calls, want 3", copies)
	}
}

func TestDaemonDownIsClear(t *testing.T) {
	p := newProvider(providers.Env{Cluster: "c"}, &fakeDocker{down: true})
	_, err := p.List(t.Context(), providers.Selector{Cluster: "c"})
	if !errors.Is(err, ErrDaemonUnreachable) || !strings.Contains(err.Error(), "start dockerd") {
		t.Fatalf("List with daemon down: %v", err)
	}
}

func TestValidateSettings(t *testing.T) {
	p := newProvider(providers.Env{}, &fakeDocker{})
	tests := []struct {
		set providers.Settings
		ok  bool
	}{
		{providers.Settings{}, true},
		{providers.Settings{"image": "x:1", "cpus": 1.5, "memory": "1g"}, true},
		{providers.Settings{"memory": "1 gig"}, false},
		{providers.Settings{"cpus": -1}, false},
		{providers.Settings{"cpu": 1}, false},
		{providers.Settings{"image": "a b"}, false},
	}
	for _, tt := range tests {
		err := p.ValidateSettings(tt.set)
		if tt.ok != (err == nil) || (err != nil && !errors.Is(err, providers.ErrInvalidSpec)) {
			t.Errorf("ValidateSettings(%v) = %v", tt.set, err)
		}
	}
}

func TestBadHostKeyIsInvalidSpecWithoutKeyMaterial(t *testing.T) {
	p := newProvider(providers.Env{Cluster: "c"}, &fakeDocker{})
	secret := "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA==\n-----END OPENSSH PRIVATE KEY-----\n"
	_, err := p.Create(t.Context(), []providers.MachineSpec{{ID: "m0", Cluster: "c", Pool: "p", SSHUser: "root",
		HostKey: hostkey.Key{PrivatePEM: []byte(secret)}, Settings: providers.Settings{"image": "img:1"}}})
	if !errors.Is(err, providers.ErrInvalidSpec) || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Fatalf("err = %v", err)
	}
}
