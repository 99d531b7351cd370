// Package docker owns the local provider: machines are Docker containers on
// this host, each with its own IP on a per-cluster bridge network, running
// OpenSSH and able to run a nested dockerd (so bootstrap and a real Swarm are
// exercised for real). It also owns the node image those containers run
// (EnsureImage), built locally with debootstrap because nothing can be
// pulled. It drives the docker CLI through os/exec; there is no Docker SDK
// dependency.
package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

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
// Each machine costs a handful of docker CLI calls against one local dockerd
// on a small shared host; more parallelism only queues inside the daemon.
const createParallelism = 4

// nodeFlags let the container run its own dockerd or a kubelet, as kind's
// nodes do. --privileged is refused by this kernel, so grant every
// capability except SYS_RESOURCE and lift seccomp/apparmor; the image's init
// remounts cgroups and /proc/sys/net rw and shadows the kernel sysctls
// kubelet writes (/proc/sys itself stays read-only: it is the host's kernel).
//   - --cgroupns private: the node sees only its own cgroup subtree, so
//     writable cgroups cannot reach the host's, and nested runtimes nest.
//   - /dev/kmsg: kubelet's OOM watcher reads it.
//   - the device rule: nested containers may create and use device nodes.
//   - /run on tmpfs: runtimes keep sockets and state there that must not
//     survive a restart.
//   - anonymous volumes keep the nested runtimes' and kubelet's storage off
//     overlayfs (overlay on the container's overlay root fails with "invalid
//     argument"); Delete removes them with -v.
var nodeFlags = []string{
	"--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
	"--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
	"--cgroupns", "private",
	"--device", "/dev/kmsg",
	"--device-cgroup-rule", "a *:* rwm",
	"--tmpfs", "/run",
	"-v", "/var/lib/docker",
	"-v", "/var/lib/containerd",
	"-v", "/var/lib/kubelet",
}

// Provider creates machines as local Docker containers.
type Provider struct {
	r      runner
	logger *slog.Logger
	env    providers.Env

	imageMu      sync.Mutex
	defaultImage string // EnsureImage's result, resolved on first use
	netMu        sync.Mutex
}

var _ providers.Provider = (*Provider)(nil)
var _ providers.SettingsValidator = (*Provider)(nil)

// New returns the docker provider. It is cheap: the daemon is first
// contacted, and the node image built if missing, on the first Create.
func New(ctx context.Context, env providers.Env) (*Provider, error) {
	return newProvider(env, execRunner{}), nil
}

func newProvider(env providers.Env, r runner) *Provider {
	logger := env.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Provider{r: r, logger: logger.With("provider", "docker"), env: env}
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

// ValidateSettings checks a docker pool's settings without touching docker.
func (p *Provider) ValidateSettings(s providers.Settings) error {
	_, err := decodeSettings(s)
	return err
}

func decodeSettings(s providers.Settings) (settings, error) {
	var st settings
	if err := s.Decode(&st); err != nil {
		return st, err
	}
	if st.CPUs < 0 {
		return st, fmt.Errorf("%w: docker settings: cpus must be positive, got %v", providers.ErrInvalidSpec, st.CPUs)
	}
	if st.Memory != "" && !memoryRe.MatchString(st.Memory) {
		return st, fmt.Errorf("%w: docker settings: memory %q is not a size like 512m or 2g", providers.ErrInvalidSpec, st.Memory)
	}
	if st.Image != "" && strings.ContainsAny(st.Image, " \t\n") {
		return st, fmt.Errorf("%w: docker settings: image %q is not an image reference", providers.ErrInvalidSpec, st.Image)
	}
	return st, nil
}

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
	for c := range clusters {
		if err := p.ensureNetwork(ctx, c); err != nil {
			return nil, err
		}
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
			id, err := p.createOne(gctx, spec, parsed[i], images[i], existing)
			if err != nil {
				return fmt.Errorf("machine %s: %w", spec.ID, err)
			}
			ids[i] = id
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
				spec.ID, ci.ID, ci.State.Status, m.Address, p.logsTail(ctx, ci.ID))
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
			img, err := ensureImage(ctx, p.r, p.logger)
			if err != nil {
				return "", err
			}
			p.defaultImage = img
		}
		return p.defaultImage, nil
	}
	ok, err := imageExists(ctx, p.r, ref)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", &providers.Error{Kind: providers.ErrInvalidSpec, Cloud: "docker", Pool: pool,
			Message: fmt.Sprintf("image %q is not present locally and cannot be pulled here (leave image unset for the built-in node image)", ref)}
	}
	return ref, nil
}

