// Package docker owns the local provider: machines are Docker containers on
// this host, each with its own IP on a per-cluster bridge network, running
// OpenSSH and able to run a nested dockerd (so bootstrap and a real Swarm are
// exercised for real). It also owns the node image those containers run
// (EnsureImage), built locally with debootstrap because nothing can be
// pulled. It talks to dockerd through the official Engine API client
// (github.com/moby/moby/client), never the docker CLI.
package docker

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sync/errgroup"

	"github.com/provisionhq/provision/providers"
)

// Labels provision puts on every container and network it creates.
const (
	labelCluster = "provision.cluster"
	labelPool    = "provision.pool"
	labelMachine = "provision.machine"
	labelRole    = "provision.role"
)

// createParallelism bounds how many machines one Create prepares at once.
// Each machine costs a handful of Engine API calls against one local dockerd
// on a small shared host; more parallelism only queues inside the daemon.
const createParallelism = 4

// nodeHostConfig lets the container run its own dockerd or a kubelet, as
// kind's nodes do. Privileged mode is refused by this kernel, so grant every
// capability except SYS_RESOURCE and lift seccomp/apparmor; the image's init
// remounts cgroups and /proc/sys/net rw and shadows the kernel sysctls
// kubelet writes (/proc/sys itself stays read-only: it is the host's kernel).
//   - private cgroup namespace: the node sees only its own cgroup subtree, so
//     writable cgroups cannot reach the host's, and nested runtimes nest.
//   - /dev/kmsg: kubelet's OOM watcher reads it.
//   - the device rule: nested containers may create and use device nodes.
//   - /run on tmpfs: runtimes keep sockets and state there that must not
//     survive a restart.
//   - anonymous volumes (nodeVolumes) keep the nested runtimes' and
//     kubelet's storage off overlayfs (overlay on the container's overlay
//     root fails with "invalid argument"); Delete removes them with the
//     container.
func nodeHostConfig(network string, st settings) *container.HostConfig {
	hc := &container.HostConfig{
		NetworkMode:  container.NetworkMode(network),
		CapAdd:       []string{"ALL"},
		CapDrop:      []string{"SYS_RESOURCE"},
		SecurityOpt:  []string{"seccomp=unconfined", "apparmor=unconfined"},
		CgroupnsMode: container.CgroupnsModePrivate,
		Tmpfs:        map[string]string{"/run": ""},
	}
	hc.Devices = []container.DeviceMapping{{PathOnHost: "/dev/kmsg", PathInContainer: "/dev/kmsg", CgroupPermissions: "rwm"}}
	hc.DeviceCgroupRules = []string{"a *:* rwm"}
	hc.NanoCPUs = int64(st.CPUs * 1e9)
	hc.Memory = memoryBytes(st.Memory)
	return hc
}

var nodeVolumes = []string{"/var/lib/docker", "/var/lib/containerd", "/var/lib/kubelet"}

// memoryBytes reads a size memoryRe accepted (docker's binary units: 1g is
// 1024m); 0, unlimited, when empty.
func memoryBytes(s string) int64 {
	if s == "" {
		return 0
	}
	mult := int64(1)
	switch s[len(s)-1] {
	case 'k', 'K':
		mult = 1 << 10
	case 'm', 'M':
		mult = 1 << 20
	case 'g', 'G':
		mult = 1 << 30
	}
	num := strings.TrimRight(s, "bkmgBKMG")
	f, _ := strconv.ParseFloat(num, 64)
	return int64(f * float64(mult))
}

// Provider creates machines as local Docker containers.
type Provider struct {
	api    engine
	logger *slog.Logger
	env    providers.Env

	imageMu      sync.Mutex
	defaultImage string // EnsureImage's result, resolved on first use
	netMu        sync.Mutex
}

var _ providers.Provider = (*Provider)(nil)

// New returns the docker provider. It is cheap: the daemon is first
// contacted, and the node image built if missing, on the first Create.
func New(ctx context.Context, env providers.Env) (*Provider, error) {
	c, err := NewClient()
	if err != nil {
		return nil, err
	}
	return newProvider(env, c), nil
}

