package openstack

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Version discovery: the documents keystoneauth1 (the openstack CLI,
// openstacksdk) and gophercloud read before their first real call. None of
// them needs a token, as in the real services.

// Nova's microversion range. The maximum is the newest microversion whose
// response shapes this emulator models (keypair type at 2.2, user_id at
// 2.10, networks required at 2.37); a client asking for "latest" gets it.
var (
	minMicroversion = microversion{2, 1}
	maxMicroversion = microversion{2, 38}
)

const keystoneUpdated = "2020-04-07T00:00:00Z"

// identityVersion is Keystone's document for v3.
func (s *Server) identityVersion(r *http.Request) map[string]any {
	return map[string]any{
		"id": "v3.14", "status": "stable", "updated": keystoneUpdated,
		"links":       []any{map[string]any{"rel": "self", "href": s.baseURL(r) + "/identity/v3/"}},
		"media-types": []any{map[string]any{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}},
	}
}

// identityDiscovery answers GET /identity (300 with every version, as
// Keystone's root does) and GET /identity/v3 (200 with that version).
func (s *Server) identityDiscovery(w http.ResponseWriter, r *http.Request, versioned bool) {
	if versioned {
		writeJSON(w, http.StatusOK, map[string]any{"version": s.identityVersion(r)})
		return
	}
	writeJSON(w, http.StatusMultipleChoices, map[string]any{"versions": map[string]any{"values": []any{s.identityVersion(r)}}})
}

func (s *Server) computeVersion(r *http.Request) map[string]any {
	return map[string]any{
		"id": "v2.1", "status": "CURRENT", "version": maxMicroversion.String(), "min_version": minMicroversion.String(),
		"updated": "2013-07-23T11:33:21Z",
		"links": []any{
			map[string]any{"rel": "self", "href": s.baseURL(r) + "/compute/v2.1/"},
			map[string]any{"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"},
		},
		"media-types": []any{map[string]any{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}},
	}
}

// computeDiscovery answers GET /compute/ (200 with the versions list, as
// Nova's root does) and GET /compute/v2.1/.
func (s *Server) computeDiscovery(w http.ResponseWriter, r *http.Request, versioned bool) {
	if versioned {
		writeJSON(w, http.StatusOK, map[string]any{"version": s.computeVersion(r)})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"versions": []any{s.computeVersion(r)}})
}

// versions answers Glance's root (300, as Glance does) and Neutron's
// (200), which clients read to check an unversioned catalog endpoint.
func (s *Server) versions(w http.ResponseWriter, r *http.Request, service string) {
	if service == "network" {
		writeJSON(w, http.StatusOK, map[string]any{"versions": []any{map[string]any{
			"id": "v2.0", "status": "CURRENT", "links": []any{map[string]any{"rel": "self", "href": s.baseURL(r) + "/network/v2.0/"}},
		}}})
		return
	}
	writeJSON(w, http.StatusMultipleChoices, map[string]any{"versions": []any{map[string]any{
		"id": "v2.16", "status": "CURRENT", "links": []any{map[string]any{"rel": "self", "href": s.baseURL(r) + "/image/v2/"}},
	}}})
}

// microversion is a Nova API microversion, 2.x.
type microversion struct{ major, minor int }

func (v microversion) String() string { return fmt.Sprintf("%d.%d", v.major, v.minor) }

func (v microversion) atLeast(major, minor int) bool {
	return v.major > major || (v.major == major && v.minor >= minor)
}

// negotiate reads the microversion a Nova request asks for, from
// "OpenStack-API-Version: compute X.Y" or the older
// "X-OpenStack-Nova-API-Version: X.Y" (2.1 when neither is there), and
// echoes it in the response headers as Nova does. A malformed or
// unsupported one is answered here (400 or 406) and ok is false.
func negotiate(w http.ResponseWriter, r *http.Request) (v microversion, ok bool) {
	raw := ""
	for _, h := range r.Header.Values("OpenStack-API-Version") {
		for _, part := range strings.Split(h, ",") {
			if svc, ver, found := strings.Cut(strings.TrimSpace(part), " "); found && strings.EqualFold(svc, "compute") {
				raw = strings.TrimSpace(ver)
			}
		}
	}
	if raw == "" {
		raw = strings.TrimSpace(r.Header.Get("X-OpenStack-Nova-API-Version"))
	}
	switch {
	case raw == "":
		v = minMicroversion
	case strings.EqualFold(raw, "latest"):
		v = maxMicroversion
	default:
		maj, min, found := strings.Cut(raw, ".")
		a, err1 := strconv.Atoi(maj)
		b, err2 := strconv.Atoi(min)
		if !found || err1 != nil || err2 != nil {
			novaError(w, http.StatusBadRequest, "badRequest", fmt.Sprintf("Invalid API version request string %s", raw))
			return v, false
		}
		v = microversion{a, b}
	}
	w.Header().Set("OpenStack-API-Version", "compute "+v.String())
	w.Header().Set("X-OpenStack-Nova-API-Version", v.String())
	w.Header().Add("Vary", "OpenStack-API-Version, X-OpenStack-Nova-API-Version")
	if !v.atLeast(minMicroversion.major, minMicroversion.minor) || !maxMicroversion.atLeast(v.major, v.minor) {
		novaError(w, http.StatusNotAcceptable, "computeFault", fmt.Sprintf(
			"Version %s is not supported by the API. Minimum is %s and maximum is %s.", v, minMicroversion, maxMicroversion))
		return v, false
	}
	return v, true
}
