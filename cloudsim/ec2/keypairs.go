package ec2

import (
	"cmp"
	"crypto/ed25519"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// keyPair is an EC2 key pair: a name and an OpenSSH public key that the
// instances launched with it authorize for their image's default user.
type keyPair struct {
	id, region, name, keyType string
	fingerprint, publicKey    string // publicKey in authorized_keys form
	created                   time.Time
	tags                      map[string]string
}

// keyLocked finds a key pair of the region by name.
func (s *Server) keyLocked(reg region, name string) (*keyPair, bool) {
	for _, k := range s.keys {
		if k.region == reg.name && k.name == name {
			return k, true
		}
	}
	return nil, false
}

func (s *Server) importKeyPair(q *request) (response, *apiError) {
	name := q.form.Get("KeyName")
	if name == "" {
		return nil, errClient("MissingParameter", "The request must contain the parameter KeyName")
	}
	if q.form.Get("PublicKeyMaterial") == "" {
		return nil, errClient("MissingParameter", "The request must contain the parameter PublicKeyMaterial")
	}
	material, err := base64.StdEncoding.DecodeString(q.form.Get("PublicKeyMaterial"))
	if err != nil {
		return nil, errClient("InvalidParameterValue", "Value for parameter PublicKeyMaterial is invalid. Length exceeds maximum of 2048.")
	}
	pub, _, _, _, perr := ssh.ParseAuthorizedKey(material)
	if perr != nil || (pub.Type() != ssh.KeyAlgoRSA && pub.Type() != ssh.KeyAlgoED25519) {
		return nil, errClient("InvalidKey.Format", "Key is not in valid OpenSSH public key format")
	}
	tags, aerr := tagSpecs(q.form, "key-pair")
	if aerr != nil {
		return nil, aerr
	}
	k := &keyPair{name: name, keyType: "rsa", publicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))), tags: tags}
	if pub.Type() == ssh.KeyAlgoED25519 {
		k.keyType, k.fingerprint = "ed25519", sha256Fingerprint(pub)
	} else {
		der, err := x509.MarshalPKIXPublicKey(pub.(ssh.CryptoPublicKey).CryptoPublicKey())
		if err != nil {
			return nil, errClient("InvalidKey.Format", "Key is not in valid OpenSSH public key format")
		}
		sum := md5.Sum(der)
		k.fingerprint = colonHex(sum[:])
	}
	if err := s.addKey(q.region, k); err != nil {
		return nil, err
	}
	return &xmlImportKeyPairResponse{KeyName: k.name, KeyFingerprint: k.fingerprint, KeyPairID: k.id, Tags: xmlTags(tags)}, nil
}

func (s *Server) createKeyPair(q *request) (response, *apiError) {
	name := q.form.Get("KeyName")
	if name == "" {
		return nil, errClient("MissingParameter", "The request must contain the parameter KeyName")
	}
	keyType := cmp.Or(q.form.Get("KeyType"), "rsa")
	if keyType != "rsa" && keyType != "ed25519" {
		return nil, errClient("InvalidParameterValue", "Value (%s) for parameter keyType is invalid. Valid values are rsa, ed25519.", keyType)
	}
	if f := q.form.Get("KeyFormat"); f != "" && f != "pem" {
		return nil, errClient("InvalidParameterValue", "Value (%s) for parameter keyFormat is invalid. cloudsim makes pem keys only.", f)
	}
	tags, aerr := tagSpecs(q.form, "key-pair")
	if aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	_, taken := s.keyLocked(q.region, name)
	s.mu.Unlock()
	if taken { // before the (slow) key generation
		return nil, errClient("InvalidKeyPair.Duplicate", "The keypair '%s' already exists.", name)
	}
	k := &keyPair{name: name, keyType: keyType, tags: tags}
	material, err := k.generate()
	if err != nil {
		return nil, &apiError{status: 500, code: "InternalError", message: err.Error()}
	}
	if err := s.addKey(q.region, k); err != nil {
		return nil, err
	}
	return &xmlCreateKeyPairResponse{KeyName: k.name, KeyFingerprint: k.fingerprint, KeyMaterial: material, KeyPairID: k.id, Tags: xmlTags(tags)}, nil
}

