package plans

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/state/etcd/transport"
)

// Limits on names. Machine names and cloud tags are built as
// <cluster>-<pool>-<id>, so the cluster name is kept well under the 63 a
// DNS label allows.
const (
	maxClusterName = 40
	maxPoolName    = 63
)

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// Cluster kinds; only swarm has a join driver today.
var (
	kinds         = []string{"swarm", "k3s", "kubeadm"}
	roles         = []string{string(providers.RoleManager), string(providers.RoleWorker)}
	stateBackends = []string{"file", "etcd"}
	expanders     = []string{"least-waste", "price", "priority"}
)

// validator fills defaults and checks a decoded plan, reporting through the
// decoder so that decode and validation errors come back as one sorted list.
type validator struct {
	plan *Plan
	d    *decoder
	opts Options
}

// set reports whether the plan wrote a non-empty value at path.
func (v *validator) set(path string) bool {
	at, ok := v.d.pos[path]
	return ok && !at.Null
}

// skip reports whether path or an ancestor failed to decode: its value is a
// zero stand-in, and checking it would only repeat the decode error.
func (v *validator) skip(path string) bool {
	for {
		if v.d.bad[path] {
			return true
		}
		if path == "" {
			return false
		}
		path = parent(path)
	}
}

// errorf reports a problem with the value at path.
func (v *validator) errorf(path, hint, format string, args ...any) {
	if v.skip(path) {
		return
	}
	line, col := v.plan.Position(path)
	v.d.errorf(path, yamlPos{line, col}, hint, "%s: %s", path, fmt.Sprintf(format, args...))
}

// missing reports a required field that is absent, pointing at the key of
// the section that should hold it (or the top of the file).
func (v *validator) missing(path, hint string) {
	if v.skip(path) {
		return
	}
	section := parent(path)
	at := yamlPos{1, 1}
	for s := section; ; s = parent(s) {
		if p, ok := v.d.pos[s]; ok {
			at = p.Val
			if p.Key.Line > 0 {
				at = p.Key
			}
			break
		}
		if s == "" {
			break
		}
	}
	if p, ok := v.d.pos[path]; ok { // written but empty: point at it
		at = p.Val
		if p.Null {
			at = p.Key
		}
	}
	v.d.errorf(path, at, hint, "%s: required", path)
}

func (v *validator) defaults() {
	p := v.plan
	if !v.set("version") {
		p.Version = Version
	}
	if p.Cluster.Kind == "" {
		p.Cluster.Kind = "swarm"
	}
	if p.SSH.User == "" {
		p.SSH.User = "root"
	}
	if !v.set("ssh.port") {
		p.SSH.Port = 22
	}
	if b := p.SSH.Bastion; b != nil {
		if !v.set("ssh.bastion.port") {
			b.Port = 22
		}
		if b.User == "" {
			b.User = p.SSH.User
		}
	}
	if p.State.Backend == "" {
		p.State.Backend = "file"
	}
	for i := range p.Pools {
		if p.Pools[i].Role == "" {
			p.Pools[i].Role = providers.RoleWorker
		}
	}
	v.expand("ssh.key", &p.SSH.Key)
	if p.SSH.Bastion != nil {
		v.expand("ssh.bastion.key", &p.SSH.Bastion.Key)
	}
	v.expand("state.path", &p.State.Path)
	v.expand("state.password_file", &p.State.PasswordFile)
	if t := p.State.TLS; t != nil {
		v.expand("state.tls.ca", &t.CA)
		v.expand("state.tls.cert", &t.Cert)
		v.expand("state.tls.key", &t.Key)
	}
	v.kubernetesDefaults()
}

func (v *validator) expand(path string, p *string) {
	full, err := expandPath(v.plan.Path, *p)
	if err != nil {
		v.errorf(path, "use an absolute path, or one relative to the plan file", "%v", err)
		v.d.bad[path] = true
		return
	}
	*p = full
}

func (v *validator) validate() {
	p := v.plan
	if p.Version != Version {
		v.errorf("version", fmt.Sprintf("this provision reads version %d plans; set version: %d", Version, Version),
			"unsupported plan version %d", p.Version)
	}
	v.cluster()
	v.ssh()
	v.state()
	v.pools()
	v.autoscale()
	v.kubernetes()
}

