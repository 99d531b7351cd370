package gce

import (
	"cmp"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"
)

// Firewalls are the one writable catalog resource: global per project,
// seeded with the four rules GCE creates with the default network.

// firewallsOf returns the project's rules, seeding GCE's defaults on
// first use; caller holds s.mu.
func (s *Server) firewallsOf(r *http.Request, project string) map[string]*computepb.Firewall {
	if fw := s.firewalls[project]; fw != nil {
		return fw
	}
	fw := map[string]*computepb.Firewall{}
	tcpUDPAll := []*computepb.Allowed{
		{IPProtocol: proto.String("tcp"), Ports: []string{"0-65535"}},
		{IPProtocol: proto.String("udp"), Ports: []string{"0-65535"}},
		{IPProtocol: proto.String("icmp")},
	}
	for _, d := range []struct {
		name, desc string
		allowed    []*computepb.Allowed
		sources    []string
	}{
		{"default-allow-icmp", "Allow ICMP from anywhere", []*computepb.Allowed{{IPProtocol: proto.String("icmp")}}, []string{"0.0.0.0/0"}},
		{"default-allow-internal", "Allow internal traffic on the default network", tcpUDPAll, []string{"10.128.0.0/9"}},
		{"default-allow-rdp", "Allow RDP from anywhere", []*computepb.Allowed{{IPProtocol: proto.String("tcp"), Ports: []string{"3389"}}}, []string{"0.0.0.0/0"}},
		{"default-allow-ssh", "Allow SSH from anywhere", []*computepb.Allowed{{IPProtocol: proto.String("tcp"), Ports: []string{"22"}}}, []string{"0.0.0.0/0"}},
	} {
		fw[d.name] = s.firewallPB(r, project, &computepb.Firewall{
			Name: proto.String(d.name), Description: proto.String(d.desc), Allowed: d.allowed,
			SourceRanges: d.sources, Priority: proto.Int32(65534),
		}, catalogTime)
	}
	s.firewalls[project] = fw
	return fw
}

// firewallPB fills in what GCE reports for a rule it accepted.
func (s *Server) firewallPB(r *http.Request, project string, f *computepb.Firewall, created string) *computepb.Firewall {
	path := fmt.Sprintf("projects/%s/global/firewalls/%s", project, f.GetName())
	f.Kind = proto.String("compute#firewall")
	f.Id = proto.Uint64(stableID(path + created))
	f.SelfLink = proto.String(selfLink(r, path))
	f.Network = proto.String(selfLink(r, fmt.Sprintf("projects/%s/global/networks/%s", project, defaultNetwork)))
	f.CreationTimestamp = proto.String(created)
	f.Direction = proto.String(cmp.Or(f.GetDirection(), "INGRESS"))
	if f.Priority == nil {
		f.Priority = proto.Int32(1000)
	}
	if f.Disabled == nil {
		f.Disabled = proto.Bool(false)
	}
	if f.GetDirection() == "INGRESS" && len(f.SourceRanges) == 0 && len(f.SourceTags) == 0 && len(f.SourceServiceAccounts) == 0 {
		f.SourceRanges = []string{"0.0.0.0/0"}
	}
	if f.LogConfig == nil {
		f.LogConfig = &computepb.FirewallLogConfig{Enable: proto.Bool(false)}
	}
	return f
}

