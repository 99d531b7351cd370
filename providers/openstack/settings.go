package openstack

import (
	"context"
	"fmt"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"github.com/provisionhq/provision/providers"
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

// resolve turns flavor, image and network names into IDs, once per region
// and name (they are cached for the provider's life). A name that matches
// nothing, or more than one image, is ErrInvalidSpec.
func (p *Provider) resolve(ctx context.Context, c *clients, pool string, s Settings) (resolved, error) {
	var r resolved
	var err error
	invalid := func(format string, a ...any) error {
		return &providers.Error{Kind: providers.ErrInvalidSpec, Cloud: "openstack", Location: c.region, Pool: pool, Message: fmt.Sprintf(format, a...)}
	}
	if r.flavorID, err = p.cached(c.region, "flavor", s.Flavor, func() (string, error) {
		var found []string
		err := p.call(ctx, c.region, pool, false, func(ctx context.Context) error {
			found = nil
			return flavors.ListDetail(c.compute, nil).EachPage(ctx, func(_ context.Context, pg pagination.Page) (bool, error) {
				fs, err := flavors.ExtractFlavors(pg)
				for _, f := range fs {
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
		if len(found) != 1 {
			return "", invalid("flavor %q matches %d flavors", s.Flavor, len(found))
		}
		return found[0], nil
	}); err != nil {
		return r, err
	}
	if r.imageID, err = p.cached(c.region, "image", s.Image, func() (string, error) {
		var found []string
		for _, opts := range []images.ListOpts{{Name: s.Image}, {ID: s.Image}} {
			err := p.call(ctx, c.region, pool, false, func(ctx context.Context) error {
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
		if len(found) != 1 {
			return "", invalid("image %q matches %d images", s.Image, len(found))
		}
		return found[0], nil
	}); err != nil {
		return r, err
	}
	for _, n := range s.Networks {
		id, err := p.cached(c.region, "network", n, func() (string, error) {
			var found []string
			for _, opts := range []networks.ListOpts{{Name: n}, {ID: n}} {
				err := p.call(ctx, c.region, pool, false, func(ctx context.Context) error {
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
			if len(found) != 1 {
				return "", invalid("network %q matches %d networks", n, len(found))
			}
			return found[0], nil
		})
		if err != nil {
			return r, err
		}
		r.networkIDs = append(r.networkIDs, id)
	}
	return r, nil
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
