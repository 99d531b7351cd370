package openstack

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// keypair is a Nova key pair; Nova keeps them per user, not per project.
type keypair struct {
	id          int
	name        string
	userID      string
	publicKey   string
	fingerprint string
	created     time.Time
}

// keypairName is Nova's rule for key pair names before 2.92.
var keypairName = regexp.MustCompile(`^[a-zA-Z0-9 _-]+$`)

// keypairs serves os-keypairs: create (import a public_key, or generate
// one and return its private_key once), list, show and delete.
func (s *Server) keypairs(w http.ResponseWriter, r *http.Request, req request, p []string) {
	switch {
	case len(p) == 0 && r.Method == http.MethodPost:
		s.createKeypair(w, r, req)
	case len(p) == 0 && r.Method == http.MethodGet:
		if s.throttled(w, r, "keypairs.list") {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		var names []string
		for n := range s.keys[req.token.userID] {
			names = append(names, n)
		}
		sort.Strings(names)
		out := []any{}
		for _, n := range names {
			kp := s.keys[req.token.userID][n]
			out = append(out, map[string]any{"keypair": keypairJSON(kp, req.mv, false)})
		}
		writeJSON(w, http.StatusOK, map[string]any{"keypairs": out})
	case len(p) == 1 && r.Method == http.MethodGet:
		if s.throttled(w, r, "keypairs.get") {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		kp := s.keys[req.token.userID][p[0]]
		if kp == nil {
			novaError(w, http.StatusNotFound, "itemNotFound", fmt.Sprintf("Keypair %s not found for user %s", p[0], req.token.userID))
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"keypair": keypairJSON(kp, req.mv, true)})
	case len(p) == 1 && r.Method == http.MethodDelete:
		if s.throttled(w, r, "keypairs.delete") {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.keys[req.token.userID][p[0]] == nil {
			novaError(w, http.StatusNotFound, "itemNotFound", fmt.Sprintf("Keypair %s not found for user %s", p[0], req.token.userID))
			return
		}
		delete(s.keys[req.token.userID], p[0])
		if req.mv.atLeast(2, 2) {
			w.WriteHeader(http.StatusNoContent)
		} else {
			w.WriteHeader(http.StatusAccepted)
		}
	default:
		novaError(w, http.StatusNotFound, "itemNotFound", "The resource could not be found.")
	}
}

func (s *Server) createKeypair(w http.ResponseWriter, r *http.Request, req request) {
	if s.throttled(w, r, "keypairs.create") {
		return
	}
	var body struct {
		Keypair *struct {
			Name      string `json:"name"`
			PublicKey string `json:"public_key"`
			Type      string `json:"type"`
		} `json:"keypair"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Keypair == nil {
		novaError(w, http.StatusBadRequest, "badRequest", "Invalid input for field/attribute keypair. Value: None. None is not of type 'object'")
		return
	}
	in := body.Keypair
	if in.Name == "" || len(in.Name) > 255 || !keypairName.MatchString(in.Name) {
		novaError(w, http.StatusBadRequest, "badRequest", fmt.Sprintf(
			"Invalid input for field/attribute name. Value: %s. '%s' does not match '^[a-zA-Z0-9 _-]+$'", in.Name, in.Name))
		return
	}
	if in.Type != "" && (!req.mv.atLeast(2, 2) || in.Type != "ssh") {
		novaError(w, http.StatusBadRequest, "badRequest", "Invalid input for field/attribute type. Value: "+in.Type+". '"+in.Type+"' is not one of ['ssh', 'x509']")
		return
	}
	kp := &keypair{name: in.Name, userID: req.token.userID, publicKey: strings.TrimSpace(in.PublicKey), created: time.Now().UTC()}
	var private string
	if kp.publicKey == "" {
		var err error
		if private, kp.publicKey, err = generateKey(); err != nil {
			novaError(w, http.StatusInternalServerError, "computeFault", "Unexpected API Error: "+err.Error())
			return
		}
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(kp.publicKey))
	if err != nil {
		novaError(w, http.StatusBadRequest, "badRequest", "Keypair data is invalid: failed to generate fingerprint")
		return
	}
	kp.fingerprint = md5Fingerprint(pub)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys[kp.userID][kp.name] != nil {
		novaError(w, http.StatusConflict, "conflictingRequest", fmt.Sprintf("Key pair '%s' already exists.", kp.name))
		return
	}
	if s.keys[kp.userID] == nil {
		s.keys[kp.userID] = map[string]*keypair{}
	}
	s.seq++
	kp.id = s.seq
	s.keys[kp.userID][kp.name] = kp
	out := keypairJSON(kp, req.mv, false)
	out["user_id"] = kp.userID
	if private != "" {
		out["private_key"] = private
	}
	code := http.StatusOK
	if req.mv.atLeast(2, 2) {
		code = http.StatusCreated
	}
	writeJSON(w, code, map[string]any{"keypair": out})
}

// keypairJSON is a key pair as Nova shows it: list entries carry name,
// public key and fingerprint; show adds the record's fields. type appears
// from 2.2, user_id in lists from 2.10.
func keypairJSON(kp *keypair, mv microversion, show bool) map[string]any {
	out := map[string]any{"name": kp.name, "public_key": kp.publicKey, "fingerprint": kp.fingerprint}
	if mv.atLeast(2, 2) {
		out["type"] = "ssh"
	}
	if mv.atLeast(2, 10) {
		out["user_id"] = kp.userID
	}
	if show {
		out["id"] = kp.id
		out["user_id"] = kp.userID
		out["created_at"] = kp.created.Format("2006-01-02T15:04:05.000000")
		out["updated_at"] = nil
		out["deleted_at"] = nil
		out["deleted"] = false
	}
	return out
}

// generateKey makes the key pair Nova generates when none is imported: RSA
// 2048, the private half in PEM, the public half in authorized_keys form.
func generateKey() (private, public string, err error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", "", fmt.Errorf("generate key pair: %w", err)
	}
	pub, err := ssh.NewPublicKey(&k.PublicKey)
	if err != nil {
		return "", "", fmt.Errorf("generate key pair: %w", err)
	}
	priv := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	return string(priv), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) + " Generated-by-Nova", nil
}

// md5Fingerprint is Nova's fingerprint: the MD5 of the key, colon-hex.
func md5Fingerprint(k ssh.PublicKey) string {
	sum := md5.Sum(k.Marshal())
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02x", b)
	}
	return strings.Join(parts, ":")
}