// generate makes the key pair's keys and returns the private half as EC2
// hands it out: PKCS#1 PEM for RSA, OpenSSH format for ed25519.
func (k *keyPair) generate() (string, error) {
	var (
		priv   any
		pemOut []byte
	)
	switch k.keyType {
	case "ed25519":
		_, p, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return "", fmt.Errorf("generate ed25519 key: %w", err)
		}
		block, err := ssh.MarshalPrivateKey(p, "")
		if err != nil {
			return "", fmt.Errorf("encode ed25519 key: %w", err)
		}
		priv, pemOut = p, pem.EncodeToMemory(block)
	default:
		p, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return "", fmt.Errorf("generate rsa key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(p)
		if err != nil {
			return "", fmt.Errorf("encode rsa key: %w", err)
		}
		sum := sha1.Sum(der)
		k.fingerprint = colonHex(sum[:])
		priv, pemOut = p, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(p)})
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return "", fmt.Errorf("public half: %w", err)
	}
	k.publicKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	if k.keyType == "ed25519" {
		k.fingerprint = sha256Fingerprint(signer.PublicKey())
	}
	return strings.TrimSpace(string(pemOut)), nil
}

// addKey records a new key pair unless the name is taken.
func (s *Server) addKey(reg region, k *keyPair) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, taken := s.keyLocked(reg, k.name); taken {
		return errClient("InvalidKeyPair.Duplicate", "The keypair '%s' already exists.", k.name)
	}
	k.id, k.region, k.created = newID("key-"), reg.name, s.now()
	s.keys[k.id] = k
	return nil
}

func (s *Server) describeKeyPairs(q *request) (response, *apiError) {
	names, ids := indexed(q.form, "KeyName"), indexed(q.form, "KeyPairId")
	filters, err := parseFilters(q.form, keyFields(&keyPair{}))
	if err != nil {
		return nil, err
	}
	withPublic, _ := strconv.ParseBool(q.form.Get("IncludePublicKey"))
	s.mu.Lock()
	defer s.mu.Unlock()
	var picked []*keyPair
	for _, n := range names {
		k, ok := s.keyLocked(q.region, n)
		if !ok {
			return nil, errClient("InvalidKeyPair.NotFound", "The key pair '%s' does not exist", n)
		}
		picked = append(picked, k)
	}
	for _, id := range ids {
		k, ok := s.keys[id]
		if !ok || k.region != q.region.name {
			return nil, errClient("InvalidKeyPair.NotFound", "The key pair '%s' does not exist", id)
		}
		picked = append(picked, k)
	}
	if len(names)+len(ids) == 0 {
		for _, k := range s.keys {
			if k.region == q.region.name {
				picked = append(picked, k)
			}
		}
		slices.SortFunc(picked, func(a, b *keyPair) int { return strings.Compare(a.name, b.name) })
	}
	resp := &xmlDescribeKeyPairsResponse{}
	for _, k := range picked {
		if !matches(filters, keyFields(k)) {
			continue
		}
		x := xmlKeyPairInfo{KeyPairID: k.id, KeyFingerprint: k.fingerprint, KeyName: k.name, KeyType: k.keyType,
			CreateTime: k.created.UTC().Format("2006-01-02T15:04:05.000Z"), Tags: xmlTags(k.tags)}
		if withPublic {
			x.PublicKey = k.publicKey
		}
		resp.Keys = append(resp.Keys, x)
	}
	return resp, nil
}

func keyFields(k *keyPair) fields {
	return func(name string) ([]string, bool) {
		switch name {
		case "key-pair-id":
			return []string{k.id}, true
		case "key-name":
			return []string{k.name}, true
		case "fingerprint":
			return []string{k.fingerprint}, true
		}
		return tagFields(k.tags, name)
	}
}

// deleteKeyPair forgets a key pair; one that does not exist is a success,
// as on EC2. Instances launched with it keep their authorized key.
func (s *Server) deleteKeyPair(q *request) (response, *apiError) {
	name, id := q.form.Get("KeyName"), q.form.Get("KeyPairId")
	if name == "" && id == "" {
		return nil, errClient("MissingParameter", "The request must contain the parameter KeyName or KeyPairId")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.keyLocked(q.region, name); ok && name != "" {
		delete(s.keys, k.id)
	}
	if k, ok := s.keys[id]; ok && k.region == q.region.name {
		delete(s.keys, id)
	}
	return &xmlReturnResponse{Return: true}, nil
}

// sha256Fingerprint is EC2's fingerprint of an ed25519 key: the base64
// SHA-256 of the key, padded.
func sha256Fingerprint(pub ssh.PublicKey) string {
	sum := sha256.Sum256(pub.Marshal())
	return base64.StdEncoding.EncodeToString(sum[:])
}

func colonHex(b []byte) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = fmt.Sprintf("%02x", c)
	}
	return strings.Join(parts, ":")
}
