package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/provisionhq/provision/bootstrap/sshfault"
	"github.com/provisionhq/provision/bootstrap/sshtest"
	"github.com/provisionhq/provision/providers/hostkey"
)

// simFaults is what one cloud's GET /_sim/faults says it injected.
type simFaults struct {
	ServerErrors int `json:"server_errors"`
	Resets       int `json:"resets"`
	AfterWork    int `json:"after_work"`
}

// simInventory is one cloud's GET /_sim/instances.
type simInventory struct {
	Alive    []string `json:"alive"`
	Launched int      `json:"launched"`
}

func (p *cloudsimProc) get(t *testing.T, cloud, path string, v any) {
	t.Helper()
	resp, err := http.Get(p.urls[cloud] + path)
	if err != nil {
		t.Fatalf("cloudsim %s %s: %v", cloud, path, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("cloudsim %s %s: %v", cloud, path, err)
	}
}

func (p *cloudsimProc) faults(t *testing.T, cloud string) simFaults {
	t.Helper()
	var f simFaults
	p.get(t, cloud, "/_sim/faults", &f)
	return f
}

func (p *cloudsimProc) inventory(t *testing.T, cloud string) simInventory {
	t.Helper()
	var inv simInventory
	p.get(t, cloud, "/_sim/instances", &inv)
	return inv
}

// TestMulticloudUnderFaults runs examples/multicloud.yaml (a batch of
// machines per cloud) against cloudsim with 10% of every cloud's API
// requests answered 500 or 503, 5% reset without an answer (half of both
// after the request did its work), and 200 ms on every request. One `up`
// converges: what cloudsim holds is exactly the plan, per cloud, with no
// instance ever launched twice, and every machine is Ready in the swarm;
// `down` leaves no instance in cloudsim.
func TestMulticloudUnderFaults(t *testing.T) {
	requireDocker(t)
	group := fmt.Sprintf("flt%d", time.Now().UnixNano()%1e6)
	// A run makes only a dozen or two requests to each cloud, so faults
	// drawn from the clock would spare a cloud now and then. Seed 107
	// strikes each cloud within its first two requests: aws's first is
	// reset, gcp's first answered 503 after its work and its second
	// reset, openstack's first two answered 500 after their work and its
	// third reset. PROVISION_E2E_SEED picks another, to explore.
	seed := cmp.Or(os.Getenv("PROVISION_E2E_SEED"), "107")
	sim := startCloudsim(t, group, "--server-errors", "0.1", "--resets", "0.05", "--latency", "200ms", "--pending", "1s", "--seed", seed)
	c := newCluster(t, "faults")
	c.env, c.group = sim.env, group
	c.writeMulticloud()
	want := map[string]int{"aws": 1, "gcp": 2, "openstack": 2}
	clouds := []string{"aws", "gcp", "openstack"}
	faultLine := func() string {
		var parts []string
		for _, cloud := range clouds {
			f := sim.faults(t, cloud)
			parts = append(parts, fmt.Sprintf("%s: %d server errors, %d resets (%d after the work)", cloud, f.ServerErrors, f.Resets, f.AfterWork))
		}
		return strings.Join(parts, "; ")
	}

	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := c.run(ctx, "up", c.plan)
	if err != nil {
		t.Fatalf("up under faults did not converge in one run (%v): %v\n%s\ninjected so far: %s", time.Since(start).Round(time.Second), err, out, faultLine())
	}
	t.Logf("up converged in one run in %s; injected: %s\n%s", time.Since(start).Round(100*time.Millisecond), faultLine(), lastLines(out, 3))
	c.converged(5)
	for _, cloud := range clouds {
		inv := sim.inventory(t, cloud)
		if len(inv.Alive) != want[cloud] || inv.Launched != want[cloud] {
			t.Fatalf("cloudsim %s holds %d instances %v and launched %d; want exactly %d (a duplicate or a leak)",
				cloud, len(inv.Alive), inv.Alive, inv.Launched, want[cloud])
		}
	}
	if out := c.must("up", c.plan); !strings.Contains(out, "No changes") {
		t.Fatalf("a second up under faults should change nothing:\n%s", out)
	}

	start = time.Now()
	if out, err := c.run(ctx, "down", c.plan); err != nil {
		t.Fatalf("down under faults: %v\n%s\ninjected so far: %s", err, out, faultLine())
	}
	t.Logf("down in %s", time.Since(start).Round(100*time.Millisecond))
	for _, cloud := range clouds {
		if inv := sim.inventory(t, cloud); len(inv.Alive) != 0 {
			t.Fatalf("down left %d instances in cloudsim %s: %v", len(inv.Alive), cloud, inv.Alive)
		}
	}
	deadline := time.Now().Add(time.Minute) // cloud hosts go with their instances
	for len(c.containers()) > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Second)
	}
	if left := c.containers(); len(left) != 0 {
		t.Fatalf("down left instance hosts running: %v", left)
	}

	// The faults did happen, on every cloud, of both kinds, some after
	// the work: a run without them is no test of this at all.
	var total simFaults
	calls := map[string]map[string]int{}
	for _, cloud := range clouds {
		f := sim.faults(t, cloud)
		calls[cloud] = sim.calls(t, cloud)
		if f.ServerErrors+f.Resets == 0 {
			t.Errorf("cloudsim %s injected no fault (calls %v)", cloud, calls[cloud])
		}
		total.ServerErrors += f.ServerErrors
		total.Resets += f.Resets
		total.AfterWork += f.AfterWork
	}
	t.Logf("injected over up, up and down (seed %s): %s; calls served: aws %v, gcp %v, openstack %v", seed, faultLine(), calls["aws"], calls["gcp"], calls["openstack"])
	if total.ServerErrors == 0 || total.Resets == 0 || total.AfterWork == 0 {
		t.Errorf("faults injected in all: %+v; want server errors, resets and some after the work", total)
	}
}

