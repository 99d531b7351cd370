package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/crypto/ssh"

	"github.com/provisionhq/provision/state/etcd/etcdtest"
)

// argvWatch samples every process's argv (what ps shows anyone on the
// machine, node containers' processes included) until stopped.
type argvWatch struct {
	mu    sync.Mutex
	seen  map[string]bool
	stop  chan struct{}
	done  chan struct{}
	polls int
}

func watchArgv() *argvWatch {
	w := &argvWatch{seen: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
			for _, f := range dirs {
				if b, err := os.ReadFile(f); err == nil && len(b) > 0 {
					w.mu.Lock()
					w.seen[string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))] = true
					w.mu.Unlock()
				}
			}
			w.mu.Lock()
			w.polls++
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *argvWatch) finish() (argvs []string, polls int) {
	close(w.stop)
	<-w.done
	for a := range w.seen {
		argvs = append(argvs, a)
	}
	sort.Strings(argvs)
	return argvs, w.polls
}

// stopwatch logs how long each step of a test took.
type stopwatch struct {
	t    *testing.T
	last time.Time
}

func newStopwatch(t *testing.T) *stopwatch { return &stopwatch{t: t, last: time.Now()} }

func (s *stopwatch) lap(step string) {
	s.t.Helper()
	s.t.Logf("%s: %s", step, time.Since(s.last).Round(100*time.Millisecond))
	s.last = time.Now()
}

// channel is one place a secret could end up, and its canaries: values
// that are not secret and must be found there, so that a channel read
// wrongly, or too early to hold anything, fails the sweep instead of
// passing it.
type channel struct {
	name     string
	text     string
	canaries []string
}

// fileHeader starts each file's part of a channel made of files.
const fileHeader = "==> "

// searchSecrets fails t for every sentinel found in a channel, naming the
// line (and the file) it is on, and for every canary a channel lacks.
func searchSecrets(t *testing.T, sentinels map[string]string, channels ...channel) {
	t.Helper()
	for _, ch := range channels {
		t.Logf("searched %s: %d bytes in %d lines", ch.name, len(ch.text), strings.Count(ch.text, "\n")+1)
		for _, c := range ch.canaries {
			if !strings.Contains(ch.text, c) {
				t.Errorf("%s lacks the canary %q: the sweep did not read what it meant to", ch.name, c)
			}
		}
		file := ""
		for _, line := range strings.Split(ch.text, "\n") {
			if strings.HasPrefix(line, fileHeader) {
				file = " (" + strings.TrimPrefix(line, fileHeader) + ")"
				continue
			}
			for what, secret := range sentinels {
				if strings.Contains(line, secret) {
					t.Errorf("%s in %s%s: %.300s", what, ch.name, file, line)
				}
			}
		}
	}
}

// argvChannel is the argvs a watch saw. It fails t when the watch sampled
// too few times to mean anything.
func argvChannel(t *testing.T, w *argvWatch, canaries ...string) channel {
	t.Helper()
	argvs, polls := w.finish()
	t.Logf("argv: %d samples of every process, %d distinct argvs", polls, len(argvs))
	if polls < 100 {
		t.Errorf("argv: only %d samples", polls)
	}
	return channel{name: "argv", text: strings.Join(argvs, "\n"), canaries: canaries}
}

// filesChannel is the content of every file under dir, each after a
// header line naming it; a gzipped file (pulumi's command logs) as it
// reads uncompressed.
func filesChannel(t *testing.T, name, dir string, canaries ...string) channel {
	t.Helper()
	var b strings.Builder
	var n, gzipped, encrypted int
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if path == dir && errors.Is(err, fs.ErrNotExist) {
			return fs.SkipAll // nothing was written there
		}
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		switch {
		case bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
			z, err := gzip.NewReader(bytes.NewReader(data))
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if data, err = io.ReadAll(z); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			gzipped++
		case bytes.HasPrefix(data, []byte("PLOG")):
			// pulumi's log of an update, encrypted with the stack's
			// secrets provider: searched as it is, which shows only that
			// nothing is in it in plain text.
			encrypted++
		}
		rel, _ := filepath.Rel(dir, path)
		fmt.Fprintf(&b, "%s%s\n%s\n", fileHeader, rel, data)
		n++
		return nil
	})
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	t.Logf("%s: %d files (%d gzipped, read uncompressed; %d encrypted logs)", name, n, gzipped, encrypted)
	return channel{name: name, text: b.String(), canaries: canaries}
}

