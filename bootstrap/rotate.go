package bootstrap

import (
	"bytes"
	"context"
	"fmt"
	"path"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/provisionhq/provision/bootstrap/cluster"
)

// Host key rotation on first contact.
//
// A cloud machine gets its first host key in user-data, and the cloud's
// metadata service serves that user-data for as long as the machine runs —
// for a batch, one document with every machine's key, readable from each of
// them (cloudinit.MultiPart, the gcp provider's shared metadata). So that
// key is only good for provision's first verified connection: over it, the
// machine gets a fresh key, pinned in its place, and the user-data key opens
// nothing any more.
//
// The fresh key is made on the machine with ssh-keygen, not by provision
// and sent over stdin. Its private half then never leaves the machine: it is
// in no provision process, on no wire, in nothing that could slip into a log,
// an error or state. And a key staged on the machine's disk outlives a
// killed run, so the next run finishes the rotation with that very key
// instead of starting over. Only the public half comes back, to be pinned.
// The cost is a dependency on ssh-keygen, which every OpenSSH server
// installation has, and on the machine's entropy, which its own first-boot
// host keys rely on anyway.
//
// The steps, each idempotent; the engine (plans/apply) records state
// between them so that at every instant the machine offers the key state
// pins or the one it records as next:
//
//	Stage    make the next key beside the served one (not served yet) and
//	         return its public half; the engine records it before going on
//	Install  rename the staged key over the served one (atomic)
//	Reload   make sshd's listener serve it (sshd -t first: a reload must
//	         never leave the machine without sshd)
//	Scrub    remove what is left of the old key: staging leftovers and the
//	         copies of user-data cloud-init and provision keep on disk
const (
	// hostKeyFile is where cloud-init's ssh_keys (cc_ssh) and the docker
	// provider put the ed25519 host key, and where sshd looks by default.
	hostKeyFile = "/etc/ssh/ssh_host_ed25519_key"
	// stagedSuffix names the next key, staged beside the served one.
	stagedSuffix = ".provision-next"
)

// userDataCopies are the copies of a machine's user-data left on its disk,
// each holding the key the machine was created with (for a batch, its
// siblings' too): cloud-init's per-instance copies (the raw and processed
// user-data, the cloud-config part, user-data scripts, the pickled
// datasource, which holds the raw user-data as well; /var/lib/cloud/instance
// is a link to one of these instances), its merged config under /run, and
// what the gcp provider's selector script fetches (it removes it itself once
// applied). Semaphores stay: without them cloud-init would take the next
// boot for a new instance and install the user-data key again.
//
// Removing them is hygiene, not the fix: the metadata service keeps serving
// the user-data, and cloud-init writes user-data.txt again at every boot.
// The rotation is what makes every copy worthless.
var userDataCopies = []string{
	"/var/lib/cloud/instances/*/user-data.txt",
	"/var/lib/cloud/instances/*/user-data.txt.i",
	"/var/lib/cloud/instances/*/cloud-config.txt",
	"/var/lib/cloud/instances/*/scripts/part-*",
	"/var/lib/cloud/instances/*/obj.pkl",
	"/run/cloud-init/combined-cloud-config.json",
	"/run/provision/user-data.yaml",
}

// Rotator gives a machine a host key of its own over a verified connection
// (see above). It implements plans/apply.HostKeyRotator. Commands run as
// root (through sudo for a non-root login, as Client.Run does).
type Rotator struct {
	// Root is the machine's filesystem root for the key and user-data
	// files: "/" (or empty) on a machine; tests point it at a directory.
	// Reload does not use it: it talks to the machine's sshd.
	Root string
}

func (r Rotator) path(p string) string { return path.Join("/", r.Root, p) }

