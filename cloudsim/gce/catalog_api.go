package gce

import (
	"fmt"
	"hash/fnv"
	"net/http"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"
)

// The read-only calls on the catalog: zones, regions, machine types,
// images, networks and subnetworks.

// catalogTime is when every catalog resource was "created".
const catalogTime = "2015-01-01T00:00:00.000-08:00"

// stableID gives a catalog resource a fixed numeric ID from its path.
func stableID(path string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(path))
	return h.Sum64() >> 1
}

// listPage filters items by name and serves one page; ok is false when it
// has already answered with an error.
func listPage[T any](w http.ResponseWriter, r *http.Request, items []T, name func(T) string) ([]T, *string, bool) {
	q := r.URL.Query()
	f, err := parseFilter(q.Get("filter"))
	if err != nil {
		invalid("filter", q.Get("filter"), err.Error()).write(w)
		return nil, nil, false
	}
	var kept []T
	for _, it := range items {
		if f.match(func(field string) string {
			if field == "name" {
				return name(it)
			}
			return ""
		}) {
			kept = append(kept, it)
		}
	}
	page, next, ref := paginate(kept, q.Get("maxResults"), q.Get("pageToken"))
	if ref != nil {
		ref.write(w)
		return nil, nil, false
	}
	return page, next, true
}

// ---- zones and regions ----

func (s *Server) zonePB(r *http.Request, project, zone string) *computepb.Zone {
	reg, _ := zoneRegion(zone)
	path := fmt.Sprintf("projects/%s/zones/%s", project, zone)
	return &computepb.Zone{
		Kind: proto.String("compute#zone"), Id: proto.Uint64(stableID(zone)), Name: proto.String(zone),
		Description: proto.String(zone), Status: proto.String("UP"),
		Region:            proto.String(selfLink(r, fmt.Sprintf("projects/%s/regions/%s", project, reg.name))),
		SelfLink:          proto.String(selfLink(r, path)),
		CreationTimestamp: proto.String(catalogTime),
		SupportsPzs:       proto.Bool(false),
	}
}

func (s *Server) getZone(w http.ResponseWriter, r *http.Request, project, zone string) {
	if s.throttled(w, "zones.get") {
		return
	}
	writeProto(w, s.zonePB(r, project, zone))
}

func (s *Server) listZones(w http.ResponseWriter, r *http.Request, project string) {
	if s.throttled(w, "zones.list") {
		return
	}
	var all []*computepb.Zone
	for _, z := range allZones() {
		all = append(all, s.zonePB(r, project, z))
	}
	page, next, ok := listPage(w, r, all, (*computepb.Zone).GetName)
	if !ok {
		return
	}
	writeProto(w, &computepb.ZoneList{
		Kind: proto.String("compute#zoneList"), Id: proto.String("projects/" + project + "/zones"),
		Items: page, NextPageToken: next, SelfLink: proto.String(selfLink(r, "projects/"+project+"/zones")),
	})
}

func (s *Server) regionPB(r *http.Request, project string, reg region) *computepb.Region {
	var zones []string
	for _, z := range reg.zones {
		zones = append(zones, selfLink(r, fmt.Sprintf("projects/%s/zones/%s-%s", project, reg.name, z)))
	}
	return &computepb.Region{
		Kind: proto.String("compute#region"), Id: proto.Uint64(stableID(reg.name)), Name: proto.String(reg.name),
		Description: proto.String(reg.name), Status: proto.String("UP"), Zones: zones,
		SelfLink:          proto.String(selfLink(r, fmt.Sprintf("projects/%s/regions/%s", project, reg.name))),
		CreationTimestamp: proto.String(catalogTime),
	}
}

func (s *Server) getRegion(w http.ResponseWriter, r *http.Request, project, name string) {
	if s.throttled(w, "regions.get") {
		return
	}
	reg, _ := findRegion(name)
	writeProto(w, s.regionPB(r, project, reg))
}

func (s *Server) listRegions(w http.ResponseWriter, r *http.Request, project string) {
	if s.throttled(w, "regions.list") {
		return
	}
	var all []*computepb.Region
	for _, reg := range regions {
		all = append(all, s.regionPB(r, project, reg))
	}
	page, next, ok := listPage(w, r, all, (*computepb.Region).GetName)
	if !ok {
		return
	}
	writeProto(w, &computepb.RegionList{
		Kind: proto.String("compute#regionList"), Id: proto.String("projects/" + project + "/regions"),
		Items: page, NextPageToken: next, SelfLink: proto.String(selfLink(r, "projects/"+project+"/regions")),
	})
}