// genericSentinels are secrets of any run, known by their form: a private
// key's PEM header (the login key's, and the machines' host keys, whose
// private halves provision generates and hands to each machine) and a
// swarm join token's prefix.
var genericSentinels = map[string]string{"a PEM private key": "PRIVATE KEY-----", "a swarm join token": "SWMTKN-"}

// sentinels returns the secrets every part of the sweep looks for: the
// generic ones and the given ones (name → value).
func sentinels(more map[string]string) map[string]string {
	m := map[string]string{}
	for _, from := range []map[string]string{genericSentinels, more} {
		for k, v := range from {
			m[k] = v
		}
	}
	return m
}

// keyBody is a line of a PEM key's body: as good as the whole key to find,
// and found wherever the key is, even JSON-escaped.
func keyBody(t *testing.T, keyPEM []byte) string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(string(keyPEM)), "\n")
	if len(lines) < 4 {
		t.Fatalf("a PEM key of %d lines", len(lines))
	}
	return lines[2]
}

// runLogged runs provision at debug level, its progress as JSON events
// (output "json") or plain lines ("text"), adds everything it printed to
// logs, and fails t if it fails.
func (c *cluster) runLogged(logs *strings.Builder, output string, args ...string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	out, err := c.run(ctx, append([]string{"-o", output, "--log-level", "debug"}, args...)...)
	logs.WriteString(out)
	if err != nil {
		c.t.Fatalf("provision %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// joinTokens adds the swarm's join tokens, read from its manager, to
// secrets.
func (c *cluster) joinTokens(secrets map[string]string) {
	c.t.Helper()
	out := c.must("ssh", c.plan, "managers", "--",
		"sudo docker swarm join-token -q worker && sudo docker swarm join-token -q manager")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 {
		c.t.Fatalf("join tokens: %q", out)
	}
	for i, role := range []string{"worker", "manager"} {
		tok := strings.TrimSpace(lines[len(lines)-2+i])
		if !strings.HasPrefix(tok, "SWMTKN-") {
			c.t.Fatalf("%s join token = %q", role, tok)
		}
		secrets["swarm "+role+" join token"] = tok
	}
}

// TestSecretsSweep runs provision through its front ends and state
// backends with sentinel secrets: the login private key, the clouds'
// secret key and password, the swarm's join tokens, and on etcd the
// user's password and TLS client key, besides any PEM private key or join
// token at all. None may appear in any argv on the machine during the runs
// (sampled every 20 ms, node containers' processes too), in a log line or
// JSON event at debug level, in the state, or in the Pulumi stack. Every
// channel also has canaries, values that are not secret and must be
// found, so that a channel the sweep failed to read fails it. The three
// parts share one cloudsim, whose clouds give each its machines:
//
//   - file: up, a scale-up, plan, status, an autoscaler pass and down;
//     the state directory.
//   - etcd: up, status, the autoscaler as a service (it leads the
//     election and scales a worker down under the state lock) and down, on
//     an etcd with TLS client certificates and authentication; every write
//     the etcd keyspace ever saw, the lock and leader keys included, and
//     the cluster's local directory.
//   - pulumi: a Pulumi program giving the key as a plain string; up, an
//     update, a refresh and destroy with the real CLI; the stack export and
//     every file the CLI, the program and the plugin wrote.
func TestSecretsSweep(t *testing.T) {
	requireDocker(t)
	group := fmt.Sprintf("secrets%d", time.Now().UnixNano()%1e6)
	sim := startCloudsim(t, group, "--pending", "500ms")
	awsSecret, osPassword := "SENTINELawsSecret0x5ecre7", "SENTINELosPassw0rd0x5ecre7"
	cloud := append(append([]string{}, sim.env...), "AWS_SECRET_ACCESS_KEY="+awsSecret, "OS_PASSWORD="+osPassword)
	cloudSecrets := map[string]string{"aws secret key": awsSecret, "openstack password": osPassword}

	t.Run("file", func(t *testing.T) { sweepFileState(t, cloud, group, sentinels(cloudSecrets)) })
	t.Run("etcd", func(t *testing.T) { sweepEtcdState(t, cloud, group, sentinels(cloudSecrets)) })
	t.Run("pulumi", func(t *testing.T) { sweepPulumi(t, cloud, sentinels(cloudSecrets)) })
}

// cloudPools are the pools of the CLI parts of the sweep: an AWS manager
// and autoscaled OpenStack workers, workers of them to start with, between
// least and most.
func cloudPools(workers, least, most int) string {
	return fmt.Sprintf(`pools:
  - name: managers
    provider: aws
    role: manager
    count: 1
    settings: {instance_type: t3.medium, ami: ami-0d1e2b3c4a5f60718}
  - name: os-workers
    provider: openstack
    count: %d
    settings: {flavor: m1.small, image: debian-12}
    autoscale: {min: %d, max: %d}
`, workers, least, most)
}

// sweepFileState: up, a scale-up, an autoscaler pass and down of a
// two-cloud swarm with its state in files.
func sweepFileState(t *testing.T, cloud []string, group string, secrets map[string]string) {
	c := newCluster(t, "secrets")
	c.env, c.group = cloud, group
	keyFile, keyPEM := loginKey(t)
	secrets["login private key"] = keyBody(t, keyPEM)
	stateDir := filepath.Join(c.dir, "state")
	write := func(workers int) {
		plan := fmt.Sprintf(`version: 1
cluster:
  name: %s
ssh:
  user: admin
  key: %s
state:
  path: %s
%s`, c.name, keyFile, stateDir, cloudPools(workers, 1, 3))
		if err := os.WriteFile(c.plan, []byte(plan), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	w, clock := watchArgv(), newStopwatch(t)
	var logs strings.Builder
	write(1)
	c.runLogged(&logs, "json", "up", c.plan)
	clock.lap("up (2 machines)")
	write(2)
	c.runLogged(&logs, "text", "up", c.plan)
	clock.lap("up (scale to 3)")
	c.converged(3)
	c.joinTokens(secrets)
	c.runLogged(&logs, "text", "plan", c.plan)
	c.runLogged(&logs, "json", "status", c.plan)
	// The autoscaler reads the swarm's demand over SSH and decides once.
	c.runLogged(&logs, "text", "autoscale", "--once", c.plan)
	clock.lap("checks, join tokens, plan, status, autoscale --once")
	// Read before down, which removes the state.
	state := filesChannel(t, "the state directory", stateDir, c.name+"-managers-", `"lineage"`)
	c.runLogged(&logs, "json", "down", c.plan)
	clock.lap("down")

	searchSecrets(t, secrets,
		argvChannel(t, w, "up "+c.plan, "autoscale --once "+c.plan, "sshd: admin"),
		channel{name: "provision's output", text: logs.String(),
			canaries: []string{`"stage"`, c.name + "-os-workers-", "No changes", `"cluster_status"`, "autoscaler decision"}},
		state)
}

// sweepEtcdState: up, the autoscaler as a service and down of a two-cloud
// swarm with its state on an etcd that wants TLS client certificates and
// a login.
func sweepEtcdState(t *testing.T, cloud []string, group string, secrets map[string]string) {
	const prefix, user = "/sweep", "provision"
	password := "SENTINELetcdPassw0rd0x5ecre7"
	// Started before the cluster, so that the cluster's cleanup (down)
	// still finds its state.
	srv := etcdtest.StartPrivate(t, true)
	etcdtest.EnableAuth(t, srv, user, password, prefix+"/")
	clientKey, err := os.ReadFile(srv.TLS.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, "secretsetcd")
	c.env, c.group = cloud, group
	keyFile, keyPEM := loginKey(t)
	secrets["login private key"] = keyBody(t, keyPEM)
	secrets["etcd password"] = password
	secrets["etcd TLS client key"] = strings.Split(string(clientKey), "\n")[1]
	// The cluster's local directory: provider files, a managed key; with
	// the state on etcd, not the state.
	localDir := filepath.Join(c.dir, "local")
	passwordFile := filepath.Join(c.dir, "etcd-password")
	if err := os.WriteFile(passwordFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// One worker, which the autoscaler removes (min 0) once it has been
	// unneeded for a second.
	plan := fmt.Sprintf(`version: 1
cluster:
  name: %s
ssh:
  user: admin
  key: %s
state:
  backend: etcd
  endpoints: [%s]
  prefix: %s
  tls: {ca: %s, cert: %s, key: %s}
  username: %s
  password_file: %s
  path: %s
autoscale:
  scan_interval: 2s
  cooldown: 1s
  scale_down: {unneeded_time: 1s, drain_timeout: 1m}
%s`, c.name, keyFile, strings.Join(srv.Endpoints, ", "), prefix, srv.TLS.CAFile, srv.TLS.CertFile, srv.TLS.KeyFile,
		user, passwordFile, localDir, cloudPools(1, 0, 2))
	if err := os.WriteFile(c.plan, []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}

	w, clock := watchArgv(), newStopwatch(t)
	var logs strings.Builder
	c.runLogged(&logs, "json", "up", c.plan)
	clock.lap("up (2 machines)")
	c.converged(2)
	c.joinTokens(secrets)
	c.runLogged(&logs, "json", "status", c.plan)
	clock.lap("checks, join tokens, status")

	// The autoscaler as it runs in a cluster: it campaigns for leadership,
	// leads, and removes the idle worker under the state lock.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	log, stop := c.autoscale(ctx, "--log-level", "debug", "--listen", "off")
	var shrunk time.Time
	waitFor(t, 3*time.Minute, "the autoscaler leads and removes the idle worker", log, func() bool {
		if l, ok := log.first("autoscaler scaling down", time.Time{}); ok {
			shrunk = l.at
		}
		// The pass after the one that removed it.
		_, ok := log.first("autoscaler decision", shrunk.Add(time.Nanosecond))
		return !shrunk.IsZero() && ok
	})
	stop()
	clock.lap("autoscaler: lead, scale down")
	logs.WriteString(log.String())
	if st := c.status(); len(st.Machines) != 1 {
		t.Fatalf("after the autoscaler's scale-down the state has %d machines, want the manager alone: %+v", len(st.Machines), st.Machines)
	}
	local := filesChannel(t, "the local directory", localDir)
	c.runLogged(&logs, "json", "down", c.plan)
	clock.lap("down")

	base := prefix + "/" + c.name
	history, keys := etcdHistory(t, srv, "root", "root-"+password)
	var ours []string
	for k := range keys {
		if strings.HasPrefix(k, base+"/") {
			ours = append(ours, k)
		}
	}
	sort.Strings(ours)
	t.Logf("etcd: %d keys ever written, %d of them under %s: %v", len(keys), len(ours), base, ours)
	searchSecrets(t, secrets,
		argvChannel(t, w, "up "+c.plan, "autoscale "+c.plan, "sshd: admin"),
		channel{name: "provision's output", text: logs.String(),
			canaries: []string{`"stage"`, c.name + "-os-workers-", `"cluster_status"`, "autoscaler leading", "autoscaler scaling down"}},
		channel{name: "every write to etcd", text: history,
			canaries: []string{"PUT " + base + "/state ", "PUT " + base + "/state.backup ", "DELETE " + base + "/state ",
				"PUT " + base + "/lock ", `"operation":"up"`, `"operation":"autoscale"`, `"operation":"down"`,
				"PUT " + base + "/leader/", c.name + "-managers-"}},
		local)
}

// etcdHistory returns every change the etcd keyspace went through, from
// its first revision to now (a test server never compacts), one line
// each: "REV PUT KEY VALUE" or "REV DELETE KEY", and the keys changed. It
// reads as user (root: the whole keyspace, whoever wrote it).
func etcdHistory(t *testing.T, srv *etcdtest.Server, user, password string) (string, map[string]bool) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints, TLS: srv.TLS.Config(),
		Username: user, Password: password, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	// A last write of the test's own marks the end of the history.
	const end = "/secrets-sweep-end"
	put, err := cli.Put(ctx, end, "")
	if err != nil {
		t.Fatalf("etcd put %s: %v", end, err)
	}
	var b strings.Builder
	keys := map[string]bool{}
	for resp := range cli.Watch(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithRev(1)) {
		if err := resp.Err(); err != nil {
			t.Fatalf("etcd history: %v", err)
		}
		for _, ev := range resp.Events {
			if ev.Kv.ModRevision >= put.Header.Revision {
				return b.String(), keys
			}
			keys[string(ev.Kv.Key)] = true
			fmt.Fprintf(&b, "%d %s %s %s\n", ev.Kv.ModRevision, ev.Type, ev.Kv.Key, ev.Kv.Value)
		}
	}
	t.Fatalf("etcd history: the watch ended before revision %d: %v", put.Header.Revision, ctx.Err())
	return "", nil
}

// sweepPulumi: e2e/testdata/pulumisecrets with the real pulumi CLI and
// plugin: up, an update (a worker label), a refresh and destroy.
func sweepPulumi(t *testing.T, cloud []string, secrets map[string]string) {
	tools := pulumiTools(t)
	s := newPulumiStack(t, tools, pulumiPlugin(t), "testdata/pulumisecrets")
	s.env = append(s.env, cloud...)
	keyFile, keyPEM := loginKey(t)
	key := keyBody(t, keyPEM)
	secrets["login private key"] = key
	name := fmt.Sprintf("secretspulumi%d", time.Now().UnixNano()%1e6)
	const stack = "sweep"
	destroyed := s.initStack(stack)
	s.must("config", "set", "clusterName", name)
	s.must("config", "set", "keyFile", keyFile)

	w := watchArgv()
	var logs strings.Builder
	// --debug shows the plugin's debug lines, the engine's log among them;
	// --diff, every property of what changed, the secret ones masked.
	pulumi := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		start := time.Now()
		out, errOut, err := s.run(ctx, append(args, "--debug", "--diff")...)
		logs.WriteString(out + errOut)
		if err != nil {
			t.Fatalf("pulumi %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
		}
		t.Logf("pulumi %s: %s", strings.Join(args, " "), time.Since(start).Round(100*time.Millisecond))
	}
	pulumi("up", "--yes", "--skip-preview")
	for _, role := range []string{"worker", "manager"} {
		tok := strings.TrimSpace(s.must("stack", "output", role+"JoinToken", "--show-secrets"))
		if !strings.HasPrefix(tok, "SWMTKN-") {
			t.Fatalf("%sJoinToken = %q", role, tok)
		}
		secrets["swarm "+role+" join token"] = tok
	}
	publicKey := strings.TrimSpace(s.must("stack", "output", "publicKey"))
	s.must("config", "set", "tier", "b")
	pulumi("up", "--yes", "--skip-preview")
	pulumi("refresh", "--yes", "--skip-preview")
	export := s.must("stack", "export")
	// The secrets are in the stack, encrypted: decrypted, the export holds
	// the key and the tokens that the plain export must not.
	shown := s.must("stack", "export", "--show-secrets")
	for what, secret := range map[string]string{"login private key": key, "swarm worker join token": secrets["swarm worker join token"]} {
		if !strings.Contains(shown, secret) {
			t.Errorf("the %s is not in the stack even decrypted: the sweep of the export proves nothing", what)
		}
	}
	pulumi("destroy", "--yes", "--skip-preview")
	destroyed()

	searchSecrets(t, secrets,
		argvChannel(t, w, "pulumi-resource-provision", "pulumi-language-go", "sshd: admin"),
		channel{name: "pulumi's output", text: logs.String(), canaries: []string{name + "-os-workers-", "joined swarm", "privateKey", "[secret]"}},
		channel{name: "pulumi stack export", text: export, canaries: []string{`"ciphertext"`, name + "-managers-", publicKey}},
		// The backend's checkpoints, their history and backups, the stack's
		// config, PULUMI_HOME and the plugin's cache directory.
		filesChannel(t, "pulumi's files", s.tmp, name+"-managers-", `"ciphertext"`))
}

// loginKey writes a fresh ed25519 login key for a plan's ssh.key and
// returns its path and PEM.
func loginKey(t *testing.T) (string, []byte) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(block)
	file := filepath.Join(t.TempDir(), "login")
	if err := os.WriteFile(file, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return file, keyPEM
}