// logLine is one line of provision's log (slog's text form) or one of its
// JSON progress events, as the SSH drop test reads them.
type logLine struct {
	at    time.Time
	level string // DEBUG, INFO, WARN, ERROR; "EVENT" for a progress event
	msg   string // the log message, or "<stage> <status>" for an event
	attrs map[string]string
}

// parseLogfmt reads a slog text line: key=value pairs, values quoted when
// they need it.
func parseLogfmt(line string) map[string]string {
	out := map[string]string{}
	for line != "" {
		line = strings.TrimLeft(line, " ")
		k, rest, ok := strings.Cut(line, "=")
		if !ok {
			break
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			// A quoted value ends at the first unescaped quote.
			i := 1
			for i < len(rest) && rest[i] != '"' {
				if rest[i] == '\\' {
					i++
				}
				i++
			}
			if i >= len(rest) {
				i = len(rest) - 1
			}
			if uq, err := unquote(rest[:i+1]); err == nil {
				v = uq
			} else {
				v = rest[1:i]
			}
			rest = rest[min(i+1, len(rest)):]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
		}
		out[k] = v
		line = rest
	}
	return out
}

func unquote(s string) (string, error) {
	var v string
	err := json.Unmarshal([]byte(s), &v)
	return v, err
}

// dropPoint is where, in one machine's bootstrap, the SSH drop test cuts
// the machine's connections: when the line that opens the step shows, in
// the way how says. evidence is provision's own word that it lost the
// connection there and went on.
type dropPoint struct {
	step     string
	opens    func(l logLine) bool
	how      cutKind
	delay    time.Duration // cutNow's wait after the line
	evidence func(l logLine) bool
}

type cutKind int

const (
	// cutNext cuts the moment provision next sends anything to the
	// machine, so the cut lands in the step's first exchange however
	// quickly the test reacts.
	cutNext cutKind = iota
	// cutHandshake cuts the moment a new connection to the machine first
	// sends anything: a dial's handshake.
	cutHandshake
	// cutNow cuts after delay, in the middle of a command that runs a
	// while.
	cutNow
)

func event(stage, status string) func(logLine) bool {
	return func(l logLine) bool { return l.level == "EVENT" && l.msg == stage+" "+status }
}

func logged(msg string) func(logLine) bool {
	return func(l logLine) bool { return l.level != "EVENT" && l.msg == msg }
}

func stepApplying(step string) func(logLine) bool {
	return func(l logLine) bool { return l.msg == "step applying" && l.attrs["step"] == step }
}

