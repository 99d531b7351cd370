package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/hostkey"
)

// fakeEngine answers Engine API calls from memory, so Create's call
// sequence is tested without a daemon. Calls it does not expect panic
// through the nil embedded interface.
type fakeEngine struct {
	engine
	mu         sync.Mutex
	containers map[string]*container.Config // by ID
	copies     int
	networks   []network.Summary // nil: the test cluster's one network
	removedNet []string
	listed     []container.Summary // what ContainerList answers
	served     string              // the public host key file of listed containers
	restarted  []string
}

func (f *fakeEngine) ImageInspect(ctx context.Context, ref string, _ ...client.ImageInspectOption) (client.ImageInspectResult, error) {
	return client.ImageInspectResult{}, nil
}

// NetworkList answers f.networks, or that the test cluster's network exists.
func (f *fakeEngine) NetworkList(ctx context.Context, _ client.NetworkListOptions) (client.NetworkListResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.networks == nil {
		return client.NetworkListResult{Items: []network.Summary{{Network: network.Network{Name: "provision-c", ID: "net0"}}}}, nil
	}
	return client.NetworkListResult{Items: slices.Clone(f.networks)}, nil
}

func (f *fakeEngine) NetworkRemove(ctx context.Context, id string, _ client.NetworkRemoveOptions) (client.NetworkRemoveResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removedNet = append(f.removedNet, id)
	f.networks = slices.DeleteFunc(f.networks, func(n network.Summary) bool { return n.ID == id })
	return client.NetworkRemoveResult{}, nil
}

func (f *fakeEngine) ContainerList(ctx context.Context, _ client.ContainerListOptions) (client.ContainerListResult, error) {
	return client.ContainerListResult{Items: f.listed}, nil
}

func (f *fakeEngine) CopyFromContainer(ctx context.Context, id string, o client.CopyFromContainerOptions) (client.CopyFromContainerResult, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: filepath.Base(o.SourcePath), Mode: 0o644, Size: int64(len(f.served))})
	_, _ = tw.Write([]byte(f.served))
	_ = tw.Close()
	return client.CopyFromContainerResult{Content: io.NopCloser(&buf)}, nil
}

func (f *fakeEngine) ContainerRestart(ctx context.Context, id string, _ client.ContainerRestartOptions) (client.ContainerRestartResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.restarted = append(f.restarted, id)
	return client.ContainerRestartResult{}, nil
}

func (f *fakeEngine) ContainerCreate(ctx context.Context, o client.ContainerCreateOptions) (client.ContainerCreateResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.containers == nil {
		f.containers = map[string]*container.Config{}
	}
	id := "c0ffee" + o.Name
	f.containers[id] = o.Config
	return client.ContainerCreateResult{ID: id}, nil
}

func (f *fakeEngine) CopyToContainer(ctx context.Context, id string, o client.CopyToContainerOptions) (client.CopyToContainerResult, error) {
	f.mu.Lock()
	f.copies++
	f.mu.Unlock()
	_, err := io.Copy(io.Discard, o.Content)
	return client.CopyToContainerResult{}, err
}

func (f *fakeEngine) ContainerStart(ctx context.Context, id string, _ client.ContainerStartOptions) (client.ContainerStartResult, error) {
	return client.ContainerStartResult{}, nil
}

func (f *fakeEngine) ContainerInspect(ctx context.Context, id string, _ client.ContainerInspectOptions) (client.ContainerInspectResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cfg, ok := f.containers[id]
	if !ok {
		return client.ContainerInspectResult{}, cerrdefs.ErrNotFound.WithMessage("No such container: " + id)
	}
	return client.ContainerInspectResult{Container: container.InspectResponse{
		ID: id, State: &container.State{Status: container.StateRunning}, Config: cfg,
		NetworkSettings: &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{
			"provision-c": {IPAddress: netip.MustParseAddr("172.30.0.2")}}},
	}}, nil
}

func TestCreateSendsPrivateKeyOnlyInTheArchive(t *testing.T) {
	t.Parallel()
	f := &fakeEngine{}
	rec := &recordingEngine{engine: f}
	p := newProvider(providers.Env{Cluster: "c"}, rec)
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
	rec.assertKeyOnlyInArchives(t, keys...)
	if f.copies != 3 {
		t.Errorf("%d archive copies, want 3", f.copies)
	}
}