func newProvider(env providers.Env, api engine) *Provider {
	logger := env.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Provider{api: api, logger: logger.With("provider", "docker"), env: env}
}

// settings are a docker pool's settings in the plan.
type settings struct {
	// Image is the node image; the built-in node image when empty.
	Image string `json:"image,omitempty"`
	// CPUs limits the container's CPUs (docker --cpus); unlimited when 0.
	CPUs float64 `json:"cpus,omitempty"`
	// Memory limits the container's memory (docker --memory, e.g. "1g").
	Memory string `json:"memory,omitempty"`
}

var (
	memoryRe = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?[bkmgBKMG]?$`)
	// Docker container names: the ID is the container and host name.
	nameRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
	userRe = regexp.MustCompile(`^[a-z_][a-z0-9_-]*$`)
)

// NetworkName is the bridge network of a cluster's machines.
func NetworkName(cluster string) string { return "provision-" + cluster }

// Create makes one container per spec (idempotent per spec.ID) and returns
// them started, with their address on the cluster network.
func (p *Provider) Create(ctx context.Context, specs []providers.MachineSpec) ([]providers.Machine, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	pool := specs[0].Pool
	images := make([]string, len(specs))
	parsed := make([]settings, len(specs))
	for i, s := range specs {
		if err := validateSpec(s); err != nil {
			return nil, err
		}
		st, err := decodeSettings(s.Settings)
		if err != nil {
			return nil, fmt.Errorf("machine %s: %w", s.ID, err)
		}
		parsed[i] = st
	}
	for i := range specs {
		img, err := p.image(ctx, parsed[i].Image, specs[i].Pool)
		if err != nil {
			return nil, err
		}
		images[i] = img
	}

	clusters := map[string]bool{}
	for _, s := range specs {
		clusters[s.Cluster] = true
	}
	existing := map[providers.MachineID]containerInfo{}
	nets := map[string]string{} // network ID by cluster
	for c := range clusters {
		id, err := p.ensureNetwork(ctx, c)
		if err != nil {
			return nil, err
		}
		nets[c] = id
		found, err := p.inspectSelected(ctx, providers.Selector{Cluster: c})
		if err != nil {
			return nil, err
		}
		for _, ci := range found {
			existing[ci.machineID()] = ci
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(createParallelism)
	ids := make([]string, len(specs))
	for i, spec := range specs {
		g.Go(func() error {
			id, err := p.createOne(gctx, spec, parsed[i], images[i], nets[spec.Cluster], existing)
			if err != nil {
				return fmt.Errorf("machine %s: %w", spec.ID, err)
			}
			ids[i] = id
			// Its bootstrap may start now, whatever the rest are doing.
			if infos, err := p.inspect(gctx, []string{id}); err == nil && len(infos) == 1 {
				providers.Running(gctx, infos[0].machine())
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("create %d machines in pool %q: %w", len(specs), pool, err)
	}

	infos, err := p.inspect(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("create %d machines in pool %q: %w", len(specs), pool, err)
	}
	byID := map[string]containerInfo{}
	for _, ci := range infos {
		byID[ci.ID] = ci
	}
	out := make([]providers.Machine, 0, len(specs))
	for i, spec := range specs {
		ci, ok := byID[ids[i]]
		if !ok {
			return nil, fmt.Errorf("machine %s: container %.12s vanished after start", spec.ID, ids[i])
		}
		m := ci.machine()
		if m.State != providers.StateRunning || m.Address == "" {
			return nil, fmt.Errorf("machine %s: container %.12s is %s with address %q after start: %s",
				spec.ID, ci.ID, ci.Status, m.Address, p.logsTail(ctx, ci.ID))
		}
		out = append(out, m)
	}
	return out, nil
}

func validateSpec(s providers.MachineSpec) error {
	if !nameRe.MatchString(string(s.ID)) {
		return fmt.Errorf("%w: machine ID %q is not a valid container name", providers.ErrInvalidSpec, s.ID)
	}
	if !nameRe.MatchString(s.Cluster) {
		return fmt.Errorf("%w: machine %s: cluster %q is not a valid docker network name", providers.ErrInvalidSpec, s.ID, s.Cluster)
	}
	if s.SSHUser == "" || !userRe.MatchString(s.SSHUser) {
		return fmt.Errorf("%w: machine %s: ssh user %q is not a valid user name", providers.ErrInvalidSpec, s.ID, s.SSHUser)
	}
	if len(s.HostKey.PrivatePEM) == 0 {
		return fmt.Errorf("%w: machine %s: no host key", providers.ErrInvalidSpec, s.ID)
	}
	return nil
}

// image resolves a pool's image: the built-in node image when unset (built
// once per provider), otherwise an image that must already be local, since
// nothing can be pulled.
func (p *Provider) image(ctx context.Context, ref, pool string) (string, error) {
	if ref == "" {
		p.imageMu.Lock()
		defer p.imageMu.Unlock()
		if p.defaultImage == "" {
			img, err := ensureImage(ctx, p.api, p.logger)
			if err != nil {
				return "", err
			}
			p.defaultImage = img
		}
		return p.defaultImage, nil
	}
	ok, err := imageExists(ctx, p.api, ref)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", &providers.Error{Kind: providers.ErrInvalidSpec, Cloud: "docker", Pool: pool,
			Message: fmt.Sprintf("image %q is not present locally and cannot be pulled here (leave image unset for the built-in node image)", ref)}
	}
	return ref, nil
}

// ensureNetwork creates the cluster's bridge network if it is missing, and
// leaves exactly one network of that name: the daemon does not keep names
// unique under concurrent creates (a killed run's NetworkCreate can land
// after the next run looked and made its own), and containers name their
// network, so two of a name make every start fail as ambiguous. It returns
// the network's ID, which new containers name (a duplicate landing later
// cannot make them ambiguous).
func (p *Provider) ensureNetwork(ctx context.Context, cluster string) (string, error) {
	ctx, cancel := withDeadline(ctx)
	defer cancel()
	p.netMu.Lock()
	defer p.netMu.Unlock()
	name := NetworkName(cluster)
	nets, err := p.networksNamed(ctx, name)
	if err != nil {
		return "", err
	}
	if len(nets) == 0 {
		_, err = p.api.NetworkCreate(ctx, name, client.NetworkCreateOptions{Driver: "bridge", Labels: map[string]string{labelCluster: cluster}})
		if err != nil && !cerrdefs.IsConflict(err) { // conflict: another process created it meanwhile
			return "", fmt.Errorf("create network %s: %w", name, classify(err, ""))
		}
		if nets, err = p.networksNamed(ctx, name); err != nil {
			return "", err
		}
		if len(nets) == 0 { // removed again at once by a concurrent Delete's process
			return "", fmt.Errorf("create network %s: it was removed as soon as it was made; try again", name)
		}
	}
	// The oldest is the cluster's; the others are the loser of a race and
	// hold no container of ours that has started.
	slices.SortFunc(nets, func(a, b network.Summary) int {
		return cmp.Or(a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID))
	})
	for _, extra := range nets[min(1, len(nets)):] {
		if _, err := p.api.NetworkRemove(ctx, extra.ID, client.NetworkRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			return "", fmt.Errorf("network name %s is taken twice (%s and %s) and the newer cannot go: %w", name, shortID(nets[0].ID), shortID(extra.ID), classify(err, ""))
		}
		p.logger.WarnContext(ctx, "removed a second network of the cluster's name", "network", name, "id", shortID(extra.ID))
	}
	p.logger.DebugContext(ctx, "network ready", "network", name, "id", shortID(nets[0].ID))
	return nets[0].ID, nil
}

// networksNamed lists the networks called exactly name (the daemon's name
// filter also matches parts of names).
func (p *Provider) networksNamed(ctx context.Context, name string) ([]network.Summary, error) {
	res, err := p.api.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("name", name)})
	if err != nil {
		return nil, fmt.Errorf("list networks %s: %w", name, classify(err, ""))
	}
	return slices.DeleteFunc(res.Items, func(n network.Summary) bool { return n.Name != name }), nil
}

func shortID(id string) string { return id[:min(12, len(id))] }

// servesHostKey tells whether the container's public host key file is pub.
// Any doubt (unreadable, missing, another key) is a no.
func (p *Provider) servesHostKey(ctx context.Context, id, pub string) bool {
	want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pub))
	if err != nil {
		return false
	}
	res, err := p.api.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: "/etc/ssh/ssh_host_ed25519_key.pub"})
	if err != nil {
		return false
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	if _, err := tr.Next(); err != nil {
		return false
	}
	body, err := io.ReadAll(io.LimitReader(tr, 16<<10))
	if err != nil {
		return false
	}
	got, _, _, _, err := ssh.ParseAuthorizedKey(body)
	return err == nil && bytes.Equal(got.Marshal(), want.Marshal())
}

// createOne brings one machine to running and returns its container ID.
// A container an interrupted run left behind is finished with the spec's
// keys, the ones state pins now: copying them is idempotent. One that runs
// already (the daemon completed a start whose caller had died) and serves
// another host key gets the spec's and restarts to serve it.
func (p *Provider) createOne(ctx context.Context, spec providers.MachineSpec, st settings, image, netID string, existing map[providers.MachineID]containerInfo) (string, error) {
	ctx, cancel := withDeadline(ctx)
	defer cancel()
	if ci, ok := existing[spec.ID]; ok {
		running := ci.Status == container.StateRunning
		if running && p.servesHostKey(ctx, ci.ID, spec.HostKey.Public) {
			return ci.ID, nil
		}
		if err := p.inject(ctx, ci.ID, spec); err != nil {
			return "", err
		}
		if running {
			if _, err := p.api.ContainerRestart(ctx, ci.ID, client.ContainerRestartOptions{}); err != nil {
				return "", fmt.Errorf("restart container with its new keys: %w", classify(err, ""))
			}
		} else if err := p.start(ctx, ci.ID); err != nil {
			return "", err
		}
		p.logger.InfoContext(ctx, "machine adopted", "machine", spec.ID, "container", shortID(ci.ID), "restarted", running)
		return ci.ID, nil
	}

	labels := map[string]string{}
	for k, v := range spec.Labels {
		if !strings.HasPrefix(k, "provision.") { // ours are authoritative
			labels[k] = v
		}
	}
	labels[labelCluster] = spec.Cluster
	labels[labelPool] = spec.Pool
	labels[labelMachine] = string(spec.ID)
	labels[labelRole] = string(spec.Role)
	volumes := map[string]struct{}{}
	for _, v := range nodeVolumes {
		volumes[v] = struct{}{}
	}
	opts := func(netID string) client.ContainerCreateOptions {
		return client.ContainerCreateOptions{
			Name: string(spec.ID),
			Config: &container.Config{
				Image:    image,
				Hostname: string(spec.ID),
				Labels:   labels,
				Volumes:  volumes,
			},
			HostConfig:       nodeHostConfig(netID, st),
			NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{netID: {}}},
		}
	}
	res, err := p.api.ContainerCreate(ctx, opts(netID))
	if cerrdefs.IsNotFound(err) && p.networkMissing(ctx, NetworkName(spec.Cluster)) {
		// A concurrent Delete removed the emptied network: recreate it once.
		netID, err = p.ensureNetwork(ctx, spec.Cluster)
		if err != nil {
			return "", err
		}
		res, err = p.api.ContainerCreate(ctx, opts(netID))
	}
	switch {
	case cerrdefs.IsNotFound(err): // the image went away since we looked
		return "", &providers.Error{Kind: providers.ErrInvalidSpec, Cloud: "docker", Pool: spec.Pool, Message: "create container: " + err.Error()}
	case err != nil:
		return "", fmt.Errorf("create container: %w", classify(err, spec.Pool))
	}
	id := res.ID
	if err := p.inject(ctx, id, spec); err != nil {
		return "", err
	}
	if err := p.start(ctx, id); err != nil {
		return "", err
	}
	p.logger.InfoContext(ctx, "machine created", "machine", spec.ID, "container", shortID(id))
	return id, nil
}

func (p *Provider) networkMissing(ctx context.Context, name string) bool {
	nets, err := p.networksNamed(ctx, name)
	return err == nil && len(nets) == 0
}

// inject copies the host key and login keys into the container as a tar
// archive in the request body, so the private key is never in a container's
// config, a log or a host file.
func (p *Provider) inject(ctx context.Context, id string, spec providers.MachineSpec) error {
	archive, err := machineFiles(spec)
	if err != nil {
		return err
	}
	if _, err := p.api.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: "/", Content: archive}); err != nil {
		return fmt.Errorf("copy keys into container: %w", classify(err, spec.Pool))
	}
	return nil
}

func (p *Provider) start(ctx context.Context, id string) error {
	if _, err := p.api.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("start container: %w", classify(err, ""))
	}
	return nil
}

// logsTail returns the last lines a container printed, for an error message.
func (p *Provider) logsTail(ctx context.Context, id string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rc, err := p.api.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: "10"})
	if err != nil {
		return err.Error()
	}
	defer rc.Close()
	var out bytes.Buffer
	// Node containers have no TTY: the stream is multiplexed.
	if _, err := stdcopy.StdCopy(&out, &out, io.LimitReader(rc, 64<<10)); err != nil {
		fmt.Fprintf(&out, " (reading logs: %v)", err)
	}
	return strings.TrimSpace(out.String())
}

// List finds the cluster's containers (of one pool when sel.Pool is set).
func (p *Provider) List(ctx context.Context, sel providers.Selector) ([]providers.Machine, error) {
	if sel.Cluster == "" {
		return nil, fmt.Errorf("%w: list: selector without cluster", providers.ErrInvalidSpec)
	}
	infos, err := p.inspectSelected(ctx, sel)
	if err != nil {
		return nil, err
	}
	out := make([]providers.Machine, 0, len(infos))
	for _, ci := range infos {
		out = append(out, ci.machine())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Delete removes the machines' containers and their volumes, then each
// affected cluster's network once no container of that cluster remains.
func (p *Provider) Delete(ctx context.Context, ids []providers.MachineID) error {
	if len(ids) == 0 {
		return nil
	}
	ctx, cancel := withDeadline(ctx)
	defer cancel()
	// Find containers by our label, never by name alone: a foreign container
	// that happens to share a machine's name must survive.
	found, err := p.api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", labelMachine)})
	if err != nil {
		return fmt.Errorf("delete %d machines: %w", len(ids), classify(err, ""))
	}
	want := map[providers.MachineID]bool{}
	for _, id := range ids {
		want[id] = true
	}
	var containers []string
	clusters := map[string]bool{}
	if p.env.Cluster != "" {
		clusters[p.env.Cluster] = true
	}
	for _, c := range found.Items {
		if want[providers.MachineID(c.Labels[labelMachine])] {
			containers = append(containers, c.ID)
			clusters[c.Labels[labelCluster]] = true
		}
	}
	if len(containers) > 0 {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(createParallelism)
		for _, id := range containers {
			g.Go(func() error {
				_, err := p.api.ContainerRemove(gctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
				if err != nil && !cerrdefs.IsNotFound(err) {
					return fmt.Errorf("remove container %.12s: %w", id, classify(err, ""))
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return fmt.Errorf("delete %d machines: %w", len(containers), err)
		}
		p.logger.InfoContext(ctx, "machines deleted", "count", len(containers))
	}
	var errs []error
	for c := range clusters {
		errs = append(errs, p.removeNetworkIfEmpty(ctx, c))
	}
	return errors.Join(errs...)
}

func (p *Provider) removeNetworkIfEmpty(ctx context.Context, cluster string) error {
	p.netMu.Lock()
	defer p.netMu.Unlock()
	left, err := p.api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", labelCluster+"="+cluster)})
	if err != nil {
		return fmt.Errorf("list cluster %s: %w", cluster, classify(err, ""))
	}
	if len(left.Items) > 0 {
		return nil
	}
	name := NetworkName(cluster)
	nets, err := p.networksNamed(ctx, name) // by ID: a name taken twice is ambiguous
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range nets {
		_, err = p.api.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{})
		switch {
		case err == nil, cerrdefs.IsNotFound(err):
		case cerrdefs.IsPermissionDenied(err), cerrdefs.IsConflict(err):
			// "network has active endpoints": a concurrent Create (perhaps of
			// another process) got there first; it owns the network now.
		default:
			errs = append(errs, fmt.Errorf("remove network %s (%s): %w", name, shortID(n.ID), classify(err, "")))
		}
	}
	return errors.Join(errs...)
}

// containerInfo is the part of a container's list entry or inspection we read.
type containerInfo struct {
	ID     string
	Status container.ContainerState
	Labels map[string]string
	// Addresses by network name.
	Addresses map[string]string
}

func infoOf(id string, status container.ContainerState, labels map[string]string, nets map[string]*network.EndpointSettings) containerInfo {
	ci := containerInfo{ID: id, Status: status, Labels: labels, Addresses: map[string]string{}}
	for name, ep := range nets {
		if ep != nil && ep.IPAddress.IsValid() {
			ci.Addresses[name] = ep.IPAddress.String()
		}
	}
	return ci
}

func (ci containerInfo) machineID() providers.MachineID {
	return providers.MachineID(ci.Labels[labelMachine])
}

func (ci containerInfo) machine() providers.Machine {
	cluster := ci.Labels[labelCluster]
	return providers.Machine{
		ID:         ci.machineID(),
		ProviderID: ci.ID,
		Cluster:    cluster,
		Pool:       ci.Labels[labelPool],
		Address:    ci.Addresses[NetworkName(cluster)],
		Port:       22,
		State:      mapState(ci.Status),
	}
}

// mapState maps docker's container status; a stopped container counts as
// terminated because nothing restarts it but a new Create.
func mapState(s container.ContainerState) providers.MachineState {
	switch s {
	case container.StateRunning, container.StatePaused:
		return providers.StateRunning
	case container.StateCreated, container.StateRestarting:
		return providers.StatePending
	case container.StateRemoving:
		return providers.StateStopping
	default: // exited, dead
		return providers.StateTerminated
	}
}

// inspectSelected lists the containers matching sel; the list entries
// carry everything a Machine needs, so no per-container inspection.
func (p *Provider) inspectSelected(ctx context.Context, sel providers.Selector) ([]containerInfo, error) {
	ctx, cancel := withDeadline(ctx)
	defer cancel()
	f := make(client.Filters).Add("label", labelCluster+"="+sel.Cluster)
	if sel.Pool != "" {
		f.Add("label", labelPool+"="+sel.Pool)
	}
	res, err := p.api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list cluster %s: %w", sel.Cluster, classify(err, ""))
	}
	infos := make([]containerInfo, 0, len(res.Items))
	for _, c := range res.Items {
		var nets map[string]*network.EndpointSettings
		if c.NetworkSettings != nil {
			nets = c.NetworkSettings.Networks
		}
		infos = append(infos, infoOf(c.ID, c.State, c.Labels, nets))
	}
	return infos, nil
}

// inspect reads containers; ones removed meanwhile are skipped.
func (p *Provider) inspect(ctx context.Context, ids []string) ([]containerInfo, error) {
	ctx, cancel := withDeadline(ctx)
	defer cancel()
	var infos []containerInfo
	for _, id := range slices.Compact(slices.Sorted(slices.Values(ids))) {
		res, err := p.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if cerrdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("inspect container %.12s: %w", id, classify(err, ""))
		}
		c := res.Container
		var status container.ContainerState
		if c.State != nil {
			status = c.State.Status
		}
		var labels map[string]string
		if c.Config != nil {
			labels = c.Config.Labels
		}
		var nets map[string]*network.EndpointSettings
		if c.NetworkSettings != nil {
			nets = c.NetworkSettings.Networks
		}
		infos = append(infos, infoOf(c.ID, status, labels, nets))
	}
	return infos, nil
}