// printed is a line of a command's output (logged at debug).
func printed(prefix string) func(logLine) bool {
	return func(l logLine) bool { return l.msg == "stdout" && strings.HasPrefix(l.attrs["line"], prefix) }
}

// Provision's evidence that a drop cut a step off and it went on.
var (
	// Dial met a connection closed in its handshake and tried again.
	dialRetried = logged("ssh not ready")
	// The engine found a stage's connection lost and dialed again.
	stageResumed = func(stage string) func(logLine) bool {
		return func(l logLine) bool {
			return l.msg == "ssh connection lost; going on over a new connection" && l.attrs["stage"] == stage
		}
	}
	// A bootstrap step was cut off (and the engine resumed the stage).
	stepCutOff = func(step string) func(logLine) bool {
		return func(l logLine) bool { return l.msg == "step cut off: ssh connection lost" && l.attrs["step"] == step }
	}
)

// dropPoints are every step of a machine's bootstrap, in order: waiting
// for SSH, the host key rotation (each of its steps over the connection),
// the runtime's bootstrap steps, the pool's setup and the join.
var dropPoints = []dropPoint{
	{step: "wait for ssh (handshake)", opens: event("ssh", "start"), how: cutHandshake, evidence: dialRetried},
	{step: "host key rotation: stage the next key", opens: logged("ssh connected"), evidence: stageResumed("ssh")},
	{step: "host key rotation: install it", opens: logged("host key rotation: next key staged on the machine and recorded"), evidence: stageResumed("ssh")},
	{step: "host key rotation: reload sshd", opens: logged("host key rotation: next key installed"), evidence: stageResumed("ssh")},
	// After the reload the engine dials with the new key alone (sshd's
	// reload may refuse a dial or two first: the cut is of the first
	// handshake that reaches it).
	{step: "host key rotation: connect with the new key", opens: logged("host key rotation: sshd reloaded"), how: cutHandshake, evidence: dialRetried},
	{step: "detect-os", opens: stepApplying("detect-os"), evidence: stepCutOff("detect-os")},
	// Cut once dpkg has unpacked dockerd and before it has configured
	// the package: the install goes on on the machine, and the resumed
	// step must wait for it rather than take the binary for done.
	{step: "install-runtime", opens: printed("Unpacking docker.io "), how: cutNow, evidence: stepCutOff("install-runtime")},
	{step: "start-runtime", opens: stepApplying("start-runtime"), evidence: stepCutOff("start-runtime")},
	{step: "docker-group", opens: stepApplying("docker-group"), evidence: stepCutOff("docker-group")},
	// The pool's setup sleeps 3 s (see the plan): cut it in the middle.
	{step: "setup", opens: stepApplying("setup"), how: cutNow, delay: time.Second, evidence: stepCutOff("setup")},
	{step: "join", opens: event("join", "start"), evidence: stageResumed("join")},
}

// drop is one cut the test made.
type drop struct {
	machine, step string
	at            time.Time
	conns         int
	point         dropPoint
}

// machineProxies puts a fault proxy on the way to each machine, made when
// the bastion first forwards to the machine's address.
type machineProxies struct {
	latency time.Duration
	mu      sync.Mutex
	byAddr  map[string]*sshfault.Proxy
}

func (m *machineProxies) dial(ctx context.Context, addr string) (net.Conn, error) {
	m.mu.Lock()
	p, ok := m.byAddr[addr]
	if !ok {
		var err error
		if p, err = sshfault.Listen(addr, sshfault.Options{Latency: m.latency}); err != nil {
			m.mu.Unlock()
			return nil, err
		}
		m.byAddr[addr] = p
	}
	m.mu.Unlock()
	var d net.Dialer
	return d.DialContext(ctx, "tcp", p.Addr())
}

func (m *machineProxies) proxy(addr string) *sshfault.Proxy {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.byAddr[addr]
}

func (m *machineProxies) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.byAddr {
		p.Close()
	}
}