// ensureNetwork creates the cluster's bridge network if it is missing.
func (p *Provider) ensureNetwork(ctx context.Context, cluster string) error {
	p.netMu.Lock()
	defer p.netMu.Unlock()
	name := NetworkName(cluster)
	_, err := p.r.run(ctx, nil, "docker", "network", "inspect", "--format", "{{.Id}}", name)
	if err == nil {
		return nil
	}
	if !isNoSuch(err) {
		return fmt.Errorf("inspect network %s: %w", name, classify(err, ""))
	}
	_, err = p.r.run(ctx, nil, "docker", "network", "create", "--driver", "bridge", "--label", labelCluster+"="+cluster, name)
	if err != nil && !strings.Contains(stderrOf(err), "already exists") {
		return fmt.Errorf("create network %s: %w", name, classify(err, ""))
	}
	p.logger.DebugContext(ctx, "network ready", "network", name)
	return nil
}

// createOne brings one machine to running and returns its container ID.
// A container that was created but never started (a crash mid-create) gets
// its files again before it starts: copying them is idempotent.
func (p *Provider) createOne(ctx context.Context, spec providers.MachineSpec, st settings, image string, existing map[providers.MachineID]containerInfo) (string, error) {
	if ci, ok := existing[spec.ID]; ok {
		switch ci.State.Status {
		case "running":
			return ci.ID, nil
		case "created":
			if err := p.inject(ctx, ci.ID, spec); err != nil {
				return "", err
			}
		}
		if err := p.start(ctx, ci.ID); err != nil {
			return "", err
		}
		p.logger.InfoContext(ctx, "machine adopted", "machine", spec.ID, "container", ci.ID[:12])
		return ci.ID, nil
	}

	args := []string{"create", "--name", string(spec.ID), "--hostname", string(spec.ID),
		"--network", NetworkName(spec.Cluster),
		"--label", labelCluster + "=" + spec.Cluster,
		"--label", labelPool + "=" + spec.Pool,
		"--label", labelMachine + "=" + string(spec.ID),
		"--label", labelRole + "=" + string(spec.Role),
	}
	keys := make([]string, 0, len(spec.Labels))
	for k := range spec.Labels {
		if !strings.HasPrefix(k, "provision.") { // ours are authoritative
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "--label", k+"="+spec.Labels[k])
	}
	if st.CPUs > 0 {
		args = append(args, "--cpus", strconv.FormatFloat(st.CPUs, 'f', -1, 64))
	}
	if st.Memory != "" {
		args = append(args, "--memory", st.Memory)
	}
	args = append(args, nodeFlags...)
	args = append(args, image)
	out, err := p.r.run(ctx, nil, "docker", args...)
	if err != nil && strings.Contains(stderrOf(err), "network") && isNoSuch(err) {
		// A concurrent Delete removed the emptied network: recreate it once.
		if nerr := p.ensureNetwork(ctx, spec.Cluster); nerr != nil {
			return "", nerr
		}
		out, err = p.r.run(ctx, nil, "docker", args...)
	}
	if err != nil {
		return "", fmt.Errorf("docker create: %w", classify(err, spec.Pool))
	}
	id := strings.TrimSpace(string(out))
	if err := p.inject(ctx, id, spec); err != nil {
		return "", err
	}
	if err := p.start(ctx, id); err != nil {
		return "", err
	}
	p.logger.InfoContext(ctx, "machine created", "machine", spec.ID, "container", id[:min(12, len(id))])
	return id, nil
}

// inject copies the host key and login keys into the container as a tar
// stream on stdin, so the private key is never in argv, a log or a host file.
func (p *Provider) inject(ctx context.Context, id string, spec providers.MachineSpec) error {
	archive, err := machineFiles(spec)
	if err != nil {
		return err
	}
	if _, err := p.r.run(ctx, archive, "docker", "cp", "-", id+":/"); err != nil {
		return fmt.Errorf("copy keys into container: %w", classify(err, spec.Pool))
	}
	return nil
}

func (p *Provider) start(ctx context.Context, id string) error {
	if _, err := p.r.run(ctx, nil, "docker", "start", id); err != nil {
		return fmt.Errorf("docker start: %w", classify(err, ""))
	}
	return nil
}