// ---- machine types ----

func (s *Server) machineTypePB(r *http.Request, project, zone string, m machineType) *computepb.MachineType {
	return &computepb.MachineType{
		Kind: proto.String("compute#machineType"), Id: proto.Uint64(stableID(m.name)), Name: proto.String(m.name),
		Description: proto.String(m.description()), GuestCpus: proto.Int32(m.cpus), MemoryMb: proto.Int32(m.memMB),
		IsSharedCpu: proto.Bool(m.shared), MaximumPersistentDisks: proto.Int32(128),
		MaximumPersistentDisksSizeGb: proto.Int64(263168), ImageSpaceGb: proto.Int32(0),
		Zone:              proto.String(zone), // a name, not a URL, on GCE too
		SelfLink:          proto.String(selfLink(r, fmt.Sprintf("projects/%s/zones/%s/machineTypes/%s", project, zone, m.name))),
		CreationTimestamp: proto.String(catalogTime),
	}
}

func (s *Server) getMachineType(w http.ResponseWriter, r *http.Request, project, zone, name string) {
	if s.throttled(w, "machineTypes.get") {
		return
	}
	m, ok := findMachineType(name)
	if !ok {
		notFound(fmt.Sprintf("projects/%s/zones/%s/machineTypes/%s", project, zone, name)).write(w)
		return
	}
	writeProto(w, s.machineTypePB(r, project, zone, m))
}

func (s *Server) listMachineTypes(w http.ResponseWriter, r *http.Request, project, zone string) {
	if s.throttled(w, "machineTypes.list") {
		return
	}
	var all []*computepb.MachineType
	for _, m := range machineTypes {
		all = append(all, s.machineTypePB(r, project, zone, m))
	}
	page, next, ok := listPage(w, r, all, (*computepb.MachineType).GetName)
	if !ok {
		return
	}
	path := fmt.Sprintf("projects/%s/zones/%s/machineTypes", project, zone)
	writeProto(w, &computepb.MachineTypeList{
		Kind: proto.String("compute#machineTypeList"), Id: proto.String(path),
		Items: page, NextPageToken: next, SelfLink: proto.String(selfLink(r, path)),
	})
}

// ---- images ----

func (s *Server) imagePB(r *http.Request, im image) *computepb.Image {
	return &computepb.Image{
		Kind: proto.String("compute#image"), Id: proto.Uint64(stableID(im.project + "/" + im.name)),
		Name: proto.String(im.name), Family: proto.String(im.family), Status: proto.String("READY"),
		DiskSizeGb: proto.Int64(im.diskGB), ArchiveSizeBytes: proto.Int64(im.diskGB << 27),
		SourceType: proto.String("RAW"), Architecture: proto.String("X86_64"),
		SelfLink:          proto.String(selfLink(r, fmt.Sprintf("projects/%s/global/images/%s", im.project, im.name))),
		CreationTimestamp: proto.String(im.created),
	}
}

// getImage is images.get and, for family, images.getFromFamily (the
// newest image of the family).
func (s *Server) getImage(w http.ResponseWriter, r *http.Request, project, name string, family bool) {
	action := "images.get"
	if family {
		action = "images.getFromFamily"
	}
	if s.throttled(w, action) {
		return
	}
	var im image
	var ok bool
	if family {
		im, ok = familyImage(project, name)
	} else {
		im, ok = findImage(project, name)
	}
	if !ok {
		path := fmt.Sprintf("projects/%s/global/images/%s", project, name)
		if family {
			path = fmt.Sprintf("projects/%s/global/images/family/%s", project, name)
		}
		notFound(path).write(w)
		return
	}
	writeProto(w, s.imagePB(r, im))
}

func (s *Server) listImages(w http.ResponseWriter, r *http.Request, project string) {
	if s.throttled(w, "images.list") {
		return
	}
	var all []*computepb.Image
	for _, im := range projectImages(project) {
		all = append(all, s.imagePB(r, im))
	}
	page, next, ok := listPage(w, r, all, (*computepb.Image).GetName)
	if !ok {
		return
	}
	path := "projects/" + project + "/global/images"
	writeProto(w, &computepb.ImageList{
		Kind: proto.String("compute#imageList"), Id: proto.String(path),
		Items: page, NextPageToken: next, SelfLink: proto.String(selfLink(r, path)),
	})
}

