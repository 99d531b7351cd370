package gce

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// The catalog is what every project sees without creating anything: the
// regions and zones cloudsim serves, the machine types of each zone, the
// public images, and each project's `default` auto-mode network with one
// subnetwork per region (and GCE's four default firewall rules, seeded in
// firewall.go). Instances may only reference what is here, as on GCE.

// region is one region cloudsim serves.
type region struct {
	name  string
	zones []string // zone suffixes: "a" → <region>-a
	// cidr is the region's range in an auto-mode network (GCE's own
	// assignment for these regions).
	cidr netip.Prefix
}

var regions = []region{
	{"asia-northeast1", []string{"a", "b", "c"}, netip.MustParsePrefix("10.146.0.0/20")},
	{"europe-west1", []string{"b", "c", "d"}, netip.MustParsePrefix("10.132.0.0/20")},
	{"europe-west4", []string{"a", "b", "c"}, netip.MustParsePrefix("10.164.0.0/20")},
	{"us-central1", []string{"a", "b", "c", "f"}, netip.MustParsePrefix("10.128.0.0/20")},
	{"us-east1", []string{"b", "c", "d"}, netip.MustParsePrefix("10.142.0.0/20")},
	{"us-west1", []string{"a", "b", "c"}, netip.MustParsePrefix("10.138.0.0/20")},
}

// findRegion returns the region named name.
func findRegion(name string) (region, bool) {
	i := slices.IndexFunc(regions, func(r region) bool { return r.name == name })
	if i < 0 {
		return region{}, false
	}
	return regions[i], true
}

// zoneRegion returns the region of a zone cloudsim serves.
func zoneRegion(zone string) (region, bool) {
	i := strings.LastIndex(zone, "-")
	if i < 0 {
		return region{}, false
	}
	r, ok := findRegion(zone[:i])
	if !ok || !slices.Contains(r.zones, zone[i+1:]) {
		return region{}, false
	}
	return r, true
}

// allZones lists every zone, sorted.
func allZones() []string {
	var out []string
	for _, r := range regions {
		for _, z := range r.zones {
			out = append(out, r.name+"-"+z)
		}
	}
	slices.Sort(out)
	return out
}

// machineType is one predefined machine type; every zone offers all of them.
type machineType struct {
	name   string
	cpus   int32
	memMB  int32
	shared bool // a shared-core type (e2-micro/small/medium)
}

var machineTypes = []machineType{
	{"e2-micro", 2, 1024, true},
	{"e2-small", 2, 2048, true},
	{"e2-medium", 2, 4096, true},
	{"e2-standard-2", 2, 8192, false},
	{"e2-standard-4", 4, 16384, false},
	{"e2-standard-8", 8, 32768, false},
	{"e2-standard-16", 16, 65536, false},
	{"e2-highcpu-2", 2, 2048, false},
	{"e2-highcpu-4", 4, 4096, false},
	{"e2-highmem-2", 2, 16384, false},
	{"e2-highmem-4", 4, 32768, false},
	{"n1-standard-1", 1, 3840, false},
	{"n1-standard-2", 2, 7680, false},
	{"n1-standard-4", 4, 15360, false},
	{"n2-standard-2", 2, 8192, false},
	{"n2-standard-4", 4, 16384, false},
	{"n2-standard-8", 8, 32768, false},
	{"n2-highcpu-2", 2, 2048, false},
	{"n2-highmem-2", 2, 16384, false},
	{"n2d-standard-2", 2, 8192, false},
	{"n2d-standard-4", 4, 16384, false},
}

func findMachineType(name string) (machineType, bool) {
	i := slices.IndexFunc(machineTypes, func(m machineType) bool { return m.name == name })
	if i < 0 {
		return machineType{}, false
	}
	return machineTypes[i], true
}

func (m machineType) description() string {
	if m.shared {
		return fmt.Sprintf("Efficient Instance, %d vCPU (shared physical core) and %g GB RAM", m.cpus, float64(m.memMB)/1024)
	}
	return fmt.Sprintf("%d vCPU%s, %g GB RAM", m.cpus, plural(m.cpus), float64(m.memMB)/1024)
}

func plural(n int32) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// image is one public image. Every cloudsim instance boots the same
// Debian-based host whatever its image; the catalog only decides which
// references GCE would accept.
type image struct {
	project, name, family string
	diskGB                int64
	created               string
}

var images = []image{
	{"debian-cloud", "debian-11-bullseye-v20241112", "debian-11", 10, "2024-11-12T00:00:00.000-08:00"},
	{"debian-cloud", "debian-12-bookworm-v20241010", "debian-12", 10, "2024-10-10T00:00:00.000-07:00"},
	{"debian-cloud", "debian-12-bookworm-v20241112", "debian-12", 10, "2024-11-12T00:00:00.000-08:00"},
	{"ubuntu-os-cloud", "ubuntu-2404-noble-amd64-v20241115", "ubuntu-2404-lts-amd64", 10, "2024-11-15T00:00:00.000-08:00"},
}

// imageProjects are the public image projects: readable from any project,
// even when Options.Project restricts everything else.
var imageProjects = []string{"debian-cloud", "ubuntu-os-cloud"}

func findImage(project, name string) (image, bool) {
	i := slices.IndexFunc(images, func(im image) bool { return im.project == project && im.name == name })
	if i < 0 {
		return image{}, false
	}
	return images[i], true
}

// familyImage is the newest image of a family: what getFromFamily answers
// and what a family reference boots.
func familyImage(project, family string) (image, bool) {
	var best image
	var ok bool
	for _, im := range images {
		if im.project == project && im.family == family && (!ok || im.created > best.created) {
			best, ok = im, true
		}
	}
	return best, ok
}

func projectImages(project string) []image {
	var out []image
	for _, im := range images {
		if im.project == project {
			out = append(out, im)
		}
	}
	return out
}

// defaultNetwork is the only network of every project: GCE creates
// `default` in auto mode, with a subnetwork named `default` in each region.
const defaultNetwork = "default"
