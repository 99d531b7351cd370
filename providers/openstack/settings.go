package openstack

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/keypairs"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/groups"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/gate"
)

// Settings are an openstack pool's settings in the plan.
type Settings struct {
	Flavor           string   `json:"flavor"`   // name or ID, required
	Image            string   `json:"image"`    // Glance image name or ID, required
	Networks         []string `json:"networks"` // Neutron network names or IDs
	KeyName          string   `json:"key_name"`
	SecurityGroups   []string `json:"security_groups"`
	AvailabilityZone string   `json:"availability_zone"`
	// Region overrides OS_REGION_NAME / the clouds.yaml region for the pool.
	Region string `json:"region"`
	// BatchSize caps the machines per servers.create; 0 means as many as
	// Nova's user_data and metadata limits allow (see batch.go).
	BatchSize int `json:"batch_size"`
}

// CheckSettings checks an openstack pool's settings with no credentials and
// no network: the check `provision validate` and the Pulumi Check run, and
// the one Create runs before any API call. Whether the flavor, image and
// networks exist is only known to the cloud; Create reports that.
func CheckSettings(s providers.Settings) []providers.SettingError {
	_, errs := checkSettings(s)
	return errs
}

func checkSettings(s providers.Settings) (Settings, providers.SettingErrors) {
	var out Settings
	errs := s.Decode(&out)
	if out.Flavor == "" && !errs.Has("flavor") {
		errs.Add("flavor", "the Nova flavor's name or ID, e.g. flavor: m1.small", "required")
	}
	if out.Image == "" && !errs.Has("image") {
		errs.Add("image", "the Glance image's name or ID, e.g. image: debian-12", "required")
	}
	if out.BatchSize < 0 {
		errs.Add("batch_size", "use 0 for as many as fit", "must not be negative, got %d", out.BatchSize)
	}
	for i, n := range out.Networks {
		if n == "" {
			errs.Add(fmt.Sprintf("networks[%d]", i), "a Neutron network's name or ID", "must not be empty")
		}
	}
	return out, errs
}

func decodeSettings(s providers.Settings) (Settings, error) {
	out, errs := checkSettings(s)
	return out, errs.Err("openstack")
}

// resolved are a pool's names turned into IDs.
type resolved struct {
	flavorID   string
	imageID    string
	networkIDs []string
}

// resolve turns flavor, image and network names into IDs and checks that
// the key pair and security groups exist, once per region and name (they
// are cached for the provider's life), so a bad reference fails before any
// server is created, with a message naming it. A name that matches
// nothing, or more than one thing, is ErrInvalidSpec.
func (p *Provider) resolve(ctx context.Context, c *clients, pool string, s Settings) (resolved, error) {
	var r resolved
	var err error
	invalid := func(format string, a ...any) error {
		return &providers.Error{Kind: providers.ErrInvalidSpec, Cloud: "openstack", Location: c.region, Pool: pool, Message: fmt.Sprintf(format, a...)}
	}
	if r.flavorID, err = p.cached(c.region, "flavor", s.Flavor, func() (string, error) {
		var found, names []string
		err := p.call(ctx, c.region, pool, gate.Call{Action: "flavors.list"}, func(ctx context.Context) error {
			found, names = nil, nil
			return flavors.ListDetail(c.compute, nil).EachPage(ctx, func(_ context.Context, pg pagination.Page) (bool, error) {
				fs, err := flavors.ExtractFlavors(pg)
				for _, f := range fs {
					names = append(names, f.Name)
					if f.ID == s.Flavor || f.Name == s.Flavor {
						found = append(found, f.ID)
					}
				}
				return true, err
			})
		})
		if err != nil {
			return "", fmt.Errorf("list flavors: %w", err)
		}
		switch len(found) {
		case 0:
			return "", invalid("flavor %q does not exist (flavors: %s)", s.Flavor, strings.Join(names, ", "))
		case 1:
			return found[0], nil
		}
		return "", invalid("flavor %q is ambiguous: %d flavors have that name; use the ID", s.Flavor, len(found))
	}); err != nil {
		return r, err
	}
	if r.imageID, err = p.cached(c.region, "image", s.Image, func() (string, error) {
		var found []string
		for _, opts := range []images.ListOpts{{Name: s.Image}, {ID: s.Image}} {
			err := p.call(ctx, c.region, pool, gate.Call{Action: "images.list"}, func(ctx context.Context) error {
				found = nil
				return images.List(c.image, opts).EachPage(ctx, func(_ context.Context, pg pagination.Page) (bool, error) {
					is, err := images.ExtractImages(pg)
					for _, im := range is {
						found = append(found, im.ID)
					}
					return true, err
				})
			})
			if err != nil {
				return "", fmt.Errorf("list images: %w", err)
			}
			if len(found) > 0 {
				break
			}
		}
		switch len(found) {
		case 0:
			return "", invalid("image %q does not exist in Glance (no image has that name or ID)", s.Image)
		case 1:
			return found[0], nil
		}
		return "", invalid("image %q is ambiguous: %d images have that name; use the ID", s.Image, len(found))
	}); err != nil {
		return r, err
	}
	for _, n := range s.Networks {
		id, err := p.cached(c.region, "network", n, func() (string, error) {
			var found []string
			for _, opts := range []networks.ListOpts{{Name: n}, {ID: n}} {
				err := p.call(ctx, c.region, pool, gate.Call{Action: "networks.list"}, func(ctx context.Context) error {
					found = nil
					return networks.List(c.network, opts).EachPage(ctx, func(_ context.Context, pg pagination.Page) (bool, error) {
						ns, err := networks.ExtractNetworks(pg)
						for _, nw := range ns {
							found = append(found, nw.ID)
						}
						return true, err
					})
				})
				if err != nil {
					return "", fmt.Errorf("list networks: %w", err)
				}
				if len(found) > 0 {
					break
				}
			}
			switch len(found) {
			case 0:
				return "", invalid("network %q does not exist in Neutron (no network has that name or ID)", n)
			case 1:
				return found[0], nil
			}
			return "", invalid("network %q is ambiguous: %d networks have that name; use the ID", n, len(found))
		})
		if err != nil {
			return r, err
		}
		r.networkIDs = append(r.networkIDs, id)
	}
	if err := p.checkKeyPair(ctx, c, pool, s.KeyName, invalid); err != nil {
		return r, err
	}
	for _, g := range s.SecurityGroups {
		if err := p.checkGroup(ctx, c, pool, g, invalid); err != nil {
			return r, err
		}
	}
	return r, nil
}