func (v *validator) cluster() {
	c := v.plan.Cluster
	switch {
	case c.Name == "":
		v.missing("cluster.name", `name the cluster, e.g. "name: prod": lowercase letters, digits and "-"`)
	case len(c.Name) > maxClusterName || !dnsLabel.MatchString(c.Name):
		v.errorf("cluster.name", nameHint(c.Name, maxClusterName), "%q is not a valid cluster name", c.Name)
	}
	switch c.Kind {
	case "swarm":
	case "kubeadm":
	case "k3s":
		v.errorf("cluster.kind", "use kind: kubeadm for Kubernetes; k3s is refused by the Go module proxy here and its build downloads a data tarball, so provision cannot build it offline",
			"k3s cannot be built by provision")
	default:
		v.errorf("cluster.kind", unknownHint(c.Kind, kinds, "supported kinds"), "unknown cluster kind %q", c.Kind)
	}
}

func (v *validator) ssh() {
	s := v.plan.SSH
	v.port("ssh.port", s.Port)
	v.keyFile("ssh.key", s.Key)
	b := s.Bastion
	if b == nil {
		return
	}
	if b.Host == "" {
		v.missing("ssh.bastion.host", "the bastion's address, e.g. host: bastion.example.com")
	}
	v.port("ssh.bastion.port", b.Port)
	v.keyFile("ssh.bastion.key", b.Key)
	const scan = "get it with ssh-keyscan -t ed25519 <bastion host>; provision never trusts an unknown host key"
	if b.HostKey == "" {
		v.missing("ssh.bastion.host_key", "the bastion's public host key in authorized_keys format; "+scan)
	} else if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(b.HostKey)); err != nil {
		v.errorf("ssh.bastion.host_key", "write it in authorized_keys format (\"ssh-ed25519 AAAA…\"); "+scan,
			"not an SSH public key")
	}
}

func (v *validator) port(path string, port int) {
	if port < 1 || port > 65535 {
		v.errorf(path, "use a TCP port from 1 to 65535", "%d is out of range", port)
	}
}

// keyFile checks a private key can be read now, not halfway through an apply
// with machines already created.
func (v *validator) keyFile(path, file string) {
	if file == "" || v.skip(path) {
		return
	}
	// Stat before opening: opening a FIFO or a device would block or read
	// something that is not a key.
	st, err := os.Stat(file)
	if err == nil {
		switch {
		case st.IsDir():
			v.errorf(path, "name the private key file inside it, e.g. id_ed25519", "%s is a directory", file)
			return
		case !st.Mode().IsRegular():
			v.errorf(path, "name a private key file, e.g. ~/.ssh/id_ed25519", "%s is not a regular file", file)
			return
		}
		var f *os.File
		if f, err = os.Open(file); err == nil {
			f.Close()
		}
	}
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		v.errorf(path, fmt.Sprintf("generate one with ssh-keygen -t ed25519 -f %s, or remove the key to let provision manage one", file),
			"%s: no such file", file)
	case errors.Is(err, fs.ErrPermission):
		v.errorf(path, "make it readable by the user running provision (chmod 600, and check the owner)", "%s: permission denied", file)
	default:
		v.errorf(path, "", "%s: %v", file, unwrapPathError(err))
	}
}

// unwrapPathError drops the "open <file>:" prefix the message already has.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// The etcd backend's variables (state/etcd's EnvEndpoints and EnvPassword):
// plans does not import the etcd client for two names.
const (
	envEtcdEndpoints = "PROVISION_ETCD_ENDPOINTS"
	envEtcdPassword  = "PROVISION_ETCD_PASSWORD"
)

// etcdOnly are the state fields that only the etcd backend reads.
var etcdOnly = []string{"tls", "username", "password_file", "insecure"}

func (v *validator) state() {
	switch b := v.plan.State.Backend; b {
	case "file":
		for _, f := range etcdOnly {
			if v.set("state." + f) {
				v.errorf("state."+f, "remove it, or set state.backend: etcd", "only the etcd backend has it")
			}
		}
	case "etcd":
		if len(v.plan.State.Endpoints) == 0 && os.Getenv(envEtcdEndpoints) == "" {
			v.missing("state.endpoints", "the etcd client URLs, e.g. endpoints: [https://etcd-1.example.com:2379], or set "+envEtcdEndpoints)
		}
		v.etcdTransport()
		v.etcdLogin()
	default:
		v.errorf("state.backend", unknownHint(b, stateBackends, "supported backends"), "unknown state backend %q", b)
	}
}

