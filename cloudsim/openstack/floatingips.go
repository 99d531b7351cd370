package openstack

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
)

// Floating IPs are allocated from the external network's subnet and
// associated with a server's port.
//
// cloudsim cannot NAT: its backing hosts are containers on one docker
// network, and rewriting the host's packet filter is not something an
// emulator should do. So a floating IP associated with a *backed* server
// reports that server's own container address as floating_ip_address (and
// as its "floating" entry in Nova's addresses): the address a user reads
// is one they can SSH to, which is what a floating IP is for. Unassociated,
// or without a backing, it shows the address allocated from the external
// subnet (172.24.4.0/24, as DevStack's public network).
type floatingIP struct {
	id, address, networkID, projectID string
	portID, description               string
	created                           time.Time
}

// effectiveAddress is what the floating IP answers to now (see above).
// Called with s.mu held.
func (s *Server) effectiveAddress(f *floatingIP, now time.Time) (addr, fixed string, sv *server) {
	if f.portID == "" {
		return f.address, "", nil
	}
	sv = s.portServer(f.portID, now)
	if sv == nil {
		return f.address, "", nil
	}
	if s.opts.Backing != nil {
		return sv.address, sv.address, sv
	}
	return f.address, sv.address, sv
}

func (s *Server) floatingJSON(f *floatingIP, now time.Time) map[string]any {
	addr, fixed, sv := s.effectiveAddress(f, now)
	status, port, router := "DOWN", any(nil), any(nil)
	if sv != nil {
		status, port, router = "ACTIVE", f.portID, stableID("router", f.projectID)
	}
	ts := f.created.Format(neutronTime)
	return map[string]any{
		"id": f.id, "floating_ip_address": addr, "floating_network_id": f.networkID, "port_id": port,
		"fixed_ip_address": nilIfEmpty(fixed), "router_id": router, "status": status, "description": f.description,
		"project_id": f.projectID, "tenant_id": f.projectID, "tags": []string{}, "revision_number": 1,
		"dns_domain": "", "dns_name": "", "qos_policy_id": nil, "port_forwardings": []any{},
		"created_at": ts, "updated_at": ts,
	}
}

