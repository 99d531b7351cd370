package openstack

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/pagination"
	"golang.org/x/sync/errgroup"

	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/cloudinit"
	"github.com/provisionhq/provision/providers/gate"
)

// group is the specs of one pool (one settings set) in one region.
type group struct {
	pool     string
	settings Settings
	specs    []int // indexes into the Create batch
}

// Create makes the machines that have no server yet and returns every
// machine, in spec order, once each is ACTIVE with an address. On failure
// it returns the machines that did come up together with the error.
func (p *Provider) Create(ctx context.Context, specs []providers.MachineSpec) ([]providers.Machine, error) {
	ctx, cancel := withDeadline(ctx)
	defer cancel()

	// Validate everything before any API call.
	groups := map[string]*group{}
	var order []string
	userData := make([][]byte, len(specs))
	for i, spec := range specs {
		s, err := decodeSettings(spec.Settings)
		if err != nil {
			return nil, fmt.Errorf("machine %s in pool %q: %w", spec.ID, spec.Pool, err)
		}
		if spec.ID == "" || spec.Cluster == "" || spec.Pool == "" {
			return nil, fmt.Errorf("%w: machine %q needs an ID, cluster and pool", providers.ErrInvalidSpec, spec.ID)
		}
		if err := validMachineID(spec.ID); err != nil {
			return nil, err
		}
		if userData[i], err = cloudinit.UserData(spec); err != nil {
			return nil, err
		}
		key, _ := json.Marshal(struct {
			Pool string
			S    Settings
		}{spec.Pool, s})
		g, ok := groups[string(key)]
		if !ok {
			g = &group{pool: spec.Pool, settings: s}
			groups[string(key)] = g
			order = append(order, string(key))
		}
		g.specs = append(g.specs, i)
	}

	results := make([]*providers.Machine, len(specs))
	errs := make([]error, len(specs))
	// Groups by region: one reconcile list per region and cluster.
	byRegion := map[string][]*group{}
	var regions []string
	for _, k := range order {
		g := groups[k]
		c, err := p.clientsFor(ctx, g.settings.Region)
		var nf *gophercloud.ErrEndpointNotFound
		if errors.As(err, &nf) {
			return nil, &providers.Error{Kind: providers.ErrInvalidSpec, Cloud: "openstack", Location: g.settings.Region,
				Pool: g.pool, Message: "the catalog has no compute, image or network endpoint in this region"}
		}
		if err != nil {
			return nil, err
		}
		if _, ok := byRegion[c.region]; !ok {
			regions = append(regions, c.region)
		}
		byRegion[c.region] = append(byRegion[c.region], g)
	}
	for _, region := range regions {
		c, _ := p.clientsFor(ctx, region)
		p.mu.Lock()
		p.regions[region] = true
		p.mu.Unlock()
		p.createInRegion(ctx, c, specs, userData, byRegion[region], results, errs)
	}

	var out []providers.Machine
	for _, m := range results {
		if m != nil {
			out = append(out, *m)
		}
	}
	return out, joinDistinct(errs)
}

