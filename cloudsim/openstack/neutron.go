package openstack

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Neutron: networks and subnets (seeded, shared by every project), ports
// (one per server, derived from it), security groups and rules (a
// "default" group per project, made on the project's first use, as
// Neutron does), and floating IPs on the external network.
//
// Lists filter on any attribute named in the query, as Neutron does
// (repeated values are alternatives), and honour "fields".

// network is a seeded Neutron network with its one subnet.
type network struct {
	ID, Name, SubnetID, CIDR string
	External                 bool
}

// neutronTime is how Neutron writes created_at/updated_at.
const neutronTime = "2006-01-02T15:04:05Z"

func (s *Server) network(w http.ResponseWriter, r *http.Request, tok token, p []string) {
	if len(p) == 0 || len(p) > 2 {
		neutronError(w, http.StatusNotFound, "HTTPNotFound", "The resource could not be found.")
		return
	}
	coll := p[0]
	if dot := strings.LastIndex(coll, ".json"); dot > 0 {
		coll = coll[:dot]
	}
	id := ""
	if len(p) == 2 {
		id = p[1]
	}
	switch coll {
	case "networks", "subnets", "ports":
		if r.Method != http.MethodGet {
			neutronError(w, http.StatusMethodNotAllowed, "HTTPMethodNotAllowed", "The method is not allowed for this resource.")
			return
		}
		s.readOnly(w, r, tok, coll, id)
	case "security-groups":
		s.securityGroups(w, r, tok, id)
	case "security-group-rules":
		s.securityGroupRules(w, r, tok, id)
	case "floatingips":
		s.floatingIPs(w, r, tok, id)
	default:
		neutronError(w, http.StatusNotFound, "HTTPNotFound", "The resource could not be found.")
	}
}

// singular is a collection's resource name ("security-groups" →
// "security_group") and the NotFound type Neutron uses for it.
func singular(coll string) (name, notFound string) {
	switch coll {
	case "networks":
		return "network", "NetworkNotFound"
	case "subnets":
		return "subnet", "SubnetNotFound"
	case "ports":
		return "port", "PortNotFound"
	case "security-groups":
		return "security_group", "SecurityGroupNotFound"
	case "security-group-rules":
		return "security_group_rule", "SecurityGroupRuleNotFound"
	case "floatingips":
		return "floatingip", "FloatingIPNotFound"
	}
	return coll, "HTTPNotFound"
}

// notFoundMessage is Neutron's message for a missing resource.
func notFoundMessage(coll, id string) string {
	switch coll {
	case "networks":
		return fmt.Sprintf("Network %s could not be found.", id)
	case "subnets":
		return fmt.Sprintf("Subnet %s could not be found.", id)
	case "ports":
		return fmt.Sprintf("Port %s could not be found.", id)
	case "security-groups":
		return fmt.Sprintf("Security group %s does not exist", id)
	case "security-group-rules":
		return fmt.Sprintf("Security group rule %s does not exist", id)
	case "floatingips":
		return fmt.Sprintf("Floating IP %s could not be found", id)
	}
	return "The resource could not be found."
}

// readOnly lists or shows networks, subnets and ports.
func (s *Server) readOnly(w http.ResponseWriter, r *http.Request, tok token, coll, id string) {
	action := coll + ".list"
	if id != "" {
		action = coll + ".get"
	}
	if s.throttled(w, r, action) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var items []map[string]any
	switch coll {
	case "networks":
		for _, n := range s.networks {
			items = append(items, networkJSON(n))
		}
	case "subnets":
		for _, n := range s.networks {
			items = append(items, subnetJSON(n))
		}
	case "ports":
		items = s.portsJSON(time.Now())
	}
	s.answer(w, r, coll, id, items)
}

// answer writes one item of items (by id) or the filtered list.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, coll, id string, items []map[string]any) {
	name, notFound := singular(coll)
	key := strings.ReplaceAll(coll, "-", "_")
	q := r.URL.Query()
	if id != "" {
		for _, it := range items {
			if it["id"] == id {
				writeJSON(w, http.StatusOK, map[string]any{name: selectFields(it, q["fields"])})
				return
			}
		}
		neutronError(w, http.StatusNotFound, notFound, notFoundMessage(coll, id))
		return
	}
	out := []any{}
	for _, it := range items {
		if matches(it, q) {
			out = append(out, selectFields(it, q["fields"]))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{key: out})
}