// checkKeyPair checks that the key pair exists for the user: Nova would
// refuse the create with "Invalid key_name provided.", naming nothing.
func (p *Provider) checkKeyPair(ctx context.Context, c *clients, pool, name string, invalid func(string, ...any) error) error {
	if name == "" {
		return nil
	}
	_, err := p.cached(c.region, "keypair", name, func() (string, error) {
		err := p.call(ctx, c.region, pool, gate.Call{Action: "keypairs.get"}, func(ctx context.Context) error {
			return keypairs.Get(ctx, c.compute, name, nil).Err
		})
		if errors.Is(err, providers.ErrNotFound) {
			return "", invalid("key pair %q does not exist for this user in Nova (openstack keypair create --public-key FILE %s)", name, name)
		}
		if err != nil {
			return "", fmt.Errorf("get key pair %q: %w", name, err)
		}
		return name, nil
	})
	return err
}

// checkGroup checks that the security group exists in the project, by
// name or ID, as Nova looks it up.
func (p *Provider) checkGroup(ctx context.Context, c *clients, pool, ref string, invalid func(string, ...any) error) error {
	_, err := p.cached(c.region, "security_group", ref, func() (string, error) {
		var found []string
		for _, opts := range []groups.ListOpts{{Name: ref}, {ID: ref}} {
			err := p.call(ctx, c.region, pool, gate.Call{Action: "security-groups.list"}, func(ctx context.Context) error {
				found = nil
				return groups.List(c.network, opts).EachPage(ctx, func(_ context.Context, pg pagination.Page) (bool, error) {
					gs, err := groups.ExtractGroups(pg)
					for _, g := range gs {
						found = append(found, g.ID)
					}
					return true, err
				})
			})
			if err != nil {
				return "", fmt.Errorf("list security groups: %w", err)
			}
			if len(found) > 0 {
				break
			}
		}
		switch len(found) {
		case 0:
			return "", invalid("security group %q does not exist in the project (no group has that name or ID)", ref)
		case 1:
			return found[0], nil
		}
		return "", invalid("security group %q is ambiguous: %d groups have that name; use the ID", ref, len(found))
	})
	return err
}

func (p *Provider) cached(region, kind, name string, look func() (string, error)) (string, error) {
	key := region + "/" + kind + "/" + name
	p.mu.Lock()
	id, ok := p.names[key]
	p.mu.Unlock()
	if ok {
		return id, nil
	}
	id, err := look()
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	p.names[key] = id
	p.mu.Unlock()
	return id, nil
}