func (s *Server) floatingIPs(w http.ResponseWriter, r *http.Request, tok token, id string) {
	switch {
	case r.Method == http.MethodGet:
		if s.throttled(w, r, "floatingips."+map[bool]string{true: "list", false: "get"}[id == ""]) {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		now := time.Now()
		var items []map[string]any
		for _, f := range s.fips {
			if f.projectID == tok.projectID {
				items = append(items, s.floatingJSON(f, now))
			}
		}
		s.answer(w, r, "floatingips", id, items)
	case r.Method == http.MethodPost && id == "":
		s.createFloatingIP(w, r, tok)
	case r.Method == http.MethodPut && id != "":
		s.updateFloatingIP(w, r, tok, id)
	case r.Method == http.MethodDelete && id != "":
		if s.throttled(w, r, "floatingips.delete") {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if f := s.fips[id]; f == nil || f.projectID != tok.projectID {
			neutronError(w, http.StatusNotFound, "FloatingIPNotFound", notFoundMessage("floatingips", id))
			return
		}
		delete(s.fips, id)
		w.WriteHeader(http.StatusNoContent)
	default:
		neutronError(w, http.StatusMethodNotAllowed, "HTTPMethodNotAllowed", "The method is not allowed for this resource.")
	}
}

type floatingRequest struct {
	NetworkID   string           `json:"floating_network_id"`
	PortID      *json.RawMessage `json:"port_id"`
	Description *string          `json:"description"`
}

func (s *Server) createFloatingIP(w http.ResponseWriter, r *http.Request, tok token) {
	if s.throttled(w, r, "floatingips.create") {
		return
	}
	var body struct {
		IP *floatingRequest `json:"floatingip"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.IP == nil {
		neutronError(w, http.StatusBadRequest, "HTTPBadRequest", "Resource body required")
		return
	}
	in := body.IP
	if in.NetworkID == "" {
		neutronError(w, http.StatusBadRequest, "HTTPBadRequest", "Failed to parse request. Required attribute 'floating_network_id' not specified")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.findNetwork(in.NetworkID)
	if n == nil {
		neutronError(w, http.StatusNotFound, "NetworkNotFound", notFoundMessage("networks", in.NetworkID))
		return
	}
	if !n.External {
		neutronError(w, http.StatusBadRequest, "BadRequest", fmt.Sprintf("Bad floatingip request: Network %s is not a valid external network.", n.ID))
		return
	}
	s.fipSeq++
	if s.fipSeq > 240 {
		neutronError(w, http.StatusConflict, "IpAddressGenerationFailure", fmt.Sprintf("No more IP addresses available on network %s.", n.ID))
		return
	}
	f := &floatingIP{id: uuid.NewString(), address: fmt.Sprintf("172.24.4.%d", 10+s.fipSeq), networkID: n.ID,
		projectID: tok.projectID, created: time.Now().UTC()}
	if in.Description != nil {
		f.description = *in.Description
	}
	if in.PortID != nil {
		if code, kind, msg := s.associate(f, *in.PortID, time.Now()); code != 0 {
			neutronError(w, code, kind, msg)
			return
		}
	}
	s.fips[f.id] = f
	writeJSON(w, http.StatusCreated, map[string]any{"floatingip": s.floatingJSON(f, time.Now())})
}

func (s *Server) updateFloatingIP(w http.ResponseWriter, r *http.Request, tok token, id string) {
	if s.throttled(w, r, "floatingips.update") {
		return
	}
	var body struct {
		IP *floatingRequest `json:"floatingip"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.IP == nil {
		neutronError(w, http.StatusBadRequest, "HTTPBadRequest", "Resource body required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fips[id]
	if f == nil || f.projectID != tok.projectID {
		neutronError(w, http.StatusNotFound, "FloatingIPNotFound", notFoundMessage("floatingips", id))
		return
	}
	now := time.Now()
	if body.IP.PortID != nil {
		if code, kind, msg := s.associate(f, *body.IP.PortID, now); code != 0 {
			neutronError(w, code, kind, msg)
			return
		}
	}
	if body.IP.Description != nil {
		f.description = *body.IP.Description
	}
	writeJSON(w, http.StatusOK, map[string]any{"floatingip": s.floatingJSON(f, now)})
}

// associate points f at a port (a JSON string) or nowhere (null), with
// Neutron's errors. Called with s.mu held.
func (s *Server) associate(f *floatingIP, raw json.RawMessage, now time.Time) (int, string, string) {
	var port *string
	if err := json.Unmarshal(raw, &port); err != nil {
		return http.StatusBadRequest, "HTTPBadRequest", "Invalid input for port_id."
	}
	if port == nil || *port == "" {
		f.portID = ""
		return 0, "", ""
	}
	sv := s.portServer(*port, now)
	if sv == nil {
		return http.StatusNotFound, "PortNotFound", notFoundMessage("ports", *port)
	}
	for _, o := range s.fips {
		if o != f && o.portID == *port {
			return http.StatusConflict, "FloatingIPPortAlreadyAssociated", fmt.Sprintf(
				"Cannot associate floating IP %s (%s) with port %s using fixed IP %s, as that fixed IP already has a floating IP on external network %s.",
				f.address, f.id, *port, sv.address, f.networkID)
		}
	}
	f.portID = *port
	return 0, "", ""
}

// floatingOf is the floating address associated with sv, if any. Called
// with s.mu held.
func (s *Server) floatingOf(sv *server, now time.Time) string {
	pid := portID(sv.id)
	for _, f := range s.fips {
		if f.portID == pid {
			addr, _, _ := s.effectiveAddress(f, now)
			return addr
		}
	}
	return ""
}
