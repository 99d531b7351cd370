package openstack

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Security groups are records: cloudsim keeps and validates them as
// Neutron does, but its backing hosts sit on one docker network with no
// filtering, so rules are not enforced.

type secGroup struct {
	id, name, description, projectID string
	created                          time.Time
}

type sgRule struct {
	id, groupID, projectID string
	direction, ethertype   string
	protocol               string // "" is any
	portMin, portMax       *int
	remoteIP, remoteGroup  string
	description            string
	created                time.Time
}

// defaultGroup returns the project's "default" group, making it (with
// Neutron's default rules: all egress, ingress from the group itself, for
// IPv4 and IPv6) on first use. Called with s.mu held.
func (s *Server) defaultGroup(projectID string) *secGroup {
	for _, g := range s.groups {
		if g.projectID == projectID && g.name == "default" {
			return g
		}
	}
	g := &secGroup{id: uuid.NewString(), name: "default", description: "Default security group", projectID: projectID, created: time.Now().UTC()}
	s.groups[g.id] = g
	for _, eth := range []string{"IPv4", "IPv6"} {
		for _, dir := range []string{"egress", "ingress"} {
			rl := &sgRule{id: uuid.NewString(), groupID: g.id, projectID: projectID, direction: dir, ethertype: eth, created: g.created}
			if dir == "ingress" {
				rl.remoteGroup = g.id
			}
			s.rules[rl.id] = rl
		}
	}
	return g
}

// findGroup finds a project's group by ID or (unique) name. Called with
// s.mu held.
func (s *Server) findGroup(projectID, ref string) *secGroup {
	s.defaultGroup(projectID)
	if g := s.groups[ref]; g != nil && g.projectID == projectID {
		return g
	}
	var found *secGroup
	for _, g := range s.groups {
		if g.projectID == projectID && g.name == ref {
			if found != nil {
				return nil // ambiguous, as Nova reports it: not found
			}
			found = g
		}
	}
	return found
}

func (s *Server) groupJSON(g *secGroup) map[string]any {
	rules := []any{}
	for _, rl := range s.rules {
		if rl.groupID == g.id {
			rules = append(rules, ruleJSON(rl))
		}
	}
	ts := g.created.Format(neutronTime)
	return map[string]any{
		"id": g.id, "name": g.name, "description": g.description, "project_id": g.projectID, "tenant_id": g.projectID,
		"security_group_rules": rules, "stateful": true, "shared": false, "tags": []string{}, "revision_number": 1,
		"created_at": ts, "updated_at": ts,
	}
}

func ruleJSON(rl *sgRule) map[string]any {
	ts := rl.created.Format(neutronTime)
	return map[string]any{
		"id": rl.id, "security_group_id": rl.groupID, "direction": rl.direction, "ethertype": rl.ethertype,
		"protocol": nilIfEmpty(rl.protocol), "port_range_min": intOrNil(rl.portMin), "port_range_max": intOrNil(rl.portMax),
		"remote_ip_prefix": nilIfEmpty(rl.remoteIP), "remote_group_id": nilIfEmpty(rl.remoteGroup),
		"remote_address_group_id": nil, "description": rl.description, "project_id": rl.projectID, "tenant_id": rl.projectID,
		"revision_number": 0, "tags": []string{}, "created_at": ts, "updated_at": ts,
	}
}