func TestCreateConfiguresNodeContainer(t *testing.T) {
	t.Parallel()
	f := &fakeEngine{}
	rec := &recordingEngine{engine: f}
	p := newProvider(providers.Env{Cluster: "c"}, rec)
	k, err := hostkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Create(t.Context(), []providers.MachineSpec{{ID: "m0", Cluster: "c", Pool: "p", Role: providers.RoleWorker,
		SSHUser: "root", HostKey: k, Labels: map[string]string{"tier": "a", "provision.pool": "spoofed"},
		Settings: providers.Settings{"image": "img:1", "cpus": 1.5, "memory": "512m"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.creates) != 1 {
		t.Fatalf("%d creates, want 1", len(rec.creates))
	}
	o := rec.creates[0]
	hc := o.HostConfig
	checks := []struct {
		what      string
		got, want any
	}{
		{"name", o.Name, "m0"},
		{"hostname", o.Config.Hostname, "m0"},
		{"image", o.Config.Image, "img:1"},
		{"labels", fmt.Sprint(o.Config.Labels), fmt.Sprint(map[string]string{"provision.cluster": "c", "provision.machine": "m0", "provision.pool": "p", "provision.role": "worker", "tier": "a"})},
		{"network", string(hc.NetworkMode), "net0"},
		{"caps", fmt.Sprint(hc.CapAdd, hc.CapDrop), "[ALL] [SYS_RESOURCE]"},
		{"security", fmt.Sprint(hc.SecurityOpt), "[seccomp=unconfined apparmor=unconfined]"},
		{"cgroupns", hc.CgroupnsMode, container.CgroupnsModePrivate},
		{"devices", fmt.Sprint(hc.Devices, hc.DeviceCgroupRules), "[{/dev/kmsg /dev/kmsg rwm}] [a *:* rwm]"},
		{"tmpfs", fmt.Sprint(hc.Tmpfs), "map[/run:]"},
		{"volumes", fmt.Sprint(o.Config.Volumes), "map[/var/lib/containerd:{} /var/lib/docker:{} /var/lib/kubelet:{}]"},
		{"cpus", hc.NanoCPUs, int64(1.5e9)},
		{"memory", hc.Memory, int64(512 << 20)},
	}
	for _, c := range checks {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
}

func TestMemoryBytes(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"": 0, "512m": 512 << 20, "2g": 2 << 30, "1.5G": 3 << 29, "100k": 100 << 10, "4096b": 4096, "4096": 4096} {
		if got := memoryBytes(in); got != want {
			t.Errorf("memoryBytes(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestDaemonDownIsClear(t *testing.T) {
	t.Parallel()
	c, err := client.New(client.WithHost("unix://" + filepath.Join(t.TempDir(), "no-dockerd.sock")))
	if err != nil {
		t.Fatal(err)
	}
	p := newProvider(providers.Env{Cluster: "c"}, c)
	_, err = p.List(t.Context(), providers.Selector{Cluster: "c"})
	if !errors.Is(err, ErrDaemonUnreachable) || !strings.Contains(err.Error(), "start dockerd") {
		t.Fatalf("List with daemon down: %v", err)
	}
}

func TestDecodeSettings(t *testing.T) {
	t.Parallel()
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
		_, err := decodeSettings(tt.set)
		if tt.ok != (err == nil) || (err != nil && !errors.Is(err, providers.ErrInvalidSpec)) {
			t.Errorf("decodeSettings(%v) = %v", tt.set, err)
		}
	}
}

func TestBadHostKeyIsInvalidSpecWithoutKeyMaterial(t *testing.T) {
	t.Parallel()
	p := newProvider(providers.Env{Cluster: "c"}, &fakeEngine{})
	secret := "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA==\n-----END OPENSSH PRIVATE KEY-----\n"
	_, err := p.Create(t.Context(), []providers.MachineSpec{{ID: "m0", Cluster: "c", Pool: "p", SSHUser: "root",
		HostKey: hostkey.Key{PrivatePEM: []byte(secret)}, Settings: providers.Settings{"image": "img:1"}}})
	if !errors.Is(err, providers.ErrInvalidSpec) || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Fatalf("err = %v", err)
	}
}

// TestCreateLeavesOneNetworkOfTheName: a killed run's NetworkCreate that
// landed after the next run made its own leaves two networks of the
// cluster's name (the daemon does not keep names unique); Create keeps the
// oldest, removes the other, and attaches new machines by ID.
func TestCreateLeavesOneNetworkOfTheName(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 2, 1, 4, 21, 0, time.UTC)
	f := &fakeEngine{networks: []network.Summary{
		{Network: network.Network{Name: "provision-c", ID: "newer", Created: t0.Add(time.Second)}},
		{Network: network.Network{Name: "provision-cc", ID: "other-cluster", Created: t0.Add(-time.Hour)}},
		{Network: network.Network{Name: "provision-c", ID: "older", Created: t0}},
	}}
	rec := &recordingEngine{engine: f}
	p := newProvider(providers.Env{Cluster: "c"}, rec)
	k, err := hostkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Create(t.Context(), []providers.MachineSpec{{ID: "m0", Cluster: "c", Pool: "p",
		SSHUser: "root", HostKey: k, Settings: providers.Settings{"image": "img:1"}}}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.removedNet, []string{"newer"}) {
		t.Errorf("removed networks %v, want [newer]", f.removedNet)
	}
	if len(rec.creates) != 1 || rec.creates[0].HostConfig.NetworkMode != "older" {
		t.Errorf("container network %v, want the older network's ID", rec.creates)
	}
}

// TestCreateFinishesALeftContainer: Create for a machine whose container an
// interrupted run left behind (the daemon finished its start after the run
// died) leaves it alone when it serves the spec's host key, and otherwise
// copies the spec's keys in and restarts it, so it never serves a key that
// state does not pin.
func TestCreateFinishesALeftContainer(t *testing.T) {
	t.Parallel()
	old, err := hostkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := hostkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name        string
		served      string
		wantRestart bool
	}{
		{"serves the pinned key", pinned.Public, false},
		{"serves the dead run's key", old.Public, true},
		{"serves no key yet", "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			labels := map[string]string{labelCluster: "c", labelPool: "p", labelMachine: "m0"}
			f := &fakeEngine{served: tt.served, listed: []container.Summary{{ID: "c0ffeem0", State: container.StateRunning, Labels: labels}}}
			f.containers = map[string]*container.Config{"c0ffeem0": {Labels: labels}}
			p := newProvider(providers.Env{Cluster: "c"}, f)
			if _, err := p.Create(t.Context(), []providers.MachineSpec{{ID: "m0", Cluster: "c", Pool: "p",
				SSHUser: "root", HostKey: pinned, Settings: providers.Settings{"image": "img:1"}}}); err != nil {
				t.Fatal(err)
			}
			if restarted := len(f.restarted) == 1; restarted != tt.wantRestart || (f.copies == 1) != tt.wantRestart {
				t.Errorf("restarts %v, key copies %d; want restarted and copied = %v", f.restarted, f.copies, tt.wantRestart)
			}
		})
	}
}
