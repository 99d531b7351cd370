package openstack

import (
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
)

// token is what Keystone knows about an issued token.
type token struct {
	expires                time.Time
	projectID, projectName string
	userID, userName       string
}

// defaultDomain is the only domain: Keystone's "Default", as DevStack has.
const defaultDomainID, defaultDomainName = "default", "Default"

type domainRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type authRequest struct {
	Auth struct {
		Identity struct {
			Methods  []string `json:"methods"`
			Password struct {
				User struct {
					ID       string     `json:"id"`
					Name     string     `json:"name"`
					Password string     `json:"password"`
					Domain   *domainRef `json:"domain"`
				} `json:"user"`
			} `json:"password"`
			AppCred struct {
				ID     string `json:"id"`
				Name   string `json:"name"`
				Secret string `json:"secret"`
			} `json:"application_credential"`
		} `json:"identity"`
		Scope struct {
			Project struct {
				ID     string     `json:"id"`
				Name   string     `json:"name"`
				Domain *domainRef `json:"domain"`
			} `json:"project"`
		} `json:"scope"`
	} `json:"auth"`
}

// stableID is a Keystone-looking ID (32 hex digits) derived from a name,
// so a project or user keeps its ID across tokens.
func stableID(kind, name string) string {
	u := uuid.NewSHA1(uuid.NameSpaceOID, []byte(kind+"/"+name))
	return hex.EncodeToString(u[:])
}

// knownDomain reports whether d, when given, names the Default domain.
func knownDomain(d *domainRef) bool {
	return d == nil || d.ID == defaultDomainID || (d.ID == "" && d.Name == defaultDomainName)
}

func (s *Server) identity(w http.ResponseWriter, r *http.Request, p []string) {
	if len(p) != 3 || p[0] != "v3" || p[1] != "auth" || p[2] != "tokens" || r.Method != http.MethodPost {
		keystoneError(w, http.StatusNotFound, "Not Found", "The resource could not be found.")
		return
	}
	s.sim.Call("tokens.create") // Keystone is not throttled here: counted only
	var req authRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		keystoneError(w, http.StatusBadRequest, "Bad Request", "Expecting to find auth in request body.")
		return
	}
	tok, method, ok := s.authenticate(req)
	if !ok {
		keystoneError(w, http.StatusUnauthorized, "Unauthorized", "The request you have made requires authentication.")
		return
	}
	id := strings.ReplaceAll(uuid.NewString(), "-", "")
	now := time.Now().UTC()
	tok.expires = now.Add(time.Hour)
	s.mu.Lock()
	s.tokens[id] = tok
	s.mu.Unlock()

	base := s.baseURL(r)
	ep := func(kind, name, u string) map[string]any {
		return map[string]any{"type": kind, "name": name, "id": stableID("service", kind), "endpoints": []any{map[string]any{
			"id": stableID("endpoint", kind), "interface": "public", "region": s.opts.Region, "region_id": s.opts.Region, "url": u,
		}}}
	}
	domain := map[string]any{"id": defaultDomainID, "name": defaultDomainName}
	w.Header().Set("X-Subject-Token", id)
	writeJSON(w, http.StatusCreated, map[string]any{"token": map[string]any{
		"methods":    []string{method},
		"issued_at":  now.Format("2006-01-02T15:04:05.000000Z"),
		"expires_at": tok.expires.Format("2006-01-02T15:04:05.000000Z"),
		"audit_ids":  []string{id[:22]},
		"is_domain":  false,
		"project":    map[string]any{"id": tok.projectID, "name": tok.projectName, "domain": domain},
		"user":       map[string]any{"id": tok.userID, "name": tok.userName, "domain": domain, "password_expires_at": nil},
		"roles":      []any{map[string]any{"id": stableID("role", "member"), "name": "member"}},
		"catalog": []any{
			ep("identity", "keystone", base+"/identity/v3"),
			ep("compute", "nova", base+"/compute/v2.1"),
			ep("image", "glance", base+"/image"),
			ep("network", "neutron", base+"/network"),
		},
	}})
}

// authenticate checks a password or application credential request and
// returns the token it earns. A user or project named without the Default
// domain is refused, as Keystone refuses an unknown domain.
func (s *Server) authenticate(req authRequest) (token, string, bool) {
	id := req.Auth.Identity
	var tok token
	method := ""
	switch {
	case contains(id.Methods, "application_credential"):
		method = "application_credential"
		if (id.AppCred.ID == "" && id.AppCred.Name == "") || id.AppCred.Secret == "" ||
			(s.opts.Password != "" && id.AppCred.Secret != s.opts.Password) {
			return tok, "", false
		}
		tok.userName = "appcred-" + id.AppCred.ID + id.AppCred.Name
	case contains(id.Methods, "password"):
		method = "password"
		u := id.Password.User
		if (u.ID == "" && u.Name == "") || u.Password == "" || (s.opts.Password != "" && u.Password != s.opts.Password) {
			return tok, "", false
		}
		if u.ID == "" && (u.Domain == nil || !knownDomain(u.Domain)) {
			return tok, "", false
		}
		tok.userName = u.Name
		if tok.userName == "" {
			tok.userName = u.ID
		}
	default:
		return tok, "", false
	}
	tok.userID = stableID("user", tok.userName)
	pr := req.Auth.Scope.Project
	if pr.Name != "" && (pr.Domain == nil || !knownDomain(pr.Domain)) {
		return tok, "", false
	}
	tok.projectName = pr.Name
	switch {
	case pr.Name == "" && pr.ID != "":
		tok.projectName = pr.ID
		tok.projectID = pr.ID
	case pr.Name == "":
		tok.projectName = "demo"
	}
	if tok.projectID == "" {
		tok.projectID = stableID("project", tok.projectName)
	}
	return tok, method, true
}

// authorized checks the request's X-Auth-Token.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request, fail func(http.ResponseWriter, int, string, string)) (token, bool) {
	s.mu.Lock()
	tok, ok := s.tokens[r.Header.Get("X-Auth-Token")]
	s.mu.Unlock()
	if !ok || time.Now().After(tok.expires) {
		fail(w, http.StatusUnauthorized, "unauthorized", "The request you have made requires authentication.")
		return token{}, false
	}
	return tok, true
}
