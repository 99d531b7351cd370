package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisionhq/provision/providers/docker/dockertest"
)

// pulumiStack runs the pulumi CLI against one stack of a Pulumi program in
// this module (examples/pulumi), with its own PULUMI_HOME and file://
// backend and no network.
type pulumiStack struct {
	t       *testing.T
	pulumi  string // the CLI binary
	tmp     string // everything the CLI, the program and the plugin write: project, backend, home, cache
	dir     string // the project directory the CLI runs in (under tmp)
	backend string // the file:// backend's directory
	env     []string
}

// pulumiTools returns the directory holding the pulumi CLI and the Go
// language host: PROVISION_PULUMI_BIN (make test sets it), or what
// scripts/build-pulumi.sh builds or finds, so that `go test ./e2e/ -run
// Pulumi` works alone. A missing toolchain is a failure, not a skip: the
// toolchain builds from the module proxy, so there is no excuse for it.
func pulumiTools(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("PROVISION_PULUMI_BIN"); dir != "" {
		return dir
	}
	start := time.Now()
	cmd := exec.Command("../scripts/build-pulumi.sh")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr // the build's progress is on stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("scripts/build-pulumi.sh: %v\n%s", err, out.String())
	}
	dir := lastLine(out.String())
	t.Logf("pulumi tools in %s (scripts/build-pulumi.sh took %s)", dir, time.Since(start).Round(time.Second))
	return dir
}

// plugin is the provider plugin, built by the first test that needs it
// into the directory TestMain removes, like bin.
var plugin struct {
	once sync.Once
	dir  string
	err  error
}

// pulumiPlugin returns a directory holding the provider plugin,
// pulumi-resource-provision, for newPulumiStack's pluginDir. The plugin is
// built once for all the tests (linking it takes 20-70 s here).
func pulumiPlugin(t *testing.T) string {
	t.Helper()
	plugin.once.Do(func() {
		start := time.Now()
		plugin.dir = filepath.Join(filepath.Dir(bin), "pulumi-plugin")
		build := exec.Command("go", "build", "-o", filepath.Join(plugin.dir, "pulumi-resource-provision"), "../cmd/pulumi-resource-provision")
		if out, err := build.CombinedOutput(); err != nil {
			plugin.err = fmt.Errorf("%w\n%s", err, out)
		}
		t.Logf("built pulumi-resource-provision in %s", time.Since(start).Round(100*time.Millisecond))
	})
	if plugin.err != nil {
		t.Fatalf("build pulumi-resource-provision: %v", plugin.err)
	}
	return plugin.dir
}