// Stage makes a new ed25519 key on the machine, beside the served one and
// not served yet, and returns its public half in authorized_keys format.
// A key staged by an earlier, interrupted call is replaced: only a key the
// caller recorded (see Install) is worth keeping, and the caller records
// what Stage returns.
func (r Rotator) Stage(ctx context.Context, run cluster.Runner) (string, error) {
	script := "# provision host key: stage\n" +
		"set -eu\numask 077\n" +
		"k=" + shellQuote(r.path(hostKeyFile)+stagedSuffix) + "\n" +
		`rm -f "$k" "$k.pub"` + "\n" +
		`ssh-keygen -q -t ed25519 -N '' -C '' -f "$k" </dev/null >/dev/null` + "\n" +
		`cat "$k.pub"` + "\n"
	var out bytes.Buffer
	if err := run.Run(ctx, script, nil, &out); err != nil {
		return "", fmt.Errorf("stage a new host key: %w", err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(out.Bytes())
	if err != nil {
		return "", fmt.Errorf("stage a new host key: ssh-keygen printed no public key: %w", err)
	}
	if pub.Type() != ssh.KeyAlgoED25519 {
		return "", fmt.Errorf("stage a new host key: ssh-keygen made a %s key, want %s", pub.Type(), ssh.KeyAlgoED25519)
	}
	return authorizedKey(pub), nil
}

// Install puts the staged key whose public half is next in place of the
// served one: a rename, so the key file is the old key or the new one,
// never neither. It is idempotent: when the key file already is next (a
// run killed after the rename) it only rewrites the public half beside it.
// installed is false, with no error, when the machine holds no key next,
// neither staged nor in place (its staging was lost): stage again.
func (r Rotator) Install(ctx context.Context, run cluster.Runner, next string) (installed bool, err error) {
	want, err := parsePublicKey(next)
	if err != nil {
		return false, fmt.Errorf("install host key: %w", err)
	}
	script := "# provision host key: install\n" +
		"set -eu\numask 077\n" +
		"k=" + shellQuote(r.path(hostKeyFile)) + "\n" +
		`n="$k` + stagedSuffix + `"` + "\n" +
		"want=" + shellQuote(authorizedKey(want)) + "\n" +
		// ssh-keygen -y derives the public half from the private key
		// itself: a .pub beside it may be stale.
		`pub() { ssh-keygen -y -f "$1" 2>/dev/null | cut -d' ' -f1,2; }` + "\n" +
		`if [ -f "$k" ] && [ "$(pub "$k")" = "$want" ]; then` + "\n" +
		"\tstate=served\n" +
		`elif [ -f "$n" ] && [ "$(pub "$n")" = "$want" ]; then` + "\n" +
		`	chmod 600 "$n"` + "\n" +
		`	mv -f "$n" "$k"` + "\n" +
		"\tstate=installed\n" +
		"else\n" +
		"\techo missing\n" +
		"\texit 0\n" +
		"fi\n" +
		`pub "$k" >"$k.pub.provision-tmp"` + "\n" +
		`chmod 644 "$k.pub.provision-tmp"` + "\n" +
		`mv -f "$k.pub.provision-tmp" "$k.pub"` + "\n" +
		`rm -f "$n.pub"` + "\n" +
		// SELinux: keep the key files labelled as host keys.
		`if command -v restorecon >/dev/null 2>&1; then restorecon "$k" "$k.pub" 2>/dev/null || true; fi` + "\n" +
		`echo "$state"` + "\n"
	var out bytes.Buffer
	if err := run.Run(ctx, script, nil, &out); err != nil {
		return false, fmt.Errorf("install host key: %w", err)
	}
	switch s := strings.TrimSpace(out.String()); s {
	case "served", "installed":
		return true, nil
	case "missing":
		return false, nil
	default:
		return false, fmt.Errorf("install host key: unexpected answer %q", shorten(s, 80))
	}
}

// Reload makes sshd serve the key files as they are now: `systemctl
// reload` of its unit under systemd, else SIGHUP to the pid in its pid
// file (sshd re-executes itself; open sessions, this one included, stay).
// `sshd -t` runs first, so a configuration or key sshd could not load
// fails here instead of taking sshd down.
func (r Rotator) Reload(ctx context.Context, run cluster.Runner) error {
	const script = "# provision host key: reload sshd\n" +
		"set -eu\n" +
		`sshd=$(command -v sshd || echo /usr/sbin/sshd)` + "\n" +
		`"$sshd" -t` + "\n" +
		`if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then` + "\n" +
		"\tfor unit in ssh.service sshd.service; do\n" +
		`		if systemctl is-active --quiet "$unit"; then exec systemctl reload "$unit"; fi` + "\n" +
		"\tdone\n" +
		"fi\n" +
		`pidfile=$("$sshd" -T 2>/dev/null | awk '$1 == "pidfile" { print $2 }')` + "\n" +
		`for f in "$pidfile" /run/sshd.pid /var/run/sshd.pid; do` + "\n" +
		`	if [ -n "$f" ] && [ -s "$f" ]; then exec kill -HUP "$(cat "$f")"; fi` + "\n" +
		"done\n" +
		`echo "no sshd to reload: no active ssh or sshd unit, no pid file" >&2` + "\n" +
		"exit 1\n"
	if err := run.Run(ctx, script, nil, nil); err != nil {
		return fmt.Errorf("reload sshd: %w", err)
	}
	return nil
}

// Scrub removes what is left of the key the machine was created with once
// it serves the new one: staging leftovers and the user-data copies (see
// userDataCopies). Removing what is already gone is a success.
func (r Rotator) Scrub(ctx context.Context, run cluster.Runner) error {
	k := shellQuote(r.path(hostKeyFile))
	var b strings.Builder
	b.WriteString("# provision host key: scrub\nset -eu\n")
	fmt.Fprintf(&b, "rm -f %s%s %s%s.pub %s.pub.provision-tmp\n", k, stagedSuffix, k, stagedSuffix, k)
	for _, p := range userDataCopies {
		// Quote all but the globs: the root may hold any character.
		dir, file := path.Split(r.path(p))
		if strings.Contains(dir, "/*/") {
			pre, post, _ := strings.Cut(dir, "/*/")
			fmt.Fprintf(&b, "rm -f %s/*/%s%s\n", shellQuote(pre), shellQuoteGlob(post), shellQuoteGlob(file))
			continue
		}
		fmt.Fprintf(&b, "rm -f %s%s\n", shellQuote(dir), shellQuoteGlob(file))
	}
	if err := run.Run(ctx, b.String(), nil, nil); err != nil {
		return fmt.Errorf("remove the old host key's copies: %w", err)
	}
	return nil
}

// shellQuoteGlob quotes s as a shell word but leaves its * unquoted, so it
// still matches.
func shellQuoteGlob(s string) string {
	if s == "" {
		return ""
	}
	parts := strings.Split(s, "*")
	for i, p := range parts {
		if p != "" {
			parts[i] = shellQuote(p)
		}
	}
	return strings.Join(parts, "*")
}
