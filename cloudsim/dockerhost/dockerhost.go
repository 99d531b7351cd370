// Package dockerhost backs emulated cloud instances with real local hosts:
// each instance becomes a container of the docker provider, configured from
// the instance's cloud-init user-data (host key, login user, authorized
// keys) the way cloud-init would configure a real VM. Bootstrap and Swarm
// join then run against "cloud" machines for real.
package dockerhost

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/provisionhq/provision/cloudsim"
	"github.com/provisionhq/provision/cloudsim/userdata"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/docker"
)

// Backing starts one container per emulated instance.
type Backing struct {
	hosts   *docker.Provider
	cluster string
}

var _ cloudsim.Backing = (*Backing)(nil)

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
	return &Backing{hosts: p, cluster: group}, nil
}

// Start creates the container for instance id as cloud-init would set up a
// VM from boot (cloudsim/userdata decodes it as cloud-init would), and
// returns its address.
func (b *Backing) Start(ctx context.Context, id string, boot cloudsim.Boot) (string, error) {
	cfg, err := userdata.Decode(boot.UserData, boot.LaunchIndex)
	if err != nil {
		return "", fmt.Errorf("instance %s: %w", id, err)
	}
	hk, err := cfg.HostKey()
	if err != nil {
		return "", fmt.Errorf("instance %s: %w", id, err)
	}
	spec := providers.MachineSpec{ID: providers.MachineID(id), Cluster: b.cluster, Pool: "instances", Role: providers.RoleWorker, HostKey: hk}
	if u, ok := cfg.LoginUser(); ok {
		spec.SSHUser = u.Name
		spec.AuthorizedKeys = u.SSHAuthorizedKeys
	}
	ms, err := b.hosts.Create(ctx, []providers.MachineSpec{spec})
	if err != nil {
		return "", fmt.Errorf("back instance %s with a local host: %w", id, err)
	}
	return ms[0].Address, nil
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