// etcdTransport checks that every endpoint is TLS, or plaintext to this
// machine or on purpose (insecure), and that the TLS files can be used:
// the same rules the backend applies to PROVISION_ETCD_ENDPOINTS when it
// connects.
func (v *validator) etcdTransport() {
	s := v.plan.State
	if !v.skip("state.tls") && !v.skip("state.insecure") {
		useTLS := transport.UsesTLS(s.Endpoints, s.TLS != nil)
		for i, ep := range s.Endpoints {
			var ee *transport.EndpointError
			if err := transport.Check(ep, useTLS, s.Insecure); errors.As(err, &ee) {
				at := fmt.Sprintf("state.endpoints[%d]", i)
				v.errorf(at, ee.Fix, "%s %s", strconv.Quote(ep), ee.Reason)
			}
		}
	}
	if s.TLS == nil || v.skip("state.tls") {
		return
	}
	_, err := transport.Files{CA: s.TLS.CA, Cert: s.TLS.Cert, Key: s.TLS.Key}.Load()
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	hints := map[string]string{
		"ca":   "a PEM file of the CA certificate that signed etcd's server certificate; omit ca to use the system's roots",
		"cert": "a PEM client certificate signed by the CA etcd trusts (its --trusted-ca-file)",
		"key":  "the PEM private key of state.tls.cert",
	}
	for _, e := range errs {
		var fe *transport.FileError
		if !errors.As(e, &fe) {
			v.errorf("state.tls", "", "%v", e)
			continue
		}
		path := "state.tls." + fe.Field
		if fe.File == "" {
			v.missing(path, hints[fe.Field]+"; cert and key go together")
			continue
		}
		v.errorf(path, hints[fe.Field], "%s %v", fe.File, fe.Err)
	}
}

// etcdLogin checks that a user has a password, which never comes from the
// plan itself.
func (v *validator) etcdLogin() {
	s := v.plan.State
	const where = "put the password in " + envEtcdPassword + ", or in a file named by state.password_file (never in the plan)"
	switch {
	case s.Username != "" && s.PasswordFile == "" && os.Getenv(envEtcdPassword) == "":
		v.errorf("state.username", where, "user %q has no password", s.Username)
	case s.Username == "" && s.PasswordFile != "":
		v.errorf("state.password_file", "set state.username: the etcd user the password is for", "a password without state.username")
	}
	v.secretFile("state.password_file", s.PasswordFile)
}

// secretFile checks that a file holding a secret can be read and is not
// empty, without keeping what it holds.
func (v *validator) secretFile(path, file string) {
	if file == "" || v.skip(path) {
		return
	}
	st, err := os.Stat(file)
	if err == nil {
		switch {
		case st.IsDir():
			v.errorf(path, "name the file inside it", "%s is a directory", file)
			return
		case !st.Mode().IsRegular():
			v.errorf(path, "name a file holding the password on one line", "%s is not a regular file", file)
			return
		}
		var data []byte
		if data, err = os.ReadFile(file); err == nil && strings.TrimRight(string(data), "\r\n") == "" {
			v.errorf(path, "write the password into it, on one line", "%s is empty", file)
			return
		}
	}
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		v.errorf(path, "create it holding the password on one line (chmod 600), or set "+envEtcdPassword, "%s: no such file", file)
	case errors.Is(err, fs.ErrPermission):
		v.errorf(path, "make it readable by the user running provision (chmod 600, and check the owner)", "%s: permission denied", file)
	default:
		v.errorf(path, "", "%s: %v", file, unwrapPathError(err))
	}
}