// createInRegion reconciles, creates and waits for the groups of one region.
func (p *Provider) createInRegion(ctx context.Context, c *clients, specs []providers.MachineSpec, userData [][]byte,
	groups []*group, results []*providers.Machine, errs []error) {
	// One list of every provision server in the region (a batch may in
	// principle span clusters), keyed by cluster and machine.
	existing, err := p.listServers(ctx, c, "", "", false)
	if err != nil {
		for _, g := range groups {
			for _, i := range g.specs {
				errs[i] = fmt.Errorf("list servers in %s: %w", c.region, err)
			}
		}
		return
	}
	have := map[key]servers.Server{}
	for _, s := range existing {
		if gone(s) {
			continue
		}
		have[key{s.Metadata[metaCluster], machineOf(s)}] = s
	}

	// waitFor maps a machine to the spec it is for: a batch create returns
	// only its first server, so servers are matched by machine, not ID.
	var mu sync.Mutex
	waitFor := map[key]int{}
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(createConcurrency)
	for _, g := range groups {
		res, err := p.resolve(ctx, c, g.pool, g.settings)
		if err != nil {
			for _, i := range g.specs {
				errs[i] = err
			}
			continue
		}
		var missing []int
		for _, i := range g.specs {
			spec := specs[i]
			if s, ok := have[key{spec.Cluster, string(spec.ID)}]; ok {
				p.log.Debug("machine exists", "machine", spec.ID, "server", s.ID)
				waitFor[key{spec.Cluster, string(spec.ID)}] = i
				continue
			}
			missing = append(missing, i)
		}
		// One servers.create per chunk: the pool's missing machines, as
		// a smaller batch when some already exist.
		chs, err := chunks(specs, missing, userData, g.settings.BatchSize)
		if err != nil {
			for _, i := range missing {
				errs[i] = err
			}
			continue
		}
		done := func(idx []int) {
			mu.Lock()
			defer mu.Unlock()
			for _, i := range idx {
				waitFor[key{specs[i].Cluster, string(specs[i].ID)}] = i
			}
		}
		failed := func(idx []int, err error) {
			mu.Lock()
			defer mu.Unlock()
			for _, i := range idx {
				errs[i] = err // the other machines go on
			}
		}
		for _, ch := range chs {
			eg.Go(func() error {
				p.createChunk(ectx, c, specs, g.settings, res, ch, userData, done, failed)
				return nil
			})
		}
	}
	_ = eg.Wait() // every goroutine returns nil; failures are in errs
	if len(waitFor) == 0 {
		return
	}
	p.wait(ctx, c, specs, waitFor, results, errs)
}

// key identifies a machine across clusters.
type key struct{ cluster, machine string }

// gone reports whether a server is deleted or being deleted: it does not
// count as the machine's server.
func gone(s servers.Server) bool {
	return s.TaskState == "deleting" || s.Status == "DELETED" || s.Status == "SOFT_DELETED"
}

// createServers makes one servers.create for a chunk: a chunk of one is
// a plain create named after its machine with its own user-data; a bigger
// one is a multi-create (see batch.go).
func (p *Provider) createServers(ctx context.Context, c *clients, specs []providers.MachineSpec, s Settings, res resolved, ch chunk) error {
	spec0 := specs[ch.specs[0]]
	opts := servers.CreateOpts{
		Name:      string(spec0.ID),
		FlavorRef: res.flavorID,
		ImageRef:  res.imageID,
		// Encoded here so gophercloud passes it through as is.
		UserData:         []byte(base64.StdEncoding.EncodeToString(ch.userData)),
		AvailabilityZone: s.AvailabilityZone,
		SecurityGroups:   s.SecurityGroups,
		Metadata: map[string]string{
			metaCluster: spec0.Cluster, metaPool: spec0.Pool, metaRole: string(spec0.Role),
		},
	}
	ids := make([]string, len(ch.specs))
	for k, i := range ch.specs {
		ids[k] = string(specs[i].ID)
	}
	if len(ch.specs) == 1 {
		opts.Metadata[metaMachine] = string(spec0.ID)
	} else {
		opts.Name = batchName(spec0.Cluster, spec0.Pool, ids)
		opts.Min, opts.Max = len(ch.specs), len(ch.specs)
		opts.Metadata[metaBatch] = opts.Name
		for k, v := range manifestMeta(ids) {
			opts.Metadata[k] = v
		}
	}
	if len(res.networkIDs) > 0 {
		nets := make([]servers.Network, 0, len(res.networkIDs))
		for _, id := range res.networkIDs {
			nets = append(nets, servers.Network{UUID: id})
		}
		opts.Networks = nets
	}
	var create servers.CreateOptsBuilder = opts
	if s.KeyName != "" {
		create = keyNameOpts{opts, s.KeyName}
	}
	var id string
	err := p.call(ctx, c.region, spec0.Pool, gate.Call{Action: actionCreate}, func(ctx context.Context) error {
		srv, err := servers.Create(ctx, c.compute, create, nil).Extract()
		if err != nil {
			return err
		}
		id = srv.ID
		return nil
	})
	if err != nil {
		if len(ids) == 1 {
			return fmt.Errorf("create server for machine %s: %w", spec0.ID, err)
		}
		return fmt.Errorf("create %d servers (batch %s, machines %s..%s): %w", len(ids), opts.Name, ids[0], ids[len(ids)-1], err)
	}
	p.log.Info("servers created", "machines", ids, "first_server", id, "name", opts.Name, "region", c.region, "pool", spec0.Pool)
	return nil
}

