package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"golang.org/x/crypto/ssh"

	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/docker/dockertest"
	"github.com/provisionhq/provision/providers/hostkey"
	"github.com/provisionhq/provision/providers/providertest"
)

// recordingEngine passes calls on and keeps every request it saw: the
// archives copied into containers apart from everything else (names,
// labels, configs: what `docker inspect` shows anyone).
type recordingEngine struct {
	engine
	mu       sync.Mutex
	requests []string
	archives [][]byte
	creates  []client.ContainerCreateOptions
}

func (r *recordingEngine) note(v ...any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // option structs always marshal
	}
	r.mu.Lock()
	r.requests = append(r.requests, string(b))
	r.mu.Unlock()
}

func (r *recordingEngine) ContainerCreate(ctx context.Context, o client.ContainerCreateOptions) (client.ContainerCreateResult, error) {
	r.note("create", o)
	r.mu.Lock()
	r.creates = append(r.creates, o)
	r.mu.Unlock()
	return r.engine.ContainerCreate(ctx, o)
}

func (r *recordingEngine) CopyToContainer(ctx context.Context, id string, o client.CopyToContainerOptions) (client.CopyToContainerResult, error) {
	b, err := io.ReadAll(o.Content)
	if err != nil {
		return client.CopyToContainerResult{}, err
	}
	r.note("copy", id, o.DestinationPath)
	r.mu.Lock()
	r.archives = append(r.archives, b)
	r.mu.Unlock()
	o.Content = bytes.NewReader(b)
	return r.engine.CopyToContainer(ctx, id, o)
}

func (r *recordingEngine) ContainerStart(ctx context.Context, id string, o client.ContainerStartOptions) (client.ContainerStartResult, error) {
	r.note("start", id, o)
	return r.engine.ContainerStart(ctx, id, o)
}

func (r *recordingEngine) NetworkCreate(ctx context.Context, name string, o client.NetworkCreateOptions) (client.NetworkCreateResult, error) {
	r.note("network create", name, o)
	return r.engine.NetworkCreate(ctx, name, o)
}

// assertKeyOnlyInArchives fails when any request but a copied archive holds
// any part of a private key, and checks the key did travel in an archive.
func (r *recordingEngine) assertKeyOnlyInArchives(t *testing.T, keys ...hostkey.Key) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		secret := string(k.PrivatePEM)
		body := strings.Join(strings.Split(secret, "\n")[1:2], "") // first base64 line
		for _, req := range r.requests {
			if strings.Contains(req, body) || strings.Contains(req, "PRIVATE KEY") {
				t.Errorf("private host key in a request: %.80s", req)
			}
		}
		sent := false
		for _, in := range r.archives {
			sent = sent || bytes.Contains(in, k.PrivatePEM)
		}
		if !sent {
			t.Errorf("host key %s never sent in an archive", k.Public)
		}
	}
}

func uniqueCluster(t *testing.T, prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// cleanupCluster removes every container and the network of a test cluster.
func cleanupCluster(t *testing.T, cluster string) func() {
	return func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 2*time.Minute)
		defer cancel()
		if err := dockertest.RemoveLabelled(ctx, labelCluster+"="+cluster); err != nil {
			t.Logf("cleanup %s: %v", cluster, err)
		}
	}
}

// TestConformance runs the provider suite against real dockerd. The first
// run on a machine builds the node image (about 2 minutes).
func TestConformance(t *testing.T) {
	nodeImage(t)
	cluster := uniqueCluster(t, "pt")
	rec := &recordingEngine{engine: dockerClient(t)}
	p := newProvider(providers.Env{Cluster: cluster}, rec)
	var keys []hostkey.Key
	var mu sync.Mutex
	providertest.Run(t, p, providertest.Options{
		Cluster:         cluster,
		Settings:        providers.Settings{"memory": "512m", "cpus": 1},
		InvalidSettings: providers.Settings{"memory": "lots"},
		Check:           CheckSettings,
		NewHostKey: func() (hostkey.Key, error) {
			k, err := hostkey.Generate()
			mu.Lock()
			keys = append(keys, k)
			mu.Unlock()
			return k, err
		},
		Cleanup:        cleanupCluster(t, cluster),
		ReportsRunning: true,
	})
	rec.assertKeyOnlyInArchives(t, keys[:3]...)
	// The network goes with the last machine.
	if _, err := dockerClient(t).NetworkInspect(t.Context(), NetworkName(cluster), client.NetworkInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Errorf("network %s still exists after Delete (err %v)", NetworkName(cluster), err)
	}
}

func TestMissingImageIsInvalidSpec(t *testing.T) {
	requireDocker(t)
	cluster := uniqueCluster(t, "img")
	t.Cleanup(cleanupCluster(t, cluster))
	p, _ := New(t.Context(), providers.Env{Cluster: cluster})
	k, _ := hostkey.Generate()
	_, err := p.Create(t.Context(), []providers.MachineSpec{{
		ID: providers.MachineID(cluster + "-m0"), Cluster: cluster, Pool: "p", SSHUser: "root", HostKey: k,
		Settings: providers.Settings{"image": "provision-no-such-image:1"},
	}})
	if !errors.Is(err, providers.ErrInvalidSpec) {
		t.Fatalf("Create with a missing image: %v, want ErrInvalidSpec", err)
	}
}

