package ec2

import (
	"cmp"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// secGroup is a VPC security group. Rules are kept flat, one source each,
// and grouped into IpPermissions when rendered, as EC2 shows them.
type secGroup struct {
	id, region, vpcID, name, description string
	rules                                []rule
	tags                                 map[string]string
	seq                                  int64 // creation order
}

// rule is one security group rule: a protocol, a port range (-1 when the
// protocol has none) and one source or destination, a CIDR or a group.
type rule struct {
	id                  string
	egress              bool
	protocol            string
	from, to            int
	cidr, source, descr string
}

func (g *secGroup) addRule(r rule) rule {
	if r.protocol == "-1" {
		r.from, r.to = -1, -1
	}
	r.id = newID("sgr-")
	g.rules = append(g.rules, r)
	return r
}

// same reports whether two rules allow the same traffic from the same peer.
func (r rule) same(o rule) bool {
	return r.egress == o.egress && r.protocol == o.protocol && r.from == o.from && r.to == o.to && r.cidr == o.cidr && r.source == o.source
}

// String is how EC2 names a rule in InvalidPermission.Duplicate.
func (r rule) String() string {
	peer := cmp.Or(r.cidr, r.source)
	proto := strings.ToUpper(r.protocol)
	if r.protocol == "-1" {
		return fmt.Sprintf("peer: %s, ALL, ALLOW", peer)
	}
	return fmt.Sprintf("peer: %s, %s, from port: %d, to port: %d, ALLOW", peer, proto, r.from, r.to)
}

var groupIDRE = idRE("sg")

func idRE(prefix string) *regexp.Regexp {
	return regexp.MustCompile(`^` + prefix + `-([0-9a-f]{8}|[0-9a-f]{17})$`)
}

// groupLocked finds a security group of the region by ID.
func (s *Server) groupLocked(reg region, id string) (*secGroup, *apiError) {
	if !groupIDRE.MatchString(id) {
		return nil, errClient("InvalidGroupId.Malformed", "Invalid id: \"%s\" (expecting \"sg-...\")", id)
	}
	s.netLocked(reg)
	g, ok := s.groups[id]
	if !ok || g.region != reg.name {
		return nil, errClient("InvalidGroup.NotFound", "The security group '%s' does not exist", id)
	}
	return g, nil
}

// groupByNameLocked finds a group of the region's default VPC by name (a
// name alone always means the default VPC).
func (s *Server) groupByNameLocked(reg region, name string) (*secGroup, *apiError) {
	v := s.netLocked(reg).vpc
	for _, g := range s.groups {
		if g.region == reg.name && g.vpcID == v.id && g.name == name {
			return g, nil
		}
	}
	return nil, errClient("InvalidGroup.NotFound", "The security group '%s' does not exist in default VPC '%s'", name, v.id)
}

// groupsLocked are the region's groups in creation order.
func (s *Server) groupsLocked(reg region) []*secGroup {
	s.netLocked(reg)
	var out []*secGroup
	for _, g := range s.groups {
		if g.region == reg.name {
			out = append(out, g)
		}
	}
	slices.SortFunc(out, func(a, b *secGroup) int { return cmp.Or(cmp.Compare(a.seq, b.seq), strings.Compare(a.id, b.id)) })
	return out
}

func (s *Server) createSecurityGroup(q *request) (response, *apiError) {
	name, descr := q.form.Get("GroupName"), q.form.Get("GroupDescription")
	switch {
	case name == "":
		return nil, errClient("MissingParameter", "The request must contain the parameter groupName")
	case descr == "":
		return nil, errClient("MissingParameter", "The request must contain the parameter groupDescription")
	case strings.HasPrefix(name, "sg-"):
		return nil, errClient("InvalidParameterValue", "Group names may not be in the format sg-*.")
	case len(name) > 255 || len(descr) > 255:
		return nil, errClient("InvalidParameterValue", "Invalid value for groupName or groupDescription. Length exceeds maximum of 255.")
	}
	tags, err := tagSpecs(q.form, "security-group")
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.netLocked(q.region).vpc
	if id := q.form.Get("VpcId"); id != "" && id != v.id {
		if !vpcIDRE.MatchString(id) {
			return nil, errClient("InvalidVpcID.Malformed", "Invalid id: \"%s\"", id)
		}
		return nil, errClient("InvalidVpcID.NotFound", "The vpc ID '%s' does not exist", id)
	}
	for _, g := range s.groupsLocked(q.region) {
		if g.vpcID == v.id && g.name == name {
			return nil, errClient("InvalidGroup.Duplicate", "The security group '%s' already exists for VPC '%s'", name, v.id)
		}
	}
	s.seq++
	g := &secGroup{id: newID("sg-"), region: q.region.name, vpcID: v.id, name: name, description: descr, tags: tags, seq: s.seq}
	g.addRule(rule{egress: true, protocol: "-1", cidr: "0.0.0.0/0"})
	s.groups[g.id] = g
	return &xmlCreateSecurityGroupResponse{Return: true, GroupID: g.id, Tags: xmlTags(tags)}, nil
}

func (s *Server) describeSecurityGroups(q *request) (response, *apiError) {
	ids, names := indexed(q.form, "GroupId"), indexed(q.form, "GroupName")
	filters, ferr := parseFilters(q.form, groupFields(&secGroup{}))
	if ferr != nil {
		return nil, ferr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var picked []*secGroup
	for _, id := range ids {
		g, err := s.groupLocked(q.region, id)
		if err != nil {
			return nil, err
		}
		picked = append(picked, g)
	}
	for _, n := range names {
		g, err := s.groupByNameLocked(q.region, n)
		if err != nil {
			return nil, err
		}
		picked = append(picked, g)
	}
	if len(ids)+len(names) == 0 {
		picked = s.groupsLocked(q.region)
	}
	resp := &xmlDescribeSecurityGroupsResponse{}
	for _, g := range picked {
		if matches(filters, groupFields(g)) {
			resp.Groups = append(resp.Groups, s.renderGroupLocked(g))
		}
	}
	return resp, nil
}

func groupFields(g *secGroup) fields {
	return func(name string) ([]string, bool) {
		var in []rule
		for _, r := range g.rules {
			if !r.egress {
				in = append(in, r)
			}
		}
		collect := func(f func(rule) string) []string {
			var out []string
			for _, r := range in {
				out = append(out, f(r))
			}
			return out
		}
		switch name {
		case "group-id":
			return []string{g.id}, true
		case "group-name":
			return []string{g.name}, true
		case "description":
			return []string{g.description}, true
		case "vpc-id":
			return []string{g.vpcID}, true
		case "owner-id":
			return []string{ownerID}, true
		case "ip-permission.protocol":
			return collect(func(r rule) string { return r.protocol }), true
		case "ip-permission.from-port":
			return collect(func(r rule) string { return strconv.Itoa(r.from) }), true
		case "ip-permission.to-port":
			return collect(func(r rule) string { return strconv.Itoa(r.to) }), true
		case "ip-permission.cidr":
			return collect(func(r rule) string { return r.cidr }), true
		case "ip-permission.group-id":
			return collect(func(r rule) string { return r.source }), true
		}
		return tagFields(g.tags, name)
	}
}

func (s *Server) renderGroupLocked(g *secGroup) xmlSecurityGroup {
	x := xmlSecurityGroup{OwnerID: ownerID, GroupID: g.id, GroupName: g.name, Description: g.description, VpcID: g.vpcID, Tags: xmlTags(g.tags)}
	for _, egress := range []bool{false, true} {
		var perms []xmlIPPermission
		var keys []rule // protocol/port key of each permission
		for _, r := range g.rules {
			if r.egress != egress {
				continue
			}
			i := slices.IndexFunc(keys, func(k rule) bool { return k.protocol == r.protocol && k.from == r.from && k.to == r.to })
			if i < 0 {
				keys = append(keys, r)
				p := xmlIPPermission{Protocol: r.protocol}
				if r.protocol != "-1" {
					p.FromPort, p.ToPort = &keys[len(keys)-1].from, &keys[len(keys)-1].to
				}
				perms = append(perms, p)
				i = len(perms) - 1
			}
			if r.cidr != "" {
				perms[i].IPRanges = append(perms[i].IPRanges, xmlIPRange{CidrIP: r.cidr, Description: r.descr})
			} else {
				perms[i].Groups = append(perms[i].Groups, xmlUserIDGroupPair{UserID: ownerID, GroupID: r.source, Description: r.descr})
			}
		}
		if egress {
			x.Egress = perms
		} else {
			x.Ingress = perms
		}
	}
	return x
}

func (s *Server) authorizeIngress(q *request) (response, *apiError) { return s.authorize(q, false) }
func (s *Server) authorizeEgress(q *request) (response, *apiError)  { return s.authorize(q, true) }

// authorize adds the rules of IpPermissions.N (or the flat legacy
// parameters) to a group, all or none.
func (s *Server) authorize(q *request, egress bool) (response, *apiError) {
	rules, err := parsePermissions(q.form, egress)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var g *secGroup
	switch id, name := q.form.Get("GroupId"), q.form.Get("GroupName"); {
	case id != "":
		g, err = s.groupLocked(q.region, id)
	case name != "" && !egress:
		g, err = s.groupByNameLocked(q.region, name)
	default:
		return nil, errClient("MissingParameter", "The request must contain the parameter groupId")
	}
	if err != nil {
		return nil, err
	}
	for i, r := range rules {
		if r.source != "" {
			src, err := s.groupLocked(q.region, r.source)
			if err != nil {
				return nil, err
			}
			if src.vpcID != g.vpcID {
				return nil, errClient("InvalidGroup.NotFound", "You have specified two resources that belong to different networks.")
			}
		}
		dup := slices.ContainsFunc(g.rules, r.same) || slices.ContainsFunc(rules[:i], r.same)
		if dup {
			return nil, errClient("InvalidPermission.Duplicate", "the specified rule %q already exists", r.String())
		}
	}
	if len(g.rules)+len(rules) > 120 {
		return nil, errClient("RulesPerSecurityGroupLimitExceeded", "The maximum number of rules per security group has been reached.")
	}
	resp := &xmlAuthorizeResponse{Return: true}
	for _, r := range rules {
		r = g.addRule(r)
		x := xmlSecurityGroupRule{ID: r.id, GroupID: g.id, GroupOwnerID: ownerID, IsEgress: r.egress, Protocol: r.protocol,
			FromPort: r.from, ToPort: r.to, CidrIPv4: r.cidr, Description: r.descr}
		if r.source != "" {
			x.Referenced = &xmlReferencedGroup{GroupID: r.source, UserID: ownerID}
		}
		resp.Rules = append(resp.Rules, x)
	}
	return resp, nil
}

// parsePermissions reads the rules a request adds, one per source.
func parsePermissions(f url.Values, egress bool) ([]rule, *apiError) {
	perms := indexedGroups(f, "IpPermissions")
	if len(perms) == 0 && f.Get("IpProtocol") != "" {
		// The legacy flat form: IpProtocol, FromPort, ToPort, CidrIp.
		legacy := url.Values{"IpProtocol": {f.Get("IpProtocol")}, "FromPort": {f.Get("FromPort")}, "ToPort": {f.Get("ToPort")}}
		if c := f.Get("CidrIp"); c != "" {
			legacy.Set("IpRanges.1.CidrIp", c)
		}
		perms = []url.Values{legacy}
	}
	if len(perms) == 0 {
		return nil, errClient("MissingParameter", "The request must contain the parameter ipPermissions")
	}
	var out []rule
	for _, p := range perms {
		base, err := parsePorts(p)
		if err != nil {
			return nil, err
		}
		base.egress = egress
		n := 0
		for _, rg := range indexedGroups(p, "IpRanges") {
			cidr := rg.Get("CidrIp")
			if _, _, err := net.ParseCIDR(cidr); err != nil {
				return nil, errClient("InvalidParameterValue", "CIDR block %s is malformed", cidr)
			}
			r := base
			r.cidr, r.descr = cidr, rg.Get("Description")
			out = append(out, r)
			n++
		}
		for _, gp := range indexedGroups(p, "Groups") {
			r := base
			r.source, r.descr = gp.Get("GroupId"), gp.Get("Description")
			if r.source == "" {
				return nil, errClient("MissingParameter", "The request must contain the parameter groupId for each source group")
			}
			out = append(out, r)
			n++
		}
		if n == 0 {
			return nil, errClient("MissingParameter", "The request must contain the parameter ipRanges or groups")
		}
	}
	return out, nil
}

var protocolNames = map[string]string{"6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6", "all": "-1"}

// parsePorts reads a permission's protocol and port range.
func parsePorts(p url.Values) (rule, *apiError) {
	proto := strings.ToLower(p.Get("IpProtocol"))
	proto = cmp.Or(protocolNames[proto], proto)
	switch proto {
	case "tcp", "udp", "icmp", "icmpv6", "-1":
	default:
		if n, err := strconv.Atoi(proto); err != nil || n < 0 || n > 255 {
			return rule{}, errClient("InvalidParameterValue", "Invalid value '%s' for IP protocol. Unknown protocol.", p.Get("IpProtocol"))
		}
	}
	r := rule{protocol: proto, from: -1, to: -1}
	from, to := p.Get("FromPort"), p.Get("ToPort")
	if proto == "tcp" || proto == "udp" {
		if from == "" || to == "" {
			return rule{}, errClient("InvalidParameterValue", "Invalid value 'Must specify both from and to ports with TCP/UDP.' for portRange.")
		}
	}
	var err1, err2 error
	if from != "" {
		r.from, err1 = strconv.Atoi(from)
	}
	if to != "" {
		r.to, err2 = strconv.Atoi(to)
	}
	if proto == "tcp" || proto == "udp" {
		if err1 != nil || err2 != nil || r.from < 0 || r.to > 65535 || r.from > r.to {
			return rule{}, errClient("InvalidParameterValue", "Invalid value '%s-%s' for portRange. Must be from 0 to 65535, from port <= to port.", from, to)
		}
	}
	return r, nil
}

func (s *Server) deleteSecurityGroup(q *request) (response, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var (
		g   *secGroup
		err *apiError
	)
	switch id, name := q.form.Get("GroupId"), q.form.Get("GroupName"); {
	case id != "":
		g, err = s.groupLocked(q.region, id)
	case name != "":
		g, err = s.groupByNameLocked(q.region, name)
	default:
		return nil, errClient("MissingParameter", "The request must contain the parameter groupName or groupId")
	}
	if err != nil {
		return nil, err
	}
	if g.name == "default" {
		return nil, errClient("CannotDelete", "the specified group: \"%s\" name: \"default\" cannot be deleted by a user", g.id)
	}
	for _, in := range s.instances {
		if !in.terminated(s.now()) && slices.Contains(in.groups, g.id) {
			return nil, errClient("DependencyViolation", "resource %s has a dependent object", g.id)
		}
	}
	for _, other := range s.groups {
		if other != g && slices.ContainsFunc(other.rules, func(r rule) bool { return r.source == g.id }) {
			return nil, errClient("DependencyViolation", "resource %s has a dependent object", g.id)
		}
	}
	delete(s.groups, g.id)
	return &xmlReturnResponse{Return: true}, nil
}
