package ec2

import (
	"fmt"
	"slices"
	"strconv"
)

// network is a region's default VPC and its default subnets, one per
// zone, as every account has them. They are made on a region's first use,
// with stable IDs.
type network struct {
	vpc     *vpc
	subnets []*subnet // in zone order
}

type vpc struct {
	id, region, cidr string
	tags             map[string]string
}

type subnet struct {
	id, region, vpcID, zone, zoneID, cidr string
	mapPublicIP                           bool
	tags                                  map[string]string
	index, hosts                          int
}

// netLocked returns the region's network, making it (and the VPC's
// default security group) on first use; caller holds s.mu.
func (s *Server) netLocked(reg region) *network {
	if n, ok := s.nets[reg.name]; ok {
		return n
	}
	v := &vpc{id: stableID("vpc-", reg.name, "default"), region: reg.name, cidr: "172.31.0.0/16", tags: map[string]string{}}
	n := &network{vpc: v}
	for i, zone := range reg.zoneNames() {
		n.subnets = append(n.subnets, &subnet{
			id: stableID("subnet-", reg.name, zone), region: reg.name, vpcID: v.id, zone: zone, zoneID: reg.zoneID(zone),
			cidr: fmt.Sprintf("172.31.%d.0/20", i*16), mapPublicIP: true, tags: map[string]string{}, index: i,
		})
	}
	s.nets[reg.name] = n
	g := &secGroup{id: stableID("sg-", reg.name, v.id, "default"), region: reg.name, vpcID: v.id, name: "default",
		description: "default VPC security group", tags: map[string]string{}}
	g.addRule(rule{protocol: "-1", source: g.id})
	g.addRule(rule{egress: true, protocol: "-1", cidr: "0.0.0.0/0"})
	s.groups[g.id] = g
	return n
}

// subnetLocked finds a subnet of the region by ID.
func (s *Server) subnetLocked(reg region, id string) (*subnet, bool) {
	n := s.netLocked(reg)
	i := slices.IndexFunc(n.subnets, func(sn *subnet) bool { return sn.id == id })
	if i < 0 {
		return nil, false
	}
	return n.subnets[i], true
}

// defaultSubnetLocked is the default subnet of zone.
func (s *Server) defaultSubnetLocked(reg region, zone string) (*subnet, bool) {
	n := s.netLocked(reg)
	i := slices.IndexFunc(n.subnets, func(sn *subnet) bool { return sn.zone == zone })
	if i < 0 {
		return nil, false
	}
	return n.subnets[i], true
}

// allocIPLocked is the subnet's next private address.
func (sn *subnet) allocIPLocked() string {
	sn.hosts++
	n := sn.hosts
	return fmt.Sprintf("172.31.%d.%d", sn.index*16+(n/250)%16, n%250+4)
}

var (
	vpcIDRE    = idRE("vpc")
	subnetIDRE = idRE("subnet")
)

func (s *Server) describeVpcs(q *request) (response, *apiError) {
	ids := indexed(q.form, "VpcId")
	for _, id := range ids {
		if !vpcIDRE.MatchString(id) {
			return nil, errClient("InvalidVpcID.Malformed", "Invalid id: \"%s\"", id)
		}
	}
	filters, err := parseFilters(q.form, vpcFields(&vpc{}))
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.netLocked(q.region).vpc
	for _, id := range ids {
		if id != v.id {
			return nil, errClient("InvalidVpcID.NotFound", "The vpc ID '%s' does not exist", id)
		}
	}
	resp := &xmlDescribeVpcsResponse{}
	if matches(filters, vpcFields(v)) {
		resp.Vpcs = append(resp.Vpcs, xmlVpc{VpcID: v.id, State: "available", CidrBlock: v.cidr, DhcpOptionsID: stableID("dopt-", v.region),
			InstanceTenancy: "default", IsDefault: true, OwnerID: ownerID, Tags: xmlTags(v.tags),
			CidrAssociations: []xmlCidrAssociation{{AssociationID: stableID("vpc-cidr-assoc-", v.id), CidrBlock: v.cidr, State: xmlCidrState{State: "associated"}}}})
	}
	return resp, nil
}

