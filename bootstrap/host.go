package bootstrap

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/provisionhq/provision/bootstrap/cluster"
	"github.com/provisionhq/provision/internal/retry"
)

// Host is one machine being bootstrapped: what the steps act on.
type Host struct {
	Name string         // machine ID
	User string         // SSH login user; added to the docker group unless root
	Run  cluster.Runner // runs commands as root (a *Client does)
	OS   OSInfo         // filled by the detect-os step
	// Setup are the pool's own shell commands, run as root once the
	// runtime is up (see the plan's pools[].setup).
	Setup  []string
	Logger *slog.Logger
}

// Family is a package manager family.
type Family string

const (
	FamilyApt Family = "apt"
	FamilyDnf Family = "dnf"
)

// OSInfo is what /etc/os-release says, plus the package family derived.
type OSInfo struct {
	ID        string   // e.g. "debian"
	IDLike    []string // e.g. ["rhel", "fedora"]
	VersionID string   // e.g. "12"
	Family    Family
}

// EngineTimeout bounds the wait for the container engine to answer after it
// was started (nested engines on vfs can take a while).
const EngineTimeout = 2 * time.Minute

// DetectOS reads the machine's os-release and derives its package family.
func DetectOS(ctx context.Context, r cluster.Runner) (OSInfo, error) {
	var out bytes.Buffer
	if err := r.Run(ctx, "cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release", nil, &out); err != nil {
		return OSInfo{}, fmt.Errorf("detect os: %w", err)
	}
	return ParseOSRelease(out.String())
}

// ParseOSRelease parses os-release content (see os-release(5)).
func ParseOSRelease(content string) (OSInfo, error) {
	vals := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(content))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		vals[k] = unquoteOSRelease(v)
	}
	info := OSInfo{
		ID:        strings.ToLower(vals["ID"]),
		IDLike:    strings.Fields(strings.ToLower(vals["ID_LIKE"])),
		VersionID: vals["VERSION_ID"],
	}
	if info.ID == "" {
		return OSInfo{}, fmt.Errorf("%w: os-release has no ID", ErrUnsupportedOS)
	}
	for _, id := range append([]string{info.ID}, info.IDLike...) {
		switch id {
		case "debian", "ubuntu":
			info.Family = FamilyApt
		case "fedora", "rhel", "centos", "rocky", "almalinux":
			info.Family = FamilyDnf
		}
		if info.Family != "" {
			return info, nil
		}
	}
	name := info.ID
	if info.VersionID != "" {
		name += " " + info.VersionID
	}
	return OSInfo{}, fmt.Errorf("%w: %s (supported: Debian, Ubuntu and their derivatives; Fedora, RHEL, CentOS, Rocky, AlmaLinux)", ErrUnsupportedOS, name)
}