// keyNameOpts adds key_name, which gophercloud keeps in its keypairs
// extension; the request body is the same.
type keyNameOpts struct {
	servers.CreateOpts
	keyName string
}

func (o keyNameOpts) ToServerCreateMap() (map[string]any, error) {
	b, err := o.CreateOpts.ToServerCreateMap()
	if err != nil {
		return nil, err
	}
	b["server"].(map[string]any)["key_name"] = o.keyName
	return b, nil
}

// wait polls until every machine in waitFor has an ACTIVE server with an
// address (or ERROR, or ctx ends): one paginated list per round for all of
// them. A new server missing from the list is not visible yet and is
// waited for.
func (p *Provider) wait(ctx context.Context, c *clients, specs []providers.MachineSpec,
	waitFor map[key]int, results []*providers.Machine, errs []error) {
	t := time.NewTicker(p.cfg.poll)
	defer t.Stop()
	var last error
	for len(waitFor) > 0 {
		all, err := p.listServers(ctx, c, "", "", true)
		last = err
		if err == nil {
			for _, s := range all {
				k := key{s.Metadata[metaCluster], machineOf(s)}
				i, ok := waitFor[k]
				if !ok || gone(s) {
					continue
				}
				switch {
				case s.Status == "ERROR":
					delete(waitFor, k)
					errs[i] = p.serverFailed(ctx, c, specs[i].Pool, s)
				case s.Status == "ACTIVE":
					m := p.machine(ctx, c, s)
					if m.Address == "" {
						continue // no port yet
					}
					delete(waitFor, k)
					results[i] = &m
					providers.Running(ctx, m)
				}
			}
		}
		if len(waitFor) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			for k, i := range waitFor {
				errs[i] = fmt.Errorf("wait for the server of machine %s to be ACTIVE: %w (last list error: %v)", k.machine, ctx.Err(), last)
			}
			return
		case <-t.C:
		}
	}
}

// serverFailed deletes a server that went to ERROR, so nothing leaks, and
// reports why it failed: a scheduling failure is ErrCapacity.
func (p *Provider) serverFailed(ctx context.Context, c *clients, pool string, s servers.Server) error {
	if err := p.deleteServer(ctx, c, pool, s.ID); err != nil {
		p.log.Warn("delete failed server", "server", s.ID, "err", err)
	}
	if noValidHost.MatchString(s.Fault.Message) {
		return &providers.Error{Kind: providers.ErrCapacity, Cloud: "openstack", Location: c.region, Pool: pool,
			Code: "NoValidHost", Message: s.Fault.Message}
	}
	return fmt.Errorf("server %s (machine %s) went to ERROR: %s", s.ID, machineOf(s), s.Fault.Message)
}