// createNode creates one machine for a test and returns it with a client
// signer that may log in as user.
func createNode(t *testing.T, user string) (providers.Machine, hostkey.Key, ssh.Signer, *recordingEngine) {
	t.Helper()
	nodeImage(t)
	cluster := uniqueCluster(t, "node")
	t.Cleanup(cleanupCluster(t, cluster))
	rec := &recordingEngine{engine: dockerClient(t)}
	p := newProvider(providers.Env{Cluster: cluster}, rec)
	hk, err := hostkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	ck, err := hostkey.Generate() // a client key is an ed25519 key too
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(ck.PrivatePEM)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	ms, err := p.Create(ctx, []providers.MachineSpec{{
		ID: providers.MachineID(cluster + "-m0"), Cluster: cluster, Pool: "p", Role: providers.RoleManager,
		SSHUser: user, AuthorizedKeys: []string{ck.Public}, HostKey: hk,
	}})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return ms[0], hk, signer, rec
}

// dialNode connects with the injected host key pinned, retrying until sshd
// is up or the deadline passes.
func dialNode(t *testing.T, m providers.Machine, hk hostkey.Key, user string, signer ssh.Signer) *ssh.Client {
	t.Helper()
	pinned, _, _, _, err := ssh.ParseAuthorizedKey([]byte(hk.Public))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ClientConfig{
		User:              user,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   ssh.FixedHostKey(pinned),
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Timeout:           5 * time.Second,
	}
	addr := net.JoinHostPort(m.Address, fmt.Sprint(m.Port))
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := ssh.Dial("tcp", addr, cfg)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) || t.Context().Err() != nil {
			t.Fatalf("ssh %s@%s: %v", user, addr, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func runSSH(t *testing.T, c *ssh.Client, cmd string) string {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	return string(out)
}

// TestHostKeyInjected proves the node's sshd presents exactly the injected
// host key (FixedHostKey rejects any other), that the key never reached a
// command line, and that a non-root login user gets passwordless sudo.
func TestHostKeyInjected(t *testing.T) {
	for _, user := range []string{"root", "ops"} {
		t.Run(user, func(t *testing.T) {
			m, hk, signer, rec := createNode(t, user)
			rec.assertKeyOnlyInArchives(t, hk)
			c := dialNode(t, m, hk, user, signer)
			defer c.Close()
			if got := strings.TrimSpace(runSSH(t, c, "sudo -n id -u")); got != "0" {
				t.Fatalf("sudo id -u = %q", got)
			}
			if got := strings.TrimSpace(runSSH(t, c, "ls /etc/ssh/ | grep -c '^ssh_host_.*_key$'")); got != "1" {
				t.Fatalf("node has %s host keys, want exactly the injected one", got)
			}
		})
	}
}

// TestNestedDockerSwarm installs docker.io inside a node from the image's
// apt cache, starts dockerd, inits a swarm and runs a locally imported image.
func TestNestedDockerSwarm(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: nested docker takes ~30s")
	}
	m, hk, signer, _ := createNode(t, "root")
	c := dialNode(t, m, hk, "root", signer)
	defer c.Close()
	start := time.Now()
	runSSH(t, c, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io")
	t.Logf("offline apt-get install docker.io: %v", time.Since(start).Round(100*time.Millisecond))
	runSSH(t, c, "(setsid dockerd >/var/log/dockerd.log 2>&1 &); for i in $(seq 60); do docker info >/dev/null 2>&1 && exit 0; sleep 0.5; done; tail -20 /var/log/dockerd.log; exit 1")
	runSSH(t, c, "docker swarm init --advertise-addr "+m.Address)
	// Nothing can be pulled: import a tiny image made of the node's own sh.
	runSSH(t, c, `set -e; m=$(mktemp -d); mkdir -p $m/bin $m/lib/x86_64-linux-gnu $m/lib64
cp /usr/bin/dash $m/bin/sh; cp /lib/x86_64-linux-gnu/libc.so.6 $m/lib/x86_64-linux-gnu/; cp /lib64/ld-linux-x86-64.so.2 $m/lib64/
tar -C $m -c . | docker import - tiny:1 >/dev/null`)
	if got := runSSH(t, c, `docker run --rm tiny:1 /bin/sh -c 'echo nested-ok'`); !strings.Contains(got, "nested-ok") {
		t.Fatalf("nested docker run printed %q", got)
	}
	if got := runSSH(t, c, `docker info --format '{{.Swarm.LocalNodeState}}'`); strings.TrimSpace(got) != "active" {
		t.Fatalf("swarm state %q", got)
	}
	t.Logf("nested docker + swarm ready in %v", time.Since(start).Round(100*time.Millisecond))
}