func unquoteOSRelease(v string) string {
	v = strings.TrimSpace(v)
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		v = v[1 : len(v)-1]
	}
	return strings.NewReplacer(`\"`, `"`, `\$`, `$`, "\\`", "`", `\\`, `\`).Replace(v)
}

// Prepare turns h into a container host: detect the OS, install and start
// the container engine, and let the login user use it. Each step is skipped
// when already done.
func Prepare(ctx context.Context, h *Host) error {
	return RunSteps(ctx, h, PrepareSteps(h))
}

// PrepareSteps are Prepare's steps, for callers that add their own.
func PrepareSteps(h *Host) []Step {
	steps := []Step{
		{Name: "install-runtime", Check: runtimeInstalled, Apply: installRuntime},
		{Name: "start-runtime", Check: succeeds(engineRunning), Apply: startRuntime},
	}
	if h.User != "" && h.User != "root" {
		q := shellQuote(h.User)
		steps = append(steps, Step{
			Name:  "docker-group",
			Check: succeeds("id -nG " + q + " | tr ' ' '\\n' | grep -qx docker"),
			Apply: runs("usermod -aG docker " + q),
		})
	}
	return h.Steps(steps...)
}

// Steps are h's whole bootstrap around a runtime's own steps: the hostname
// and the OS first, the pool's setup commands last.
func (h *Host) Steps(runtime ...Step) []Step {
	// The hostname is the machine ID before the runtime starts: cluster
	// drivers find nodes by name, and clouds name hosts after their own IDs.
	name := shellQuote(h.Name)
	steps := []Step{
		{Name: "hostname", Check: succeeds("test \"$(hostname)\" = " + name), Apply: runs(
			"hostname " + name + " && (echo " + name + " > /etc/hostname || true) && " +
				"(grep -q \"[[:space:]]" + h.Name + "$\" /etc/hosts || echo \"127.0.1.1 " + h.Name + "\" >> /etc/hosts)")},
		{Name: "detect-os", Check: osKnown, Apply: detectOS},
	}
	steps = append(steps, runtime...)
	if len(h.Setup) > 0 {
		steps = append(steps, setupStep(h.Setup))
	}
	return steps
}

// setupMarker records which setup script last succeeded, so a resumed
// bootstrap runs it again only if it changed or never finished.
const setupMarker = "/var/lib/provision/setup.sha256"

// setupStep runs the pool's setup commands as one `sh -e` script fed on
// stdin: a command may hold a secret (a registry password) that must not
// show in a process list.
func setupStep(cmds []string) Step {
	script := strings.Join(cmds, "\n") + "\n"
	sum := sha256.Sum256([]byte(script))
	hash := hex.EncodeToString(sum[:])
	return Step{
		Name:  "setup",
		Check: succeeds("test \"$(cat " + setupMarker + " 2>/dev/null)\" = " + hash),
		Apply: func(ctx context.Context, h *Host) error {
			if err := h.Run.Run(ctx, "sh -e -s", strings.NewReader(script), nil); err != nil {
				return err
			}
			return h.Run.Run(ctx, "mkdir -p /var/lib/provision && echo "+hash+" > "+setupMarker, nil, nil)
		},
	}
}

// osKnown lets a caller that already knows the OS (from state) skip detection.
func osKnown(_ context.Context, h *Host) (bool, error) { return h.OS.Family != "", nil }

func detectOS(ctx context.Context, h *Host) error {
	info, err := DetectOS(ctx, h.Run)
	if err != nil {
		return err
	}
	h.OS = info
	return nil
}

// succeeds is a check that passes when cmd exits 0. Another exit is "not
// done"; a failure to run it at all is an error.
func succeeds(cmd string) func(ctx context.Context, h *Host) (bool, error) {
	return func(ctx context.Context, h *Host) (bool, error) { return cluster.Succeeds(ctx, h.Run, cmd) }
}

func runs(cmd string) func(ctx context.Context, h *Host) error {
	return func(ctx context.Context, h *Host) error { return h.Run.Run(ctx, cmd, nil, nil) }
}

const (
	// The lock timeout waits out cloud-init's or unattended-upgrades' apt
	// run on a fresh machine instead of failing on the dpkg lock.
	aptInstall = "DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends"
	aptUpdate  = "DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update"
	dnfInstall = "dnf install -y"
)

// runtimeInstalled is install-runtime's check: dockerd is there and, on an
// apt machine, dpkg has left no package half installed. The binary alone
// proves too little: dpkg unpacks it well before it configures the package
// (its docker group, its service), and an install whose SSH connection was
// cut goes on on the machine (apt holds its lock until it is done), so a
// resumed bootstrap that took the binary for the install skipped ahead of
// it. Not done, the step's apt-get waits for the lock and finishes the job.
func runtimeInstalled(ctx context.Context, h *Host) (bool, error) {
	cmd := "command -v dockerd >/dev/null"
	if h.OS.Family == FamilyApt {
		cmd += ` && test -z "$(dpkg --audit 2>&1)"`
	}
	return cluster.Succeeds(ctx, h.Run, cmd)
}

// installRuntime installs the engine.
func installRuntime(ctx context.Context, h *Host) error {
	return Install(ctx, h, []string{"docker.io", "ca-certificates"}, []string{"moby-engine || dnf install -y docker"})
}

// Install installs distro packages with the machine's package manager: the
// apt names on Debian and Ubuntu, the dnf ones on the Fedora family. apt
// installs from what it has first: the local node image ships its packages
// in the apt cache, so no network is needed; only missing package lists
// trigger an update.
func Install(ctx context.Context, h *Host, apt, dnf []string) error {
	switch h.OS.Family {
	case FamilyApt:
		install := aptInstall + " " + strings.Join(apt, " ")
		err := h.Run.Run(ctx, install, nil, nil)
		if _, exited := cluster.ExitStatus(err); !exited || !missingPackageLists(err.Error()) {
			return err
		}
		h.logger().Info("apt package lists missing, updating", "machine", h.Name)
		if err := h.Run.Run(ctx, aptUpdate, nil, nil); err != nil {
			return err
		}
		return h.Run.Run(ctx, install, nil, nil)
	case FamilyDnf:
		return h.Run.Run(ctx, dnfInstall+" "+strings.Join(dnf, " "), nil, nil)
	default:
		return fmt.Errorf("install packages: %w: %q", ErrUnsupportedOS, h.OS.ID)
	}
}

// missingPackageLists recognizes apt's complaints, in the error's stderr
// tail, when it has never fetched its package lists (apt's only signal is
// text).
func missingPackageLists(stderr string) bool {
	return slices.ContainsFunc([]string{
		"Unable to locate package",
		"has no installation candidate",
		"is not available, but is referred to",
	}, func(s string) bool { return strings.Contains(stderr, s) })
}

// engineRunning succeeds when dockerd runs and has made its socket. It is
// checked without the docker CLI (provision speaks the Engine API itself,
// and only once the login user may open the socket, after docker-group).
const engineRunning = `test -S /var/run/docker.sock && kill -0 "$(cat /var/run/docker.pid 2>/dev/null)" 2>/dev/null`

// startEngine starts dockerd with whatever init the machine has: systemd, a
// SysV script, or, in containers without an init (or when the script fails
// or leaves no engine running within 10 s), dockerd in the background. A second
// dockerd started while a slow first one comes up exits on its pid file.
const startEngine = `running() { ` + engineRunning + `; }
if [ -d /run/systemd/system ]; then
  systemctl enable --now docker
else
  # Only wait on a SysV script that says it started the engine: in a
  # container without CAP_SYS_RESOURCE, Debian's script fails at its ulimit.
  if command -v service >/dev/null 2>&1 && service docker start >/dev/null 2>&1; then
    i=0
    while [ $i -lt 10 ] && ! running; do sleep 1; i=$((i+1)); done
  fi
  if ! running; then
    nohup dockerd >/var/log/dockerd.log 2>&1 </dev/null &
  fi
fi`

func startRuntime(ctx context.Context, h *Host) error {
	if err := h.Run.Run(ctx, startEngine, nil, nil); err != nil {
		return fmt.Errorf("start docker: %w", err)
	}
	return waitEngine(ctx, h)
}

// waitEngine polls until dockerd runs with its socket in place.
func waitEngine(ctx context.Context, h *Host) error {
	ctx, cancel := context.WithTimeout(ctx, EngineTimeout)
	defer cancel()
	check := succeeds(engineRunning)
	// A failed check (not "not yet") is retried too: the engine restarting
	// can drop the command; the deadline bounds it.
	err := retry.Do(ctx, retry.Policy{Initial: 500 * time.Millisecond, Max: 2 * time.Second}, func(ctx context.Context) (bool, error) {
		return check(ctx, h)
	})
	if err != nil {
		return fmt.Errorf("wait for docker engine (see /var/log/dockerd.log or journalctl -u docker): %w", err)
	}
	return nil
}