func (p *Provider) logsTail(ctx context.Context, id string) string {
	out, err := p.r.run(ctx, nil, "docker", "logs", "--tail", "10", id)
	if err != nil {
		return stderrOf(err)
	}
	return strings.TrimSpace(string(out))
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
	// Find containers by our label, never by name alone: a foreign container
	// that happens to share a machine's name must survive.
	out, err := p.r.run(ctx, nil, "docker", "ps", "-a", "--no-trunc",
		"--filter", "label="+labelMachine,
		"--format", `{{.ID}} {{.Label "`+labelMachine+`"}} {{.Label "`+labelCluster+`"}}`)
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
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && want[providers.MachineID(f[1])] {
			containers = append(containers, f[0])
			clusters[f[2]] = true
		}
	}
	if len(containers) > 0 {
		if _, err := p.r.run(ctx, nil, "docker", append([]string{"rm", "-f", "-v"}, containers...)...); err != nil && !isNoSuch(err) {
			return fmt.Errorf("delete %d machines: %w", len(containers), classify(err, ""))
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
	out, err := p.r.run(ctx, nil, "docker", "ps", "-a", "-q", "--filter", "label="+labelCluster+"="+cluster)
	if err != nil {
		return fmt.Errorf("list cluster %s: %w", cluster, classify(err, ""))
	}
	if strings.TrimSpace(string(out)) != "" {
		return nil
	}
	name := NetworkName(cluster)
	_, err = p.r.run(ctx, nil, "docker", "network", "rm", name)
	switch {
	case err == nil, isNoSuch(err):
		return nil
	case strings.Contains(stderrOf(err), "active endpoints"):
		return nil // a concurrent Create got there first; it owns the network now
	default:
		return fmt.Errorf("remove network %s: %w", name, classify(err, ""))
	}
}

// containerInfo is the part of `docker inspect` we read.
type containerInfo struct {
	ID    string `json:"Id"`
	State struct {
		Status string `json:"Status"`
	} `json:"State"`
	Config struct {
		Labels map[string]string `json:"Labels"`
	} `json:"Config"`
	NetworkSettings struct {
		Networks map[string]struct {
			IPAddress string `json:"IPAddress"`
		} `json:"Networks"`
	} `json:"NetworkSettings"`
}

func (ci containerInfo) machineID() providers.MachineID {
	return providers.MachineID(ci.Config.Labels[labelMachine])
}

func (ci containerInfo) machine() providers.Machine {
	cluster := ci.Config.Labels[labelCluster]
	return providers.Machine{
		ID:         ci.machineID(),
		ProviderID: ci.ID,
		Cluster:    cluster,
		Pool:       ci.Config.Labels[labelPool],
		Address:    ci.NetworkSettings.Networks[NetworkName(cluster)].IPAddress,
		Port:       22,
		State:      mapState(ci.State.Status),
	}
}

// mapState maps docker's container status; a stopped container counts as
// terminated because nothing restarts it but a new Create.
func mapState(s string) providers.MachineState {
	switch s {
	case "running", "paused":
		return providers.StateRunning
	case "created", "restarting":
		return providers.StatePending
	case "removing":
		return providers.StateStopping
	default: // exited, dead
		return providers.StateTerminated
	}
}

// inspectSelected lists the containers matching sel and inspects them.
func (p *Provider) inspectSelected(ctx context.Context, sel providers.Selector) ([]containerInfo, error) {
	args := []string{"ps", "-a", "-q", "--no-trunc", "--filter", "label=" + labelCluster + "=" + sel.Cluster}
	if sel.Pool != "" {
		args = append(args, "--filter", "label="+labelPool+"="+sel.Pool)
	}
	out, err := p.r.run(ctx, nil, "docker", args...)
	if err != nil {
		return nil, fmt.Errorf("list cluster %s: %w", sel.Cluster, classify(err, ""))
	}
	ids := strings.Fields(string(out))
	infos, err := p.inspect(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("list cluster %s: %w", sel.Cluster, err)
	}
	return infos, nil
}

// inspect reads containers in one call; ones removed meanwhile are skipped.
func (p *Provider) inspect(ctx context.Context, ids []string) ([]containerInfo, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	out, err := p.r.run(ctx, nil, "docker", append([]string{"container", "inspect"}, slices.Compact(slices.Sorted(slices.Values(ids)))...)...)
	if err != nil && !isNoSuch(err) {
		return nil, fmt.Errorf("inspect containers: %w", classify(err, ""))
	}
	var infos []containerInfo
	if len(strings.TrimSpace(string(out))) > 0 {
		if err := json.Unmarshal(out, &infos); err != nil {
			return nil, fmt.Errorf("inspect containers: decode: %w", err)
		}
	}
	return infos, nil
}