func vpcFields(v *vpc) fields {
	return func(name string) ([]string, bool) {
		switch name {
		case "vpc-id":
			return []string{v.id}, true
		case "is-default", "isDefault":
			return []string{"true"}, true
		case "cidr", "cidr-block-association.cidr-block":
			return []string{v.cidr}, true
		case "state":
			return []string{"available"}, true
		case "owner-id":
			return []string{ownerID}, true
		}
		return tagFields(v.tags, name)
	}
}

func (s *Server) describeSubnets(q *request) (response, *apiError) {
	ids := indexed(q.form, "SubnetId")
	for _, id := range ids {
		if !subnetIDRE.MatchString(id) {
			return nil, errClient("InvalidSubnetID.Malformed", "Invalid id: \"%s\"", id)
		}
	}
	filters, err := parseFilters(q.form, subnetFields(&subnet{}))
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	subnets := s.netLocked(q.region).subnets
	if len(ids) > 0 {
		subnets = nil
		for _, id := range ids {
			sn, ok := s.subnetLocked(q.region, id)
			if !ok {
				return nil, errClient("InvalidSubnetID.NotFound", "The subnet ID '%s' does not exist", id)
			}
			subnets = append(subnets, sn)
		}
	}
	resp := &xmlDescribeSubnetsResponse{}
	for _, sn := range subnets {
		if !matches(filters, subnetFields(sn)) {
			continue
		}
		resp.Subnets = append(resp.Subnets, xmlSubnet{
			SubnetID: sn.id, State: "available", VpcID: sn.vpcID, CidrBlock: sn.cidr, AvailableIPs: 4091 - sn.hosts,
			AvailabilityZone: sn.zone, AvailabilityZoneID: sn.zoneID, DefaultForAz: true, MapPublicIPOnLaunch: sn.mapPublicIP,
			OwnerID: ownerID, SubnetArn: fmt.Sprintf("arn:aws:ec2:%s:%s:subnet/%s", sn.region, ownerID, sn.id), Tags: xmlTags(sn.tags),
		})
	}
	return resp, nil
}

func subnetFields(sn *subnet) fields {
	return func(name string) ([]string, bool) {
		switch name {
		case "subnet-id":
			return []string{sn.id}, true
		case "vpc-id":
			return []string{sn.vpcID}, true
		case "availability-zone", "availabilityZone":
			return []string{sn.zone}, true
		case "availability-zone-id":
			return []string{sn.zoneID}, true
		case "default-for-az", "defaultForAz":
			return []string{"true"}, true
		case "map-public-ip-on-launch":
			return []string{strconv.FormatBool(sn.mapPublicIP)}, true
		case "cidr-block", "cidrBlock", "cidr":
			return []string{sn.cidr}, true
		case "state":
			return []string{"available"}, true
		case "owner-id":
			return []string{ownerID}, true
		}
		return tagFields(sn.tags, name)
	}
}

// accountAttributes are what DescribeAccountAttributes reports; default-vpc
// is filled in per region.
var accountAttributes = []string{"supported-platforms", "default-vpc", "max-instances", "vpc-max-security-groups-per-interface", "max-elastic-ips", "vpc-max-elastic-ips"}

