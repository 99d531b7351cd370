// Package dockerhost backs emulated cloud instances with real local hosts:
// each instance becomes a container of the docker provider, configured from
// the instance's cloud-init user-data (host key, login user, authorized
// keys) the way cloud-init would configure a real VM. Bootstrap and Swarm
// join then run against "cloud" machines for real.
package dockerhost

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/provisionhq/provision/cloudsim"
	"github.com/provisionhq/provision/cloudsim/userdata"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/docker"
	"github.com/provisionhq/provision/providers/hostkey"
)

// Backing starts one container per emulated instance.
type Backing struct {
	hosts   *docker.Provider
	api     *client.Client
	cluster string
}

var (
	_ cloudsim.Backing = (*Backing)(nil)
	_ cloudsim.Power   = (*Backing)(nil)
)

// New returns a backing whose containers share the docker network of
// group (one network for every emulated cloud, so their machines reach each
// other as a real multi-cloud VPN would let them).
func New(ctx context.Context, group string, logger *slog.Logger) (*Backing, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p, err := docker.New(ctx, providers.Env{Cluster: group, Logger: logger})
	if err != nil {
		return nil, err
	}
	api, err := docker.NewClient()
	if err != nil {
		return nil, err
	}
	return &Backing{hosts: p, api: api, cluster: group}, nil
}

// Start creates the container for instance id as cloud-init would set up a
// VM from boot (cloudsim/userdata decodes it as cloud-init would), and
// returns its address.
func (b *Backing) Start(ctx context.Context, id string, boot cloudsim.Boot) (string, error) {
	spec, err := hostSpec(id, b.cluster, boot)
	if err != nil {
		return "", fmt.Errorf("instance %s: %w", id, err)
	}
	ms, err := b.hosts.Create(ctx, []providers.MachineSpec{spec})
	if err != nil {
		return "", fmt.Errorf("back instance %s with a local host: %w", id, err)
	}
	return ms[0].Address, nil
}

// hostSpec is what the guest makes of its boot data. Without user-data, or
// without ssh_keys in it, the image generates its own host key, as sshd's
// first start does on a cloud image. The cloud's own login keys (key pair,
// ssh-keys metadata) go to the user-data's login user when it names one
// (cloud-init adds them to the default user, which provision's user-data
// replaces) and otherwise to boot.KeyUser, who may get none.
func hostSpec(id, cluster string, boot cloudsim.Boot) (providers.MachineSpec, error) {
	cfg, err := userdata.Decode(boot.UserData, boot.LaunchIndex)
	if err != nil {
		return providers.MachineSpec{}, err
	}
	var hk hostkey.Key
	if len(cfg.SSHKeys) == 0 {
		if hk, err = hostkey.Generate(); err != nil {
			return providers.MachineSpec{}, err
		}
	} else if hk, err = cfg.HostKey(); err != nil {
		return providers.MachineSpec{}, err
	}
	spec := providers.MachineSpec{ID: providers.MachineID(id), Cluster: cluster, Pool: "instances", Role: providers.RoleWorker, HostKey: hk}
	if u, ok := cfg.LoginUser(); ok {
		spec.SSHUser = u.Name
		spec.AuthorizedKeys = append(slices.Clone(u.SSHAuthorizedKeys), boot.PublicKeys...)
	} else {
		// With no key pair either, the image's default user has no key:
		// the cloud still boots it (nobody can log in), as EC2 does.
		spec.SSHUser = cmp.Or(boot.KeyUser, cloudsim.DefaultUser)
		spec.AuthorizedKeys = slices.Clone(boot.PublicKeys)
	}
	return spec, nil
}

// PowerOff stops the instance's container with its disk kept, as
// StopInstances does to a VM.
func (b *Backing) PowerOff(ctx context.Context, id string) error {
	if _, err := b.api.ContainerStop(ctx, id, client.ContainerStopOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("stop instance %s: %w", id, err)
	}
	return nil
}

// PowerOn starts the stopped container again and reads its new address.
func (b *Backing) PowerOn(ctx context.Context, id string) (string, error) {
	if _, err := b.api.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return "", fmt.Errorf("start instance %s: %w", id, err)
	}
	res, err := b.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return "", fmt.Errorf("inspect instance %s: %w", id, err)
	}
	if res.Container.NetworkSettings != nil {
		if ep := res.Container.NetworkSettings.Networks[docker.NetworkName(b.cluster)]; ep != nil && ep.IPAddress.IsValid() {
			return ep.IPAddress.String(), nil
		}
	}
	return "", fmt.Errorf("instance %s started without an address", id)
}

// Stop removes the instance's container; one already gone is a success.
func (b *Backing) Stop(ctx context.Context, id string) error {
	return b.hosts.Delete(ctx, []providers.MachineID{providers.MachineID(id)})
}

// StopAll removes every container of the group (cloudsim's shutdown).
func (b *Backing) StopAll(ctx context.Context) error {
	ms, err := b.hosts.List(ctx, providers.Selector{Cluster: b.cluster})
	if err != nil {
		return err
	}
	ids := make([]providers.MachineID, 0, len(ms))
	for _, m := range ms {
		ids = append(ids, m.ID)
	}
	return b.hosts.Delete(ctx, ids)
}