func (s *Server) insertFirewall(w http.ResponseWriter, r *http.Request, project string) {
	if s.throttled(w, "firewalls.insert") {
		return
	}
	var f computepb.Firewall
	if ref := readProto(r, &f); ref != nil {
		ref.write(w)
		return
	}
	if ref := checkFirewall(project, &f); ref != nil {
		ref.write(w)
		return
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if op := s.replay(project, globalScope, r.URL.Query().Get("requestId")); op != nil {
		writeProto(w, s.opViewLocked(op, now))
		return
	}
	fws := s.firewallsOf(r, project)
	path := fmt.Sprintf("projects/%s/global/firewalls/%s", project, f.GetName())
	if fws[f.GetName()] != nil {
		writeError(w, http.StatusConflict, "alreadyExists", "", fmt.Sprintf("The resource '%s' already exists", path))
		return
	}
	fws[f.GetName()] = s.firewallPB(r, project, proto.Clone(&f).(*computepb.Firewall), now.Format(time.RFC3339Nano))
	op := s.newOperation(r, project, globalScope, "insert", path)
	op.ready = true
	s.notify()
	writeProto(w, s.opViewLocked(op, now))
}

// checkFirewall checks a rule as GCE does: a name, the project's network,
// either allowed or denied rules with known protocols and port ranges,
// CIDR source ranges.
func checkFirewall(project string, f *computepb.Firewall) *refusal {
	if ref := checkName("resource.name", f.GetName()); ref != nil {
		return ref
	}
	if v := f.GetNetwork(); v != "" {
		p, name, ok := globalRef(v, project, "networks")
		if !ok {
			return invalid("resource.network", v, "The URL is malformed.")
		}
		if p != project || name != defaultNetwork {
			return notFound(fmt.Sprintf("projects/%s/global/networks/%s", p, name))
		}
	}
	if d := f.GetDirection(); d != "" && d != "INGRESS" && d != "EGRESS" {
		return invalid("resource.direction", d, "Must be one of [EGRESS, INGRESS].")
	}
	if p := f.GetPriority(); p < 0 || p > 65535 {
		return invalid("resource.priority", fmt.Sprint(p), "Must be between 0 and 65535.")
	}
	switch {
	case len(f.Allowed) == 0 && len(f.Denied) == 0:
		return invalid("resource.allowed", "", "Exactly one of allowed or denied must be specified.")
	case len(f.Allowed) > 0 && len(f.Denied) > 0:
		return invalid("resource.denied", "", "Exactly one of allowed or denied must be specified.")
	}
	for i, a := range f.Allowed {
		if ref := checkRule(fmt.Sprintf("resource.allowed[%d]", i), a.GetIPProtocol(), a.Ports); ref != nil {
			return ref
		}
	}
	for i, d := range f.Denied {
		if ref := checkRule(fmt.Sprintf("resource.denied[%d]", i), d.GetIPProtocol(), d.Ports); ref != nil {
			return ref
		}
	}
	for i, c := range f.SourceRanges {
		if !validRange(c) {
			return invalid(fmt.Sprintf("resource.sourceRanges[%d]", i), c, "Must be a valid IPV4 or IPV6 CIDR address range.")
		}
	}
	for i, c := range f.DestinationRanges {
		if !validRange(c) {
			return invalid(fmt.Sprintf("resource.destinationRanges[%d]", i), c, "Must be a valid IPV4 or IPV6 CIDR address range.")
		}
	}
	return nil
}

var firewallProtocols = []string{"tcp", "udp", "icmp", "esp", "ah", "sctp", "ipip", "all"}

func checkRule(field, protocol string, ports []string) *refusal {
	if protocol == "" {
		return required(field + ".IPProtocol")
	}
	if n, err := strconv.Atoi(protocol); err != nil && !slices.Contains(firewallProtocols, protocol) || err == nil && (n < 0 || n > 255) {
		return invalid(field+".IPProtocol", protocol, "Must be one of [tcp, udp, icmp, esp, ah, sctp, ipip, all] or an IP protocol number between 0 and 255.")
	}
	for j, p := range ports {
		pf := fmt.Sprintf("%s.ports[%d]", field, j)
		if !slices.Contains([]string{"tcp", "udp", "sctp", "all"}, protocol) {
			return invalid(pf, p, "Ports may only be specified on rules whose protocol is one of [TCP, UDP, SCTP].")
		}
		if !validPorts(p) {
			return invalid(pf, p, "Must be a port number or a port range between 0 and 65535.")
		}
	}
	return nil
}

func validPorts(s string) bool {
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := strconv.Atoi(lo)
	if err != nil || a < 0 || a > 65535 {
		return false
	}
	if !isRange {
		return true
	}
	b, err := strconv.Atoi(hi)
	return err == nil && b >= a && b <= 65535
}

func validRange(s string) bool {
	if _, err := netip.ParsePrefix(s); err == nil {
		return true
	}
	_, err := netip.ParseAddr(s)
	return err == nil
}

func (s *Server) getFirewall(w http.ResponseWriter, r *http.Request, project, name string) {
	if s.throttled(w, "firewalls.get") {
		return
	}
	s.mu.Lock()
	f := s.firewallsOf(r, project)[name]
	var pb *computepb.Firewall
	if f != nil {
		pb = proto.Clone(f).(*computepb.Firewall)
	}
	s.mu.Unlock()
	if pb == nil {
		notFound(fmt.Sprintf("projects/%s/global/firewalls/%s", project, name)).write(w)
		return
	}
	writeProto(w, pb)
}

func (s *Server) listFirewalls(w http.ResponseWriter, r *http.Request, project string) {
	if s.throttled(w, "firewalls.list") {
		return
	}
	s.mu.Lock()
	var all []*computepb.Firewall
	for _, f := range s.firewallsOf(r, project) {
		all = append(all, proto.Clone(f).(*computepb.Firewall))
	}
	s.mu.Unlock()
	slices.SortFunc(all, func(a, b *computepb.Firewall) int { return strings.Compare(a.GetName(), b.GetName()) })
	page, next, ok := listPage(w, r, all, (*computepb.Firewall).GetName)
	if !ok {
		return
	}
	path := "projects/" + project + "/global/firewalls"
	writeProto(w, &computepb.FirewallList{
		Kind: proto.String("compute#firewallList"), Id: proto.String(path),
		Items: page, NextPageToken: next, SelfLink: proto.String(selfLink(r, path)),
	})
}

func (s *Server) deleteFirewall(w http.ResponseWriter, r *http.Request, project, name string) {
	if s.throttled(w, "firewalls.delete") {
		return
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if op := s.replay(project, globalScope, r.URL.Query().Get("requestId")); op != nil {
		writeProto(w, s.opViewLocked(op, now))
		return
	}
	fws := s.firewallsOf(r, project)
	path := fmt.Sprintf("projects/%s/global/firewalls/%s", project, name)
	if fws[name] == nil {
		notFound(path).write(w)
		return
	}
	delete(fws, name)
	op := s.newOperation(r, project, globalScope, "delete", path)
	op.ready = true
	s.notify()
	writeProto(w, s.opViewLocked(op, now))
}