func (s *Server) describeAccountAttributes(q *request) (response, *apiError) {
	names := indexed(q.form, "AttributeName")
	for _, n := range names {
		if !slices.Contains(accountAttributes, n) {
			return nil, errClient("InvalidParameterValue", "Value (%s) for parameter attributeName is invalid. Unknown attribute name.", n)
		}
	}
	if len(names) == 0 {
		names = accountAttributes
	}
	s.mu.Lock()
	defaultVPC := s.netLocked(q.region).vpc.id
	s.mu.Unlock()
	resp := &xmlDescribeAccountAttributesResponse{}
	for _, n := range names {
		var vals []string
		switch n {
		case "supported-platforms":
			vals = []string{"VPC"}
		case "default-vpc":
			vals = []string{defaultVPC}
		case "max-instances":
			vals = []string{"20"}
		case "vpc-max-security-groups-per-interface":
			vals = []string{"5"}
		default:
			vals = []string{"5"}
		}
		a := xmlAccountAttribute{Name: n}
		for _, v := range vals {
			a.Values = append(a.Values, xmlAttributeValue{Value: v})
		}
		resp.Attributes = append(resp.Attributes, a)
	}
	return resp, nil
}

func (s *Server) describeRegions(q *request) (response, *apiError) {
	names := indexed(q.form, "RegionName")
	for _, n := range names {
		if _, ok := findRegion(n); !ok {
			return nil, errClient("InvalidParameterValue", "Invalid region: %s", n)
		}
	}
	filters, err := parseFilters(q.form, regionFields(region{}))
	if err != nil {
		return nil, err
	}
	resp := &xmlDescribeRegionsResponse{}
	for _, reg := range regions {
		if (len(names) > 0 && !slices.Contains(names, reg.name)) || !matches(filters, regionFields(reg)) {
			continue
		}
		resp.Regions = append(resp.Regions, xmlRegion{Name: reg.name, Endpoint: "ec2." + reg.name + ".amazonaws.com", OptInStatus: "opt-in-not-required"})
	}
	return resp, nil
}

func regionFields(reg region) fields {
	return func(name string) ([]string, bool) {
		switch name {
		case "region-name":
			return []string{reg.name}, true
		case "endpoint":
			return []string{"ec2." + reg.name + ".amazonaws.com"}, true
		case "opt-in-status":
			return []string{"opt-in-not-required"}, true
		}
		return nil, false
	}
}

func (s *Server) describeAvailabilityZones(q *request) (response, *apiError) {
	reg := q.region
	names, zoneIDs := indexed(q.form, "ZoneName"), indexed(q.form, "ZoneId")
	all := reg.zoneNames()
	for _, n := range names {
		if !slices.Contains(all, n) {
			return nil, errClient("InvalidParameterValue", "Invalid availability zone: [%s]", n)
		}
	}
	for _, id := range zoneIDs {
		if !slices.ContainsFunc(all, func(z string) bool { return reg.zoneID(z) == id }) {
			return nil, errClient("InvalidParameterValue", "Invalid availability zone ID: [%s]", id)
		}
	}
	filters, err := parseFilters(q.form, zoneFields(reg, ""))
	if err != nil {
		return nil, err
	}
	resp := &xmlDescribeAvailabilityZonesResponse{}
	for _, z := range all {
		picked := (len(names) == 0 && len(zoneIDs) == 0) || slices.Contains(names, z) || slices.Contains(zoneIDs, reg.zoneID(z))
		if !picked || !matches(filters, zoneFields(reg, z)) {
			continue
		}
		resp.Zones = append(resp.Zones, xmlZone{Name: z, ID: reg.zoneID(z), State: "available", Region: reg.name,
			OptInStatus: "opt-in-not-required", GroupName: reg.name, NetworkBorderGroup: reg.name, ZoneType: "availability-zone"})
	}
	return resp, nil
}

func zoneFields(reg region, zone string) fields {
	return func(name string) ([]string, bool) {
		switch name {
		case "zone-name":
			return []string{zone}, true
		case "zone-id":
			return []string{reg.zoneID(zone)}, true
		case "region-name":
			return []string{reg.name}, true
		case "state":
			return []string{"available"}, true
		case "zone-type":
			return []string{"availability-zone"}, true
		case "group-name", "network-border-group":
			return []string{reg.name}, true
		case "opt-in-status":
			return []string{"opt-in-not-required"}, true
		}
		return nil, false
	}
}