// listServers lists the servers of cluster (and pool, when set) in c's
// region. Nova has no server-side metadata filter, so it pages through the
// project's servers and filters on provision's metadata here. poll says
// the caller polls (gate.Call.Poll): a throttled or failed list is
// returned, for its next poll to retry.
func (p *Provider) listServers(ctx context.Context, c *clients, cluster, pool string, poll bool) ([]servers.Server, error) {
	var out []servers.Server
	err := p.call(ctx, c.region, pool, gate.Call{Action: "servers.list", Poll: poll}, func(ctx context.Context) error {
		out = out[:0]
		return servers.List(c.compute, servers.ListOpts{Limit: pageSize}).EachPage(ctx, func(_ context.Context, pg pagination.Page) (bool, error) {
			ss, err := servers.ExtractServers(pg)
			if err != nil {
				return false, err
			}
			for _, s := range ss {
				if machineOf(s) == "" || (cluster != "" && s.Metadata[metaCluster] != cluster) ||
					(pool != "" && s.Metadata[metaPool] != pool) {
					continue
				}
				out = append(out, s)
			}
			return true, nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// machine converts a server; it asks Neutron for the address when Nova's
// record has none yet.
func (p *Provider) machine(ctx context.Context, c *clients, s servers.Server) providers.Machine {
	m := providers.Machine{
		ID: providers.MachineID(machineOf(s)), ProviderID: s.ID,
		Cluster: s.Metadata[metaCluster], Pool: s.Metadata[metaPool], State: state(s),
	}
	m.Address, m.PrivateAddress = addresses(s.Addresses)
	if m.Address == "" && s.Status == "ACTIVE" {
		m.Address = p.portAddress(ctx, c, s.ID)
	}
	if m.PrivateAddress == m.Address {
		m.PrivateAddress = ""
	}
	return m
}

func (p *Provider) portAddress(ctx context.Context, c *clients, serverID string) string {
	var addr string
	err := p.call(ctx, c.region, "", gate.Call{Action: "ports.list"}, func(ctx context.Context) error {
		return ports.List(c.network, ports.ListOpts{DeviceID: serverID}).EachPage(ctx, func(_ context.Context, pg pagination.Page) (bool, error) {
			ps, err := ports.ExtractPorts(pg)
			for _, pt := range ps {
				for _, ip := range pt.FixedIPs {
					if net.ParseIP(ip.IPAddress).To4() != nil && addr == "" {
						addr = ip.IPAddress
					}
				}
			}
			return addr == "", err
		})
	})
	if err != nil {
		p.log.Debug("ports of server", "server", serverID, "err", err)
	}
	return addr
}

// addresses picks the SSH address (a floating IPv4 first, else a fixed
// IPv4) and the private one (a fixed IPv4) from Nova's addresses, in a
// stable order so Create and List agree.
func addresses(all map[string]any) (public, private string) {
	nets := make([]string, 0, len(all))
	for n := range all {
		nets = append(nets, n)
	}
	sort.Strings(nets)
	for _, n := range nets {
		list, _ := all[n].([]any)
		for _, a := range list {
			e, _ := a.(map[string]any)
			addr, _ := e["addr"].(string)
			kind, _ := e["OS-EXT-IPS:type"].(string)
			if ip := net.ParseIP(addr); ip == nil || ip.To4() == nil {
				continue
			}
			if kind == "floating" && public == "" {
				public = addr
			}
			if kind != "floating" && private == "" {
				private = addr
			}
		}
	}
	if public == "" {
		public = private
	}
	return public, private
}

func state(s servers.Server) providers.MachineState {
	switch {
	case s.Status == "DELETED" || s.Status == "SOFT_DELETED":
		return providers.StateTerminated
	case s.TaskState == "deleting" || s.Status == "SHUTOFF" || s.Status == "ERROR":
		return providers.StateStopping
	case s.Status == "ACTIVE":
		return providers.StateRunning
	}
	return providers.StatePending
}

// List finds the machines of sel.Cluster (and sel.Pool) in the default
// region and every region this provider has created in.
func (p *Provider) List(ctx context.Context, sel providers.Selector) ([]providers.Machine, error) {
	if sel.Cluster == "" {
		return nil, fmt.Errorf("%w: list needs a cluster", providers.ErrInvalidSpec)
	}
	var out []providers.Machine
	for _, region := range p.knownRegions() {
		c, err := p.clientsFor(ctx, region)
		if err != nil {
			return nil, err
		}
		ss, err := p.listServers(ctx, c, sel.Cluster, sel.Pool, false)
		if err != nil {
			return nil, fmt.Errorf("list machines of cluster %q in %s: %w", sel.Cluster, region, err)
		}
		for _, s := range ss {
			if state(s) == providers.StateTerminated {
				continue
			}
			out = append(out, p.machine(ctx, c, s))
		}
	}
	return out, nil
}

func (p *Provider) knownRegions() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	set := map[string]bool{p.cfg.endpoint.Region: true}
	for r := range p.regions {
		set[r] = true
	}
	out := make([]string, 0, len(set))
	for r := range set {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// Delete removes the servers of the given machines (of this provider's
// cluster, when it has one) and waits until they are gone. A machine with
// no server, or a server that is already gone, is a success.
func (p *Provider) Delete(ctx context.Context, ids []providers.MachineID) error {
	ctx, cancel := withDeadline(ctx)
	defer cancel()
	want := map[string]bool{}
	for _, id := range ids {
		want[string(id)] = true
	}
	var errs []error
	for _, region := range p.knownRegions() {
		c, err := p.clientsFor(ctx, region)
		if err != nil {
			return err
		}
		if err := p.deleteInRegion(ctx, c, want); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (p *Provider) deleteInRegion(ctx context.Context, c *clients, want map[string]bool) error {
	find := func(poll bool) ([]servers.Server, error) {
		all, err := p.listServers(ctx, c, p.cluster, "", poll)
		if err != nil {
			return nil, fmt.Errorf("list servers in %s: %w", c.region, err)
		}
		var out []servers.Server
		for _, s := range all {
			if want[machineOf(s)] {
				out = append(out, s)
			}
		}
		return out, nil
	}
	victims, err := find(false)
	if err != nil {
		return err
	}
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(deleteConcurrency)
	for _, s := range victims {
		if s.TaskState == "deleting" {
			continue
		}
		eg.Go(func() error {
			if err := p.deleteServer(ectx, c, s.Metadata[metaPool], s.ID); err != nil {
				return fmt.Errorf("delete server %s (machine %s): %w", s.ID, machineOf(s), err)
			}
			p.log.Info("server deleted", "machine", machineOf(s), "server", s.ID, "region", c.region)
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return err
	}
	// Wait until they are gone from the list: one list a poll, for all of
	// them; a throttled or failed list is only a poll.
	t := time.NewTicker(p.cfg.poll)
	defer t.Stop()
	for len(victims) > 0 {
		left, err := find(true)
		switch {
		case gate.Transient(err):
		case err != nil:
			return err
		case len(left) == 0:
			return nil
		default:
			victims = left
		}
		select {
		case <-ctx.Done():
			names := make([]string, 0, len(victims))
			for _, s := range victims {
				names = append(names, machineOf(s))
			}
			return fmt.Errorf("wait for servers of %s to be gone: %w", strings.Join(names, ", "), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// deleteServer deletes one server; a 404 means it is already gone.
func (p *Provider) deleteServer(ctx context.Context, c *clients, pool, id string) error {
	err := p.call(ctx, c.region, pool, gate.Call{Action: "servers.delete"}, func(ctx context.Context) error {
		return servers.Delete(ctx, c.compute, id).ExtractErr()
	})
	if errors.Is(err, providers.ErrNotFound) {
		return nil
	}
	return err
}

// joinDistinct joins the errors, keeping one per pool, kind and code so a
// pool that hit its quota reports it in one line, not once per machine.
func joinDistinct(errs []error) error {
	seen := map[string]bool{}
	var out []error
	for _, err := range errs {
		if err == nil {
			continue
		}
		key := err.Error()
		var pe *providers.Error
		if errors.As(err, &pe) {
			key = fmt.Sprintf("%s|%s|%v|%s", pe.Location, pe.Pool, pe.Kind, pe.Code)
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, err)
	}
	if len(out) == 1 {
		return out[0]
	}
	return errors.Join(out...)
}