// ---- networks and subnetworks ----

func (s *Server) networkPB(r *http.Request, project string) *computepb.Network {
	path := fmt.Sprintf("projects/%s/global/networks/%s", project, defaultNetwork)
	var subnets []string
	for _, reg := range regions {
		subnets = append(subnets, selfLink(r, fmt.Sprintf("projects/%s/regions/%s/subnetworks/%s", project, reg.name, defaultNetwork)))
	}
	return &computepb.Network{
		Kind: proto.String("compute#network"), Id: proto.Uint64(stableID(path)), Name: proto.String(defaultNetwork),
		Description:           proto.String("Default network for the project"),
		AutoCreateSubnetworks: proto.Bool(true), Subnetworks: subnets, Mtu: proto.Int32(1460),
		RoutingConfig:                         &computepb.NetworkRoutingConfig{RoutingMode: proto.String("REGIONAL")},
		SelfLink:                              proto.String(selfLink(r, path)),
		CreationTimestamp:                     proto.String(catalogTime),
		NetworkFirewallPolicyEnforcementOrder: proto.String("AFTER_CLASSIC_FIREWALL"),
	}
}

func (s *Server) getNetwork(w http.ResponseWriter, r *http.Request, project, name string) {
	if s.throttled(w, "networks.get") {
		return
	}
	if name != defaultNetwork {
		notFound(fmt.Sprintf("projects/%s/global/networks/%s", project, name)).write(w)
		return
	}
	writeProto(w, s.networkPB(r, project))
}

func (s *Server) listNetworks(w http.ResponseWriter, r *http.Request, project string) {
	if s.throttled(w, "networks.list") {
		return
	}
	page, next, ok := listPage(w, r, []*computepb.Network{s.networkPB(r, project)}, (*computepb.Network).GetName)
	if !ok {
		return
	}
	path := "projects/" + project + "/global/networks"
	writeProto(w, &computepb.NetworkList{
		Kind: proto.String("compute#networkList"), Id: proto.String(path),
		Items: page, NextPageToken: next, SelfLink: proto.String(selfLink(r, path)),
	})
}

func (s *Server) subnetworkPB(r *http.Request, project string, reg region) *computepb.Subnetwork {
	path := fmt.Sprintf("projects/%s/regions/%s/subnetworks/%s", project, reg.name, defaultNetwork)
	gw := reg.cidr.Addr().Next()
	return &computepb.Subnetwork{
		Kind: proto.String("compute#subnetwork"), Id: proto.Uint64(stableID(path)), Name: proto.String(defaultNetwork),
		Network:        proto.String(selfLink(r, fmt.Sprintf("projects/%s/global/networks/%s", project, defaultNetwork))),
		IpCidrRange:    proto.String(reg.cidr.String()),
		GatewayAddress: proto.String(gw.String()),
		Region:         proto.String(selfLink(r, fmt.Sprintf("projects/%s/regions/%s", project, reg.name))),
		Purpose:        proto.String("PRIVATE"), StackType: proto.String("IPV4_ONLY"),
		PrivateIpGoogleAccess: proto.Bool(false),
		SelfLink:              proto.String(selfLink(r, path)),
		CreationTimestamp:     proto.String(catalogTime),
	}
}

func (s *Server) getSubnetwork(w http.ResponseWriter, r *http.Request, project, regName, name string) {
	if s.throttled(w, "subnetworks.get") {
		return
	}
	if name != defaultNetwork {
		notFound(fmt.Sprintf("projects/%s/regions/%s/subnetworks/%s", project, regName, name)).write(w)
		return
	}
	reg, _ := findRegion(regName)
	writeProto(w, s.subnetworkPB(r, project, reg))
}

func (s *Server) listSubnetworks(w http.ResponseWriter, r *http.Request, project, regName string) {
	if s.throttled(w, "subnetworks.list") {
		return
	}
	reg, _ := findRegion(regName)
	page, next, ok := listPage(w, r, []*computepb.Subnetwork{s.subnetworkPB(r, project, reg)}, (*computepb.Subnetwork).GetName)
	if !ok {
		return
	}
	path := fmt.Sprintf("projects/%s/regions/%s/subnetworks", project, regName)
	writeProto(w, &computepb.SubnetworkList{
		Kind: proto.String("compute#subnetworkList"), Id: proto.String(path),
		Items: page, NextPageToken: next, SelfLink: proto.String(selfLink(r, path)),
	})
}