// TestSSHDropInEveryStep cuts each machine's SSH connections in the middle
// of every step of its bootstrap (see dropPoints), in one `up` of a manager
// and a worker on the docker provider, logged in as a non-root user: the
// same run reconnects with the pinned host key (or the one being rotated
// in), reruns or skips each step by its check, and converges, every machine
// Ready in the swarm with its host key rotated. The machines are reached
// through a bastion (in the test) that dials each one through a fault
// proxy of its own, adding 50 ms each way so that a cut lands inside the
// step it is meant for however short the step.
func TestSSHDropInEveryStep(t *testing.T) {
	requireDocker(t)
	c := newCluster(t, "drop")
	keyFile, _ := loginKey(t)
	signer, err := loadSigner(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	bastionKey, err := hostkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	bastionSigner, err := ssh.ParsePrivateKey(bastionKey.PrivatePEM)
	if err != nil {
		t.Fatal(err)
	}
	proxies := &machineProxies{latency: 50 * time.Millisecond, byAddr: map[string]*sshfault.Proxy{}}
	t.Cleanup(proxies.close)
	bastion := sshtest.Start(t, sshtest.Options{HostKey: bastionSigner, AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()},
		Forwarding: true, Dial: proxies.dial})
	bhost, bport, _ := net.SplitHostPort(bastion.Addr)
	plan := fmt.Sprintf(`version: 1
cluster:
  name: %s
state:
  path: %s
ssh:
  user: admin
  key: %s
  bastion:
    host: %s
    port: %s
    user: jump
    host_key: %q
pools:
  - name: managers
    provider: docker
    role: manager
    count: 1
    setup: [sleep 3, touch /var/tmp/setup-done]
  - name: workers
    provider: docker
    count: 1
    setup: [sleep 3, touch /var/tmp/setup-done]
`, c.name, filepath.Join(c.dir, "state"), keyFile, bhost, bport, bastionKey.Public)
	if err := os.WriteFile(c.plan, []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--output", "json", "--log-level", "debug", "up", c.plan)
	cmd.Dir = c.dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	lines := make(chan logLine, 1024)
	var readers sync.WaitGroup
	var raw bytes.Buffer // everything provision printed, for failures
	var rawMu sync.Mutex
	read := func(r io.Reader, parse func(string) (logLine, bool)) {
		defer readers.Done()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			rawMu.Lock()
			raw.WriteString(sc.Text() + "\n")
			rawMu.Unlock()
			if l, ok := parse(sc.Text()); ok {
				lines <- l
			}
		}
	}
	readers.Add(2)
	go read(stdout, func(s string) (logLine, bool) {
		var ev struct {
			Machine, Stage, Status, Detail string
		}
		if json.Unmarshal([]byte(s), &ev) != nil || ev.Machine == "" || ev.Stage == "" {
			return logLine{}, false // the final report
		}
		return logLine{at: time.Now(), level: "EVENT", msg: ev.Stage + " " + ev.Status,
			attrs: map[string]string{"machine": ev.Machine, "detail": ev.Detail}}, true
	})
	go read(stderr, func(s string) (logLine, bool) {
		kv := parseLogfmt(s)
		if kv["msg"] == "" {
			return logLine{}, false
		}
		return logLine{at: time.Now(), level: kv["level"], msg: kv["msg"], attrs: kv}, true
	})
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { readers.Wait(); close(lines) }()

	// Each machine meets every drop point once, the first time its line
	// shows; a cut made for one step that resumes shows that line again.
	var (
		all     []logLine
		dropsMu sync.Mutex
		drops   []drop
		armed   sync.WaitGroup
		addrOf  = map[string]string{} // machine → address, from its create event
		fired   = map[string]bool{}   // machine + step
		missing []string
	)
	cutAt := func(machine, addr string, dp dropPoint) {
		defer armed.Done()
		// The bastion makes a machine's proxy when it first forwards to
		// it, as the first drop point opens.
		p := waitProxy(proxies, addr)
		if p == nil {
			dropsMu.Lock()
			missing = append(missing, fmt.Sprintf("%s: %s: the bastion never forwarded to %q", machine, dp.step, addr))
			dropsMu.Unlock()
			return
		}
		// The cut's time is taken before it: provision may say it lost
		// the connection before this goroutine hears the cut is done.
		var cut sshfault.Cut
		var next <-chan sshfault.Cut
		switch dp.how {
		case cutNow:
			time.Sleep(dp.delay)
			cut.At = time.Now()
			cut.Conns = p.Drop()
		case cutNext:
			next = p.DropNext()
		case cutHandshake:
			next = p.DropNextConn()
		}
		if next != nil {
			select {
			case cut = <-next:
			case <-time.After(time.Minute):
				dropsMu.Lock()
				missing = append(missing, machine+": "+dp.step+": nothing was sent to the machine within a minute")
				dropsMu.Unlock()
				return
			}
		}
		dropsMu.Lock()
		drops = append(drops, drop{machine: machine, step: dp.step, at: cut.At, conns: cut.Conns, point: dp})
		dropsMu.Unlock()
	}
	for l := range lines {
		all = append(all, l)
		m := l.attrs["machine"]
		if m == "" {
			continue
		}
		if l.level == "EVENT" && l.msg == "create done" {
			addrOf[m] = net.JoinHostPort(l.attrs["detail"], "22")
		}
		for _, dp := range dropPoints {
			if fired[m+dp.step] || !dp.opens(l) {
				continue
			}
			fired[m+dp.step] = true
			armed.Add(1)
			go cutAt(m, addrOf[m], dp)
		}
	}
	err = cmd.Wait()
	armed.Wait()
	took := time.Since(start)
	rawMu.Lock()
	output := raw.String()
	rawMu.Unlock()
	if err != nil {
		t.Fatalf("up with its SSH connections cut in every step: %v (after %s)\n%s", err, took.Round(time.Second), lastLines(output, 80))
	}
	if len(missing) > 0 {
		t.Fatalf("drops not made:\n  %s\n%s", strings.Join(missing, "\n  "), lastLines(output, 80))
	}

	// Every cut landed in its step: provision says it lost the connection
	// there (before the next cut of that machine) and went on.
	sort.Slice(drops, func(i, j int) bool { return drops[i].at.Before(drops[j].at) })
	machines := map[string]bool{}
	var report []string
	for i, d := range drops {
		machines[d.machine] = true
		next := time.Now()
		for _, later := range drops[i+1:] {
			if later.machine == d.machine {
				next = later.at
				break
			}
		}
		var seen *logLine
		for j := range all {
			l := &all[j]
			if l.attrs["machine"] == d.machine && !l.at.Before(d.at) && l.at.Before(next) && d.point.evidence(*l) {
				seen = l
				break
			}
		}
		if d.conns == 0 {
			t.Errorf("%s: %s: the cut found no connection to the machine", d.machine, d.step)
		}
		if seen == nil {
			t.Errorf("%s: %s: cut %d connections, and provision never said it lost one in that step", d.machine, d.step, d.conns)
			continue
		}
		report = append(report, fmt.Sprintf("%-28s %-44s cut %d, resumed after %s", d.machine, d.step, d.conns, seen.at.Sub(d.at).Round(time.Millisecond)))
	}
	t.Logf("up converged in one run in %s with %d cuts:\n  %s", took.Round(100*time.Millisecond), len(drops), strings.Join(report, "\n  "))
	if len(machines) != 2 || len(drops) != 2*len(dropPoints) {
		t.Errorf("%d cuts on %d machines, want %d on 2", len(drops), len(machines), 2*len(dropPoints))
	}
	if t.Failed() {
		file := filepath.Join(os.TempDir(), c.name+"-up.log")
		_ = os.WriteFile(file, []byte(output), 0o644)
		t.Logf("provision's output (all of it in %s):\n%s", file, lastLines(output, 200))
		return
	}
	c.converged(2)
	ms, err := readMachines(c.stateFile())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if !m.Rotated || m.NextHostKey != "" {
			t.Errorf("%s: host key rotated=%v, next %q; want rotated and none under way", m.ID, m.Rotated, m.NextHostKey)
		}
	}
	if out := c.must("up", c.plan); !strings.Contains(out, "No changes") {
		t.Fatalf("an up after the resumed one should change nothing:\n%s", out)
	}
}

// waitProxy waits a little for the bastion to make the proxy to addr.
func waitProxy(m *machineProxies, addr string) *sshfault.Proxy {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if p := m.proxy(addr); p != nil {
			return p
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// loadSigner reads a login key the test wrote.
func loadSigner(path string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ssh.ParsePrivateKey(b)
}