// matches applies Neutron's attribute filters: every query key that names
// a scalar attribute must equal one of its values.
func matches(it map[string]any, q url.Values) bool {
	for k, vals := range q {
		switch k {
		case "fields", "limit", "marker", "sort_key", "sort_dir", "page_reverse":
			continue
		}
		v, ok := it[k]
		if !ok {
			continue
		}
		got := scalar(v)
		if got == nil {
			continue // lists and objects are not filtered on here
		}
		found := false
		for _, want := range vals {
			if *got == want || (strings.EqualFold(*got, want) && (want == "True" || want == "False")) {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func scalar(v any) *string {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case bool:
		s = strconv.FormatBool(x)
	case int:
		s = strconv.Itoa(x)
	case nil:
		s = ""
	default:
		return nil
	}
	return &s
}

func selectFields(it map[string]any, fields []string) map[string]any {
	if len(fields) == 0 {
		return it
	}
	out := map[string]any{}
	for _, f := range fields {
		if v, ok := it[f]; ok {
			out[f] = v
		}
	}
	return out
}

func networkJSON(n network) map[string]any {
	return map[string]any{
		"id": n.ID, "name": n.Name, "status": "ACTIVE", "admin_state_up": true, "subnets": []string{n.SubnetID},
		"shared": true, "router:external": n.External, "mtu": 1450, "port_security_enabled": true,
		"availability_zones": []string{"nova"}, "availability_zone_hints": []string{}, "ipv4_address_scope": nil,
		"ipv6_address_scope": nil, "is_default": n.External, "description": "", "tags": []string{},
		"tenant_id": "admin", "project_id": "admin", "provider:network_type": nil, "revision_number": 1,
		"created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
	}
}

func subnetJSON(n network) map[string]any {
	gw := strings.TrimSuffix(n.CIDR, "0/24") + "1"
	return map[string]any{
		"id": n.SubnetID, "name": n.Name + "-subnet", "network_id": n.ID, "cidr": n.CIDR, "ip_version": 4,
		"gateway_ip": gw, "enable_dhcp": !n.External, "dns_nameservers": []string{}, "host_routes": []any{},
		"allocation_pools": []any{map[string]any{"start": strings.TrimSuffix(gw, "1") + "2", "end": strings.TrimSuffix(gw, "1") + "254"}},
		"tenant_id":        "admin", "project_id": "admin", "description": "", "tags": []string{}, "revision_number": 1,
		"ipv6_ra_mode": nil, "ipv6_address_mode": nil, "subnetpool_id": nil, "service_types": []string{},
		"created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
	}
}

// portID is the ID of a server's one port: stable, UUID-shaped.
func portID(serverID string) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte("port/"+serverID)).String()
}

// portsJSON lists the ports of the servers that have an address on a
// network. Called with s.mu held.
func (s *Server) portsJSON(now time.Time) []map[string]any {
	var out []map[string]any
	for _, sv := range s.servers {
		if !sv.visible(now) || sv.address == "" || sv.netID == "" {
			continue
		}
		n := s.findNetwork(sv.netID)
		out = append(out, map[string]any{
			"id": portID(sv.id), "name": "", "network_id": n.ID, "device_id": sv.id, "device_owner": "compute:" + sv.az,
			"mac_address": mac(sv.id), "status": "ACTIVE", "admin_state_up": true,
			"fixed_ips":       []any{map[string]any{"subnet_id": n.SubnetID, "ip_address": sv.address}},
			"security_groups": append([]string{}, sv.secGroupIDs...), "tenant_id": sv.projectID, "project_id": sv.projectID,
			"binding:vnic_type": "normal", "port_security_enabled": true, "allowed_address_pairs": []any{},
			"description": "", "tags": []string{}, "revision_number": 1,
			"created_at": sv.created.UTC().Format(neutronTime), "updated_at": sv.created.UTC().Format(neutronTime),
		})
	}
	return out
}

// portServer finds the live server behind a port ID. Called with s.mu held.
func (s *Server) portServer(id string, now time.Time) *server {
	for _, sv := range s.servers {
		if portID(sv.id) == id && sv.address != "" && sv.netID != "" && (sv.goneAt.IsZero() || now.Before(sv.goneAt)) {
			return sv
		}
	}
	return nil
}