func intOrNil(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

func (s *Server) securityGroups(w http.ResponseWriter, r *http.Request, tok token, id string) {
	switch {
	case r.Method == http.MethodGet:
		if s.throttled(w, r, "security_groups."+map[bool]string{true: "list", false: "get"}[id == ""]) {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.defaultGroup(tok.projectID)
		var items []map[string]any
		for _, g := range s.groups {
			if g.projectID == tok.projectID {
				items = append(items, s.groupJSON(g))
			}
		}
		s.answer(w, r, "security-groups", id, items)
	case r.Method == http.MethodPost && id == "":
		s.createGroup(w, r, tok)
	case r.Method == http.MethodPut && id != "":
		s.updateGroup(w, r, tok, id)
	case r.Method == http.MethodDelete && id != "":
		s.deleteGroup(w, r, tok, id)
	default:
		neutronError(w, http.StatusMethodNotAllowed, "HTTPMethodNotAllowed", "The method is not allowed for this resource.")
	}
}

func (s *Server) createGroup(w http.ResponseWriter, r *http.Request, tok token) {
	if s.throttled(w, r, "security_groups.create") {
		return
	}
	var body struct {
		Group *struct {
			Name        string `json:"name"`
			Description string `json:"description"`
		} `json:"security_group"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Group == nil {
		neutronError(w, http.StatusBadRequest, "HTTPBadRequest", "Resource body required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.defaultGroup(tok.projectID)
	if body.Group.Name == "default" {
		neutronError(w, http.StatusConflict, "SecurityGroupDefaultAlreadyExists", "Default security group already exists.")
		return
	}
	g := &secGroup{id: uuid.NewString(), name: body.Group.Name, description: body.Group.Description, projectID: tok.projectID, created: time.Now().UTC()}
	s.groups[g.id] = g
	// Neutron gives every new group an egress-anything rule per ethertype.
	for _, eth := range []string{"IPv4", "IPv6"} {
		rl := &sgRule{id: uuid.NewString(), groupID: g.id, projectID: g.projectID, direction: "egress", ethertype: eth, created: g.created}
		s.rules[rl.id] = rl
	}
	writeJSON(w, http.StatusCreated, map[string]any{"security_group": s.groupJSON(g)})
}

func (s *Server) updateGroup(w http.ResponseWriter, r *http.Request, tok token, id string) {
	if s.throttled(w, r, "security_groups.update") {
		return
	}
	var body struct {
		Group *struct {
			Name        *string `json:"name"`
			Description *string `json:"description"`
		} `json:"security_group"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Group == nil {
		neutronError(w, http.StatusBadRequest, "HTTPBadRequest", "Resource body required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[id]
	if g == nil || g.projectID != tok.projectID {
		neutronError(w, http.StatusNotFound, "SecurityGroupNotFound", notFoundMessage("security-groups", id))
		return
	}
	if body.Group.Name != nil {
		if g.name == "default" && *body.Group.Name != "default" {
			neutronError(w, http.StatusConflict, "SecurityGroupCannotUpdateDefault", "Updating default security group not allowed.")
			return
		}
		g.name = *body.Group.Name
	}
	if body.Group.Description != nil {
		g.description = *body.Group.Description
	}
	writeJSON(w, http.StatusOK, map[string]any{"security_group": s.groupJSON(g)})
}

func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request, tok token, id string) {
	if s.throttled(w, r, "security_groups.delete") {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[id]
	if g == nil || g.projectID != tok.projectID {
		neutronError(w, http.StatusNotFound, "SecurityGroupNotFound", notFoundMessage("security-groups", id))
		return
	}
	if g.name == "default" {
		neutronError(w, http.StatusConflict, "SecurityGroupCannotRemoveDefault", "Insufficient rights for removing default security group.")
		return
	}
	now := time.Now()
	for _, sv := range s.servers {
		if sv.goneAt.IsZero() || now.Before(sv.goneAt) {
			for _, gid := range sv.secGroupIDs {
				if gid == id {
					neutronError(w, http.StatusConflict, "SecurityGroupInUse", fmt.Sprintf("Security Group %s in use.", id))
					return
				}
			}
		}
	}
	for rid, rl := range s.rules {
		if rl.groupID == id {
			delete(s.rules, rid)
		}
	}
	delete(s.groups, id)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) securityGroupRules(w http.ResponseWriter, r *http.Request, tok token, id string) {
	switch {
	case r.Method == http.MethodGet:
		if s.throttled(w, r, "security_group_rules."+map[bool]string{true: "list", false: "get"}[id == ""]) {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.defaultGroup(tok.projectID)
		var items []map[string]any
		for _, rl := range s.rules {
			if rl.projectID == tok.projectID {
				items = append(items, ruleJSON(rl))
			}
		}
		s.answer(w, r, "security-group-rules", id, items)
	case r.Method == http.MethodPost && id == "":
		s.createRule(w, r, tok)
	case r.Method == http.MethodDelete && id != "":
		if s.throttled(w, r, "security_group_rules.delete") {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		rl := s.rules[id]
		if rl == nil || rl.projectID != tok.projectID {
			neutronError(w, http.StatusNotFound, "SecurityGroupRuleNotFound", notFoundMessage("security-group-rules", id))
			return
		}
		delete(s.rules, id)
		w.WriteHeader(http.StatusNoContent)
	default:
		neutronError(w, http.StatusMethodNotAllowed, "HTTPMethodNotAllowed", "The method is not allowed for this resource.")
	}
}

type ruleRequest struct {
	GroupID     string          `json:"security_group_id"`
	Direction   string          `json:"direction"`
	Ethertype   string          `json:"ethertype"`
	Protocol    json.RawMessage `json:"protocol"`
	PortMin     *int            `json:"port_range_min"`
	PortMax     *int            `json:"port_range_max"`
	RemoteIP    *string         `json:"remote_ip_prefix"`
	RemoteGroup *string         `json:"remote_group_id"`
	Description string          `json:"description"`
}

func (s *Server) createRule(w http.ResponseWriter, r *http.Request, tok token) {
	if s.throttled(w, r, "security_group_rules.create") {
		return
	}
	var body struct {
		Rule *ruleRequest `json:"security_group_rule"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Rule == nil {
		neutronError(w, http.StatusBadRequest, "HTTPBadRequest", "Resource body required")
		return
	}
	rl, kind, msg := parseRule(*body.Rule)
	if msg != "" {
		neutronError(w, http.StatusBadRequest, kind, msg)
		return
	}
	rl.projectID = tok.projectID
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.groups[rl.groupID]; g == nil || g.projectID != tok.projectID {
		neutronError(w, http.StatusNotFound, "SecurityGroupNotFound", notFoundMessage("security-groups", rl.groupID))
		return
	}
	if rl.remoteGroup != "" {
		if g := s.groups[rl.remoteGroup]; g == nil || g.projectID != tok.projectID {
			neutronError(w, http.StatusNotFound, "SecurityGroupNotFound", notFoundMessage("security-groups", rl.remoteGroup))
			return
		}
	}
	for _, o := range s.rules {
		if sameRule(o, rl) {
			neutronError(w, http.StatusConflict, "SecurityGroupRuleExists", fmt.Sprintf("Security group rule already exists. Rule id is %s.", o.id))
			return
		}
	}
	s.rules[rl.id] = rl
	writeJSON(w, http.StatusCreated, map[string]any{"security_group_rule": ruleJSON(rl)})
}

// protocols are the names Neutron accepts besides the numbers 0..255.
var protocols = map[string]bool{
	"ah": true, "dccp": true, "egp": true, "esp": true, "gre": true, "icmp": true, "icmpv6": true, "igmp": true,
	"ipip": true, "ipv6-encap": true, "ipv6-frag": true, "ipv6-icmp": true, "ipv6-nonxt": true, "ipv6-opts": true,
	"ipv6-route": true, "ospf": true, "pgm": true, "rsvp": true, "sctp": true, "tcp": true, "udp": true, "udplite": true, "vrrp": true,
}

// parseRule checks a rule request as Neutron does and returns the rule or
// Neutron's message for the first problem.
func parseRule(in ruleRequest) (*sgRule, string, string) {
	rl, msg := checkRule(in)
	switch {
	case msg == "":
		return rl, "", ""
	case strings.HasPrefix(msg, "Must also specify protocol"):
		return nil, "SecurityGroupProtocolRequiredWithPorts", msg
	case strings.HasPrefix(msg, "Conflicting value"), strings.HasPrefix(msg, "Only remote_ip_prefix"):
		return nil, "SecurityGroupRuleParameterConflict", msg
	case strings.HasPrefix(msg, "Security group rule protocol"):
		return nil, "SecurityGroupRuleInvalidProtocol", msg
	case strings.HasPrefix(msg, "Invalid value for port"), strings.HasPrefix(msg, "For TCP/UDP"), strings.HasPrefix(msg, "Invalid value for ICMP"):
		return nil, "SecurityGroupInvalidPortValue", msg
	}
	return nil, "HTTPBadRequest", msg
}

// checkRule is parseRule's checks, each returning Neutron's message.
func checkRule(in ruleRequest) (*sgRule, string) {
	rl := &sgRule{id: uuid.NewString(), groupID: in.GroupID, direction: in.Direction, ethertype: in.Ethertype,
		portMin: in.PortMin, portMax: in.PortMax, description: in.Description, created: time.Now().UTC()}
	if rl.groupID == "" {
		return nil, "Failed to parse request. Required attribute 'security_group_id' not specified"
	}
	if rl.direction != "ingress" && rl.direction != "egress" {
		return nil, fmt.Sprintf("Invalid input for direction. Reason: '%s' is not in ['ingress', 'egress'].", rl.direction)
	}
	if rl.ethertype == "" {
		rl.ethertype = "IPv4"
	}
	if rl.ethertype != "IPv4" && rl.ethertype != "IPv6" {
		return nil, fmt.Sprintf("Invalid input for ethertype. Reason: '%s' is not in ['IPv4', 'IPv6'].", rl.ethertype)
	}
	var proto any
	if len(in.Protocol) > 0 {
		_ = json.Unmarshal(in.Protocol, &proto)
	}
	switch p := proto.(type) {
	case nil:
	case string:
		rl.protocol = strings.ToLower(p)
	case float64:
		rl.protocol = strconv.Itoa(int(p))
	}
	if rl.protocol == "any" {
		rl.protocol = ""
	}
	if n, err := strconv.Atoi(rl.protocol); rl.protocol != "" && !protocols[rl.protocol] && (err != nil || n < 0 || n > 255) {
		return nil, fmt.Sprintf("Security group rule protocol %s not supported. Only protocol values [None, 'ah', 'dccp', 'egp', 'esp', 'gre', 'icmp', 'icmpv6', 'igmp', 'ipip', 'ipv6-encap', 'ipv6-frag', 'ipv6-icmp', 'ipv6-nonxt', 'ipv6-opts', 'ipv6-route', 'ospf', 'pgm', 'rsvp', 'sctp', 'tcp', 'udp', 'udplite', 'vrrp'] and integer representations [0 to 255] are supported.", rl.protocol)
	}
	if msg := checkPorts(rl); msg != "" {
		return nil, msg
	}
	if in.RemoteIP != nil {
		rl.remoteIP = *in.RemoteIP
	}
	if in.RemoteGroup != nil {
		rl.remoteGroup = *in.RemoteGroup
	}
	if rl.remoteIP != "" && rl.remoteGroup != "" {
		return nil, "Only remote_ip_prefix or remote_group_id may be provided."
	}
	if rl.remoteIP != "" {
		ip, cidr, err := net.ParseCIDR(rl.remoteIP)
		if err != nil {
			if ip = net.ParseIP(rl.remoteIP); ip == nil {
				return nil, fmt.Sprintf("Invalid input for remote_ip_prefix. Reason: '%s' is not a valid IP subnet.", rl.remoteIP)
			}
			bits := 32
			if ip.To4() == nil {
				bits = 128
			}
			cidr = &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}
		}
		if (ip.To4() != nil) != (rl.ethertype == "IPv4") {
			return nil, fmt.Sprintf("Conflicting value ethertype %s for CIDR %s", rl.ethertype, rl.remoteIP)
		}
		rl.remoteIP = cidr.String()
	}
	return rl, ""
}

// checkPorts applies Neutron's port range rules.
func checkPorts(rl *sgRule) string {
	if rl.portMin == nil && rl.portMax == nil {
		return ""
	}
	if rl.protocol == "" {
		return "Must also specify protocol if port range is given."
	}
	switch rl.protocol {
	case "tcp", "udp", "dccp", "sctp", "udplite", "6", "17", "33", "132", "136":
		for _, p := range []*int{rl.portMin, rl.portMax} {
			if p != nil && (*p < 1 || *p > 65535) {
				return fmt.Sprintf("Invalid value for port %d", *p)
			}
		}
		if rl.portMin != nil && rl.portMax != nil && *rl.portMin > *rl.portMax {
			return "For TCP/UDP protocols, port_range_min must be <= port_range_max"
		}
	case "icmp", "icmpv6", "ipv6-icmp", "1", "58":
		for _, p := range []*int{rl.portMin, rl.portMax} {
			if p != nil && (*p < 0 || *p > 255) {
				return fmt.Sprintf("Invalid value for ICMP field (type or code) %d. It must be 0 to 255.", *p)
			}
		}
	}
	return ""
}

func sameRule(a, b *sgRule) bool {
	eq := func(x, y *int) bool { return (x == nil && y == nil) || (x != nil && y != nil && *x == *y) }
	return a.groupID == b.groupID && a.direction == b.direction && a.ethertype == b.ethertype && a.protocol == b.protocol &&
		eq(a.portMin, b.portMin) && eq(a.portMax, b.portMax) && a.remoteIP == b.remoteIP && a.remoteGroup == b.remoteGroup
}