func (v *validator) pools() {
	p := v.plan
	if len(p.Pools) == 0 {
		if !v.skip("pools") {
			at := yamlPos{1, 1}
			if pos, ok := v.d.pos["pools"]; ok {
				at = pos.Key
			}
			v.d.errorf("pools", at, "add a pool under pools:, e.g. - {name: managers, provider: docker, count: 1, role: manager}", "at least one pool is required")
		}
		return
	}
	first := map[string]int{} // pool name → index of its first definition
	managers, uncertain := 0, false
	for i, pool := range p.Pools {
		at := fmt.Sprintf("pools[%d]", i)
		if v.skip(at) {
			uncertain = true
			continue
		}
		switch {
		case pool.Name == "":
			v.missing(at+".name", `name the pool, e.g. "name: workers": lowercase letters, digits and "-"`)
		case len(pool.Name) > maxPoolName || !dnsLabel.MatchString(pool.Name):
			v.errorf(at+".name", nameHint(pool.Name, maxPoolName), "%q is not a valid pool name", pool.Name)
		default:
			if j, dup := first[pool.Name]; dup {
				where := fmt.Sprintf("as pools[%d]", j)
				if line, _ := p.Position(fmt.Sprintf("pools[%d].name", j)); line > 0 {
					where = fmt.Sprintf("at line %d", line)
				}
				v.errorf(at+".name", "pool names must be unique: rename one of them, or merge their counts",
					"duplicate pool %q (first defined %s)", pool.Name, where)
			} else {
				first[pool.Name] = i
			}
		}
		switch {
		case pool.Provider == "":
			hint := "which provider makes this pool's machines"
			if v.opts.Providers != nil {
				hint += ": one of " + strings.Join(v.opts.Providers.Names(), ", ")
			}
			v.missing(at+".provider", hint)
		case v.opts.Providers != nil && !v.opts.Providers.Has(pool.Provider):
			v.errorf(at+".provider", unknownHint(pool.Provider, v.opts.Providers.Names(), "known providers"),
				"unknown provider %q", pool.Provider)
		case v.opts.Providers != nil && !v.skip(at+".provider"):
			v.settings(at+".settings", pool.Provider, pool.Settings)
			if pool.Spot && !v.opts.Providers.Spot(pool.Provider) && !v.skip(at+".spot") {
				hint := "remove spot: true"
				if names := slices.DeleteFunc(v.opts.Providers.Names(), func(n string) bool { return !v.opts.Providers.Spot(n) }); len(names) > 0 {
					hint += ", or use a provider with spot capacity: " + strings.Join(names, ", ")
				}
				v.errorf(at+".spot", hint, "provider %q has no spot capacity", pool.Provider)
			}
		}
		if pool.Count < 0 {
			v.errorf(at+".count", "use 0 to keep the pool empty", "must be ≥ 0, got %d", pool.Count)
		}
		switch pool.Role {
		case providers.RoleManager:
			if pool.Count >= 1 {
				managers++
			}
			if pool.Count < 0 {
				uncertain = true
			}
		case providers.RoleWorker:
		default:
			v.errorf(at+".role", unknownHint(string(pool.Role), roles, "roles"), "unknown role %q", pool.Role)
			uncertain = true
		}
		// A count or role that is already wrong makes "no manager" a guess:
		// the user may well have meant that pool to be the manager.
		if v.skip(at+".count") || v.skip(at+".role") {
			uncertain = true
		}
		v.poolAutoscale(at, &p.Pools[i])
		v.poolTaints(at, &p.Pools[i])
		if _, empty := pool.Labels[""]; empty && !v.skip(at+".labels") {
			line, col := p.Position(at + ".labels.")
			v.d.errorf(at+".labels", yamlPos{line, col}, "give the label a name", "%s.labels: label keys must not be empty", at)
		}
	}
	if managers == 0 && !uncertain {
		at := yamlPos{1, 1}
		if pos, ok := v.d.pos["pools"]; ok {
			at = pos.Key
		}
		what := "a swarm needs a manager"
		if p.Cluster.Kind == "kubeadm" {
			what = "a Kubernetes cluster needs a control-plane node (a manager)"
		}
		v.d.errorf("pools", at, "set role: manager on a pool with count ≥ 1", "%s", what)
	}
}

// nameHint explains the name rules and offers a fixed-up name to copy.
func nameHint(name string, max int) string {
	hint := fmt.Sprintf(`use lowercase letters, digits and "-" (not at either end), at most %d characters`, max)
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else if b.Len() > 0 && !strings.HasSuffix(b.String(), "-") {
			b.WriteByte('-')
		}
	}
	fixed := strings.Trim(b.String(), "-")
	if len(fixed) > max {
		fixed = strings.Trim(fixed[:max], "-")
	}
	if fixed != "" && fixed != name {
		hint += fmt.Sprintf(", e.g. %q", fixed)
	}
	return hint
}

// settings runs the pool's provider's static settings check (no credentials,
// no network) and reports each problem at the setting itself, like every
// other plan error.
func (v *validator) settings(path, provider string, set providers.Settings) {
	// A plan too large to decode whole has settings cut short: checking
	// them would report keys as missing that the file does have.
	if v.skip(path) || v.d.budget <= 0 && !v.d.noPos {
		return
	}
	for _, e := range v.opts.Providers.CheckSettings(provider, set) {
		at := path
		if e.Key != "" {
			at = join(path, e.Key)
		}
		if v.skip(at) {
			continue
		}
		line, col := v.plan.Position(at)
		subject := at
		if e.Unknown {
			// The key is the mistake: point at it, and name the mapping
			// it is unknown in, as unknown plan fields are.
			subject = parent(at)
			if pos, ok := v.d.pos[at]; ok && pos.Key.Line > 0 {
				line, col = pos.Key.Line, pos.Key.Col
			}
		}
		v.d.errorf(at, yamlPos{line, col}, e.Hint, "%s: %s", subject, e.Msg)
	}
}