// newPulumiStack is the project of the Pulumi program in program (a
// directory relative to e2e, e.g. ../examples/pulumi), logged in to a fresh
// file:// backend, with the tools and the plugin in pluginDir on PATH.
func newPulumiStack(t *testing.T, tools, pluginDir, program string) *pulumiStack {
	t.Helper()
	tmp := t.TempDir()
	s := &pulumiStack{t: t, pulumi: filepath.Join(tools, "pulumi"), tmp: tmp, dir: filepath.Join(tmp, "project"), backend: filepath.Join(tmp, "backend")}
	for _, d := range []string{s.dir, s.backend, filepath.Join(tmp, "home"), filepath.Join(tmp, "cache")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	// The project is the program's Pulumi.yaml in a temp dir with `main:`
	// pointing back at the program: it builds where it is, in this module
	// from its go.sum, while the stack's config file (Pulumi.<stack>.yaml,
	// which `stack init` writes beside Pulumi.yaml and which has no
	// --config-file) lands in the temp dir, not the repo.
	main, err := filepath.Abs(program)
	if err != nil {
		t.Fatal(err)
	}
	project, err := os.ReadFile(filepath.Join(main, "Pulumi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(s.dir, main)
	if err != nil {
		t.Fatal(err)
	}
	project = append(bytes.TrimRight(project, "\n"), []byte("\nmain: "+rel+"\n")...)
	if err := os.WriteFile(filepath.Join(s.dir, "Pulumi.yaml"), project, 0o644); err != nil {
		t.Fatal(err)
	}

	// The module cache and build cache are the caller's, so the program
	// builds with GOPROXY=off (proof that it needs no network) and without
	// recompiling the SDK; XDG_CACHE_HOME would otherwise move GOCACHE.
	goenv, err := exec.Command("go", "env", "GOCACHE", "GOFLAGS").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	g := strings.Split(string(goenv), "\n")
	goflags := []string{"-mod=readonly"}
	for _, f := range strings.Fields(g[1]) {
		if !strings.HasPrefix(f, "-mod=") {
			goflags = append(goflags, f)
		}
	}
	s.env = append(os.Environ(),
		"PATH="+tools+string(os.PathListSeparator)+pluginDir+string(os.PathListSeparator)+os.Getenv("PATH"),
		"PULUMI_HOME="+filepath.Join(tmp, "home"),
		"PULUMI_CONFIG_PASSPHRASE=e2e-pulumi-passphrase",
		"PULUMI_SKIP_UPDATE_CHECK=true",
		"PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true",
		// The plugin keeps per-cluster files under the user cache dir.
		"XDG_CACHE_HOME="+filepath.Join(tmp, "cache"),
		"GOCACHE="+strings.TrimSpace(g[0]),
		"GOPROXY=off",
		"GOWORK=off",
		// -mod=readonly: the program must build from the committed go.mod and
		// go.sum as they are.
		"GOFLAGS="+strings.Join(goflags, " "),
	)
	s.must("login", "file://"+s.backend)
	return s
}

func (s *pulumiStack) run(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, s.pulumi, append([]string{"--non-interactive", "--color", "never"}, args...)...)
	cmd.Dir = s.dir
	cmd.Env = s.env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// initStack creates the stack and, when the test ends, destroys what the
// test did not: the test calls destroyed once it has destroyed the stack.
func (s *pulumiStack) initStack(stack string) (destroyed func()) {
	s.t.Helper()
	s.must("stack", "init", stack)
	done := false
	s.t.Cleanup(func() {
		if done {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, errOut, err := s.run(ctx, "destroy", "--yes", "--skip-preview")
		s.t.Logf("cleanup: pulumi destroy: %v\n%s%s", err, out, errOut)
	})
	return func() { done = true }
}

// must runs a pulumi command and returns its stdout; it fails the test, with
// both streams, if the command fails.
func (s *pulumiStack) must(args ...string) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	out, errOut, err := s.run(ctx, args...)
	if err != nil {
		s.t.Fatalf("pulumi %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// pulumiOutputs is `pulumi stack output --json` of examples/pulumi.
type pulumiOutputs struct {
	ManagerAddress string `json:"managerAddress"`
	Nodes          []struct {
		ID      string `json:"id"`
		Role    string `json:"role"`
		Address string `json:"address"`
		Phase   string `json:"phase"`
	} `json:"nodes"`
	PrivateKey any `json:"privateKey"`
}

func (s *pulumiStack) outputs() pulumiOutputs {
	s.t.Helper()
	raw := s.must("stack", "output", "--json")
	var o pulumiOutputs
	if err := json.Unmarshal([]byte(raw), &o); err != nil {
		s.t.Fatalf("stack output --json: %v\n%s", err, raw)
	}
	return o
}

// labelled lists the containers carrying provision.cluster=<cluster> (and
// the extra label filters), by name.
func labelled(t *testing.T, cluster string, filters ...string) []string {
	t.Helper()
	// Not t.Context() alone: a t.Cleanup calls this after it is cancelled.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), time.Minute)
	defer cancel()
	names, err := dockertest.ContainerNames(ctx, append([]string{"provision.cluster=" + cluster}, filters...)...)
	if err != nil {
		t.Fatalf("docker ps: %v", err)
	}
	return names
}

// readySwarm asserts that the swarm, as its manager sees it, has exactly the
// given machines, all Ready.
func readySwarm(t *testing.T, manager string, want []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := dockertest.Exec(ctx, manager, "docker", "node", "ls", "--format", "{{.Hostname}} {{.Status}}")
	if err != nil {
		t.Fatalf("docker node ls on %s: %v\n%s", manager, err, out)
	}
	nodes := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			nodes[f[0]] = f[1]
		}
	}
	if len(nodes) != len(want) {
		t.Fatalf("swarm has %d nodes %v, want %d: %v", len(nodes), nodes, len(want), want)
	}
	for _, m := range want {
		if nodes[m] != "Ready" {
			t.Fatalf("swarm node %s is %q, want Ready (nodes: %v)", m, nodes[m], nodes)
		}
	}
}

// TestPulumiExample runs examples/pulumi as a user would, with the real
// pulumi CLI and a Go language host built from the module proxy, the
// provider plugin on PATH, a passphrase-encrypted file:// backend and no
// network: up, outputs, scale 2 → 3 workers, destroy.
func TestPulumiExample(t *testing.T) {
	requireDocker(t)
	tools := pulumiTools(t)
	for _, b := range []string{"pulumi", "pulumi-language-go"} {
		if _, err := os.Stat(filepath.Join(tools, b)); err != nil {
			t.Fatalf("pulumi tools: %v", err)
		}
	}
	pluginDir := pulumiPlugin(t)

	cluster := fmt.Sprintf("pulumi%d", time.Now().UnixNano()%1e6)
	t.Cleanup(func() {
		// Runs after the destroy below: whatever the engine left, remove it.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if names := labelled(t, cluster); len(names) > 0 {
			err := dockertest.RemoveContainers(ctx, names...)
			t.Logf("cleanup: removed leftover containers %v: %v", names, err)
		}
		if ids, _ := dockertest.Networks(ctx, "provision.cluster="+cluster); len(ids) > 0 {
			err := dockertest.RemoveNetworks(ctx, ids...)
			t.Logf("cleanup: removed leftover networks %v: %v", ids, err)
		}
	})
	s := newPulumiStack(t, tools, pluginDir, "../examples/pulumi")
	const stack = "e2e"
	destroyed := s.initStack(stack)
	s.must("config", "set", "clusterName", cluster)

	// up: 1 manager and 2 workers.
	start := time.Now()
	out := s.must("up", "--yes", "--skip-preview")
	upTime := time.Since(start)
	t.Logf("pulumi up (3 nodes): %s\n%s", upTime.Round(100*time.Millisecond), out)

	o := s.outputs()
	if o.PrivateKey != "[secret]" {
		t.Fatalf("privateKey without --show-secrets is %v, want [secret]", o.PrivateKey)
	}
	containers := labelled(t, cluster)
	if len(containers) != 3 || len(o.Nodes) != 3 {
		t.Fatalf("after up: %d containers %v and %d nodes in the outputs, want 3 of each", len(containers), containers, len(o.Nodes))
	}
	var ids []string
	for _, n := range o.Nodes {
		ids = append(ids, n.ID)
	}
	sort.Strings(ids)
	if strings.Join(ids, " ") != strings.Join(containers, " ") {
		t.Fatalf("output nodes %v are not the cluster's containers %v", ids, containers)
	}
	managers := labelled(t, cluster, "provision.role=manager")
	if len(managers) != 1 {
		t.Fatalf("manager containers: %v, want one", managers)
	}
	ips, err := dockertest.ContainerIPs(t.Context(), managers[0])
	if err != nil {
		t.Fatalf("docker inspect %s: %v", managers[0], err)
	}
	if o.ManagerAddress == "" || strings.Join(ips, " ") != o.ManagerAddress {
		t.Fatalf("managerAddress is %q, the manager container %s has %q", o.ManagerAddress, managers[0], ips)
	}
	readySwarm(t, managers[0], containers)

	// Secrets are encrypted in the state: neither the generated key nor a
	// join token appears in plain text in the export or in the backend's
	// files (which include the backups of earlier checkpoints).
	key := strings.TrimSpace(s.must("stack", "output", "privateKey", "--show-secrets"))
	keyLines := strings.Split(key, "\n")
	if len(keyLines) < 3 || !strings.Contains(keyLines[0], "PRIVATE KEY") {
		t.Fatalf("privateKey --show-secrets is not a private key:\n%s", key)
	}
	export := s.must("stack", "export")
	plaintext := append([]string{"PRIVATE KEY", "SWMTKN-"}, keyLines[1:len(keyLines)-1]...)
	leaks := func(where, text string) {
		t.Helper()
		for _, p := range plaintext {
			if strings.Contains(text, p) {
				t.Fatalf("%s holds a secret in plain text (%q)", where, p)
			}
		}
	}
	leaks("pulumi stack export", export)
	if !strings.Contains(export, `"ciphertext"`) {
		t.Fatalf("pulumi stack export holds no encrypted secret:\n%s", export)
	}
	err = filepath.WalkDir(s.backend, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		leaks(path, string(b))
		return nil
	})
	if err != nil {
		t.Fatalf("reading the backend: %v", err)
	}

	// Scale 2 → 3 workers: the preview shows an in-place update of the
	// count, never a replace (which would delete the cluster first).
	s.must("config", "set", "workers", "3")
	preview := s.must("preview", "--diff")
	t.Logf("pulumi preview --diff after workers 3:\n%s", preview)
	if !strings.Contains(preview, "count: 2 => 3") || !strings.Contains(preview, "1 to update") {
		t.Fatalf("preview after `config set workers 3` does not show the count update:\n%s", preview)
	}
	if strings.Contains(strings.ToLower(preview), "replace") {
		t.Fatalf("preview after `config set workers 3` replaces the cluster:\n%s", preview)
	}
	start = time.Now()
	out = s.must("up", "--yes")
	scaleTime := time.Since(start)
	t.Logf("pulumi up (2 → 3 workers, preview included): %s\n%s", scaleTime.Round(100*time.Millisecond), out)
	containers = labelled(t, cluster)
	if len(containers) != 4 {
		t.Fatalf("after scaling: %d containers %v, want 4", len(containers), containers)
	}
	if got := labelled(t, cluster, "provision.role=manager"); len(got) != 1 || got[0] != managers[0] {
		t.Fatalf("after scaling the manager containers are %v, want the same %s", got, managers[0])
	}
	if n := len(s.outputs().Nodes); n != 4 {
		t.Fatalf("after scaling the outputs have %d nodes, want 4", n)
	}
	readySwarm(t, managers[0], containers)

	start = time.Now()
	out = s.must("destroy", "--yes", "--skip-preview")
	destroyTime := time.Since(start)
	destroyed()
	t.Logf("pulumi destroy: %s\n%s", destroyTime.Round(100*time.Millisecond), out)
	if got := labelled(t, cluster); len(got) != 0 {
		t.Fatalf("destroy left containers: %v", got)
	}
	if nets, _ := dockertest.Networks(t.Context(), "provision.cluster="+cluster); len(nets) != 0 {
		t.Fatalf("destroy left a network: %s", nets)
	}
	s.must("stack", "rm", "--yes", stack)
	var stacks []struct{ Name string }
	if out := s.must("stack", "ls", "--json"); json.Unmarshal([]byte(out), &stacks) != nil {
		t.Fatalf("stack ls --json:\n%s", out)
	}
	for _, st := range stacks {
		if st.Name == stack || strings.HasSuffix(st.Name, "/"+stack) {
			t.Fatalf("stack %s still listed after stack rm: %+v", stack, stacks)
		}
	}

	// Nothing was written into the example's directory.
	if left, _ := filepath.Glob("../examples/pulumi/Pulumi.*.yaml"); len(left) != 0 {
		t.Fatalf("the run left stack files in examples/pulumi: %v", left)
	}
	t.Logf("measured: up %s, scale 2 → 3 workers %s, destroy %s",
		upTime.Round(100*time.Millisecond), scaleTime.Round(100*time.Millisecond), destroyTime.Round(100*time.Millisecond))
}
