package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/provisionhq/provision/bootstrap/artifacts"
	"github.com/provisionhq/provision/plans"
	"github.com/provisionhq/provision/providers/docker/dockertest"
)

// kube is a kind: kubeadm test cluster and the kubectl to reach it: the
// bundle's own, run on this machine with the kubeconfig provision wrote.
type kube struct {
	*cluster
	kubectlBin string
	kubeconfig string
	images     []string
}

func newKube(t *testing.T, prefix string) *kube {
	t.Helper()
	requireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	// The same cache provision uses: built once (about 15 min cold), then
	// found in a second.
	b, err := artifacts.Gather(ctx, artifacts.Options{Version: plans.DefaultKubernetesVersion, Source: artifacts.SourceBuild})
	if err != nil {
		t.Fatalf("kubernetes artifacts: %v", err)
	}
	c := newCluster(t, prefix)
	return &kube{cluster: c, kubectlBin: filepath.Join(b.Dir, "bin", "kubectl"), kubeconfig: filepath.Join(c.dir, "kubeconfig")}
}

func (k *kube) write(controlPlanes, workers int) {
	k.t.Helper()
	var images string
	for _, img := range k.images {
		images += "\n    - " + img
	}
	if images != "" {
		images = "\n  images:" + images
	}
	plan := fmt.Sprintf(`version: 1
cluster:
  name: %s
  kind: kubeadm
kubernetes:
  version: %s%s
ssh:
  user: root
state:
  path: %s
pools:
  - name: cp
    provider: docker
    role: manager
    count: %d
  - name: workers
    provider: docker
    count: %d
    labels: {tier: general}
`, k.name, plans.DefaultKubernetesVersion, images, filepath.Join(k.dir, "state"), controlPlanes, workers)
	if err := os.WriteFile(k.plan, []byte(plan), 0o644); err != nil {
		k.t.Fatal(err)
	}
}

func (k *kube) kubectl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.kubectlBin, append([]string{"--kubeconfig", k.kubeconfig, "--request-timeout=30s"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (k *kube) mustKubectl(args ...string) string {
	k.t.Helper()
	out, err := k.kubectl(args...)
	if err != nil {
		k.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (k *kube) apply(manifest string) {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.kubectlBin, "--kubeconfig", k.kubeconfig, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	if out, err := cmd.CombinedOutput(); err != nil {
		k.t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
}

// nodes is `kubectl get nodes`: name → Ready.
func (k *kube) nodes() map[string]bool {
	k.t.Helper()
	out := k.mustKubectl("get", "nodes", "-o", "json")
	var list struct {
		Items []struct {
			Metadata struct{ Name string }
			Status   struct {
				Conditions []struct{ Type, Status string }
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		k.t.Fatalf("nodes: %v\n%s", err, out)
	}
	got := map[string]bool{}
	for _, n := range list.Items {
		for _, c := range n.Status.Conditions {
			if c.Type == "Ready" {
				got[n.Metadata.Name] = c.Status == "True"
			}
		}
	}
	return got
}

// converged asserts the cluster matches the plan: one container per
// machine, provision healthy, and exactly the state's machines as Ready
// Kubernetes nodes.
func (k *kube) converged(want int) {
	k.t.Helper()
	s := k.machinesConverged(want)
	k.must("kubeconfig", "--file", k.kubeconfig, k.plan)
	nodes := k.nodes()
	if len(nodes) != want {
		k.t.Fatalf("kubernetes has %d nodes %v, want %d", len(nodes), nodes, want)
	}
	for _, m := range s.Machines {
		if !nodes[m.ID] {
			k.t.Fatalf("node %s is not Ready (nodes: %v)", m.ID, nodes)
		}
	}
}

// execIn runs cmd in a node container, as `docker exec` does, for at most
// 30 seconds; it returns the combined output.
func execIn(t *testing.T, container string, cmd ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	return dockertest.Exec(ctx, container, cmd...)
}

// volumes are the docker volumes the cluster's containers use.
func (k *kube) volumes() []string {
	k.t.Helper()
	var vols []string
	for _, c := range k.containers() {
		vs, err := dockertest.ContainerVolumes(k.t.Context(), c)
		if err != nil {
			k.t.Fatalf("docker inspect %s: %v", c, err)
		}
		for _, v := range vs {
			vols = append(vols, v.Name)
		}
	}
	return vols
}

// helloImage builds the test workload (e2e/testdata/hello) and packs it as
// a single-layer image archive, as a user would ship an image to an
// air-gapped cluster.
func helloImage(t *testing.T, dir string) string {
	t.Helper()
	binPath := filepath.Join(dir, "hello")
	build := exec.Command("go", "build", "-o", binPath, "./testdata/hello")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build hello: %v\n%s", err, out)
	}
	tarPath := filepath.Join(dir, "hello.tar")
	err := artifacts.WriteImages(tarPath, artifacts.Image{
		Ref: "provision.local/hello:e2e", Files: map[string]string{"/hello": binPath}, Entrypoint: []string{"/hello"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tarPath
}

const helloManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: hello}
spec:
  replicas: %d
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}}
    spec:
      topologySpreadConstraints:
        - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, nodeTaintsPolicy: Honor, labelSelector: {matchLabels: {app: hello}}}
      containers:
        - name: hello
          image: provision.local/hello:e2e
          imagePullPolicy: Never
          ports: [{containerPort: 8080}]
          readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: hello}
spec:
  selector: {app: hello}
  ports: [{port: 80, targetPort: 8080}]
`

// podNodes maps the hello pods to their nodes.
func (k *kube) podNodes(selector string) map[string]string {
	k.t.Helper()
	out := k.mustKubectl("get", "pods", "-l", selector, "-o", `jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName}{"\n"}{end}`)
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			got[f[0]] = f[1]
		}
	}
	return got
}

// ask runs a client pod of the hello image on node that asks url n times,
// and returns the answers (the names of the pods that answered), the pod's
// final phase and its log.
func (k *kube) ask(node, url string, n int) (answers []string, phase, logs string) {
	k.t.Helper()
	k.apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: %s
  restartPolicy: Never
  containers:
    - {name: client, image: provision.local/hello:e2e, imagePullPolicy: Never, args: [get, %q, "%d"]}
`, node, url, n))
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		phase = strings.TrimSpace(k.mustKubectl("get", "pod", "client", "-o", "jsonpath={.status.phase}"))
		if phase == "Succeeded" || phase == "Failed" {
			break
		}
		time.Sleep(time.Second)
	}
	logs = k.mustKubectl("logs", "client")
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		if l != "" && !strings.HasPrefix(l, "error:") {
			answers = append(answers, l)
		}
	}
	return answers, phase, logs
}

// TestKubernetes is the kubeadm path's acceptance run on the docker
// provider: up of 1 control plane + 2 workers offline, an idempotent re-up,
// a workload reached through a ClusterIP Service by DNS name from another
// node, workers scaled 2 → 4 → 2 with the drain held by a
// PodDisruptionBudget, and a down that leaves nothing.
func TestKubernetes(t *testing.T) {
	k := newKube(t, "k")
	k.images = []string{helloImage(t, k.dir)}
	k.write(1, 2)

	start := time.Now()
	k.must("up", k.plan)
	first := time.Since(start)
	t.Logf("up of 1+2: %s", first.Round(time.Second))
	k.converged(3)

	start = time.Now()
	out := k.must("up", k.plan)
	if !strings.Contains(out, "No changes") {
		t.Fatalf("second up changed something:\n%s", out)
	}
	t.Logf("second up: %s", time.Since(start).Round(time.Millisecond))

	// A Deployment spread over the workers answers through a ClusterIP
	// Service, by DNS name, to a client pod on another node.
	{
		k.apply(fmt.Sprintf(helloManifest, 3))
		k.mustKubectl("rollout", "status", "deployment/hello", "--timeout=3m")
		pods := k.podNodes("app=hello")
		nodesUsed := map[string]bool{}
		for _, n := range pods {
			nodesUsed[n] = true
		}
		if len(pods) != 3 || len(nodesUsed) < 2 {
			t.Fatalf("want 3 hello pods spread over the 2 workers, got %v", pods)
		}
		// The client runs on one worker; at least one replica is on the other.
		var client string
		for n := range nodesUsed {
			client = n
			break
		}
		answers, phase, logs := k.ask(client, "http://hello.default.svc.cluster.local", 30)
		answered := map[string]bool{}
		for _, a := range answers {
			if _, ok := pods[a]; ok {
				answered[a] = true
			}
		}
		remote := 0
		for p := range answered {
			if pods[p] != client {
				remote++
			}
		}
		if phase != "Succeeded" || remote == 0 {
			t.Fatalf("client on %s: phase %s, answers from %v, want some from pods on another node (pods %v)\n%s", client, phase, answered, pods, logs)
		}
		t.Logf("client on %s reached %d pods through hello.default.svc.cluster.local, %d on another node", client, len(answered), remote)
	}

	// Workers 2 → 4 → 2; the shrink drains through the Eviction API and a
	// PodDisruptionBudget holds it.
	{
		k.write(1, 4)
		start := time.Now()
		k.must("up", k.plan)
		t.Logf("scale up 2 → 4: %s", time.Since(start).Round(time.Second))
		k.converged(5)
		// Spread 8 replicas over the 4 workers, so the 2 newest (the ones
		// a shrink removes) hold pods, and allow one disruption at a time.
		k.apply(fmt.Sprintf(helloManifest, 8) + `---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: hello}
spec:
  minAvailable: 7
  selector: {matchLabels: {app: hello}}
`)
		k.mustKubectl("rollout", "status", "deployment/hello", "--timeout=3m")
		// Watch the budget from outside while the drain runs: never fewer
		// than 7 ready replicas.
		var (
			minReady atomic.Int64
			stop     = make(chan struct{})
			wg       sync.WaitGroup
		)
		minReady.Store(8)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(300 * time.Millisecond):
				}
				out, err := k.kubectl("get", "deployment", "hello", "-o", "jsonpath={.status.readyReplicas}")
				var n int64
				if _, serr := fmt.Sscan(strings.TrimSpace(out), &n); err == nil && serr == nil && n < minReady.Load() {
					minReady.Store(n)
				}
			}
		}()
		k.write(1, 2)
		start = time.Now()
		out := k.must("--log-level", "debug", "up", k.plan)
		close(stop)
		wg.Wait()
		t.Logf("scale down 4 → 2 with drain: %s, fewest ready replicas seen %d", time.Since(start).Round(time.Second), minReady.Load())
		k.converged(3)
		if minReady.Load() < 7 {
			t.Errorf("ready replicas fell to %d during the drain; the budget allows 7", minReady.Load())
		}
		if !strings.Contains(out, "eviction refused by a disruption budget") {
			t.Errorf("the drain never waited on the budget (no refused eviction logged):\n%s", lastLines(out, 60))
		}
		if n := len(k.podNodes("app=hello")); n != 8 {
			t.Errorf("%d hello pods after the shrink, want 8 rescheduled", n)
		}
	}

	vols := k.volumes()
	k.must("down", k.plan)
	if got := k.containers(); len(got) != 0 {
		t.Fatalf("containers left after down: %v", got)
	}
	if nets, _ := dockertest.Networks(t.Context(), "provision.cluster="+k.name); len(nets) != 0 {
		t.Fatalf("networks left after down: %s", nets)
	}
	left, _ := dockertest.Volumes(t.Context())
	for _, v := range vols {
		if slices.Contains(left, v) {
			t.Fatalf("volume %s left after down", v)
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// TestKubernetesKill SIGKILLs provision while kubeadm init runs on the
// first control-plane node, then while kubeadm join runs on a worker; each
// next up converges to Ready nodes with nothing duplicated.
func TestKubernetesKill(t *testing.T) {
	k := newKube(t, "kk")
	k.write(1, 0)
	const reset = "leftovers of an interrupted kubeadm run; resetting it"
	k.killWhile(t, "^kubeadm init", "/etc/kubernetes/manifests/kube-apiserver.yaml")
	if out := k.must("up", k.plan); !strings.Contains(out, reset) {
		t.Errorf("the resumed up did not reset the interrupted init:\n%s", lastLines(out, 40))
	}
	k.converged(1)

	k.write(1, 1)
	k.killWhile(t, "^kubeadm join", "/var/lib/kubelet/config.yaml")
	if out := k.must("up", k.plan); !strings.Contains(out, reset) {
		t.Errorf("the resumed up did not reset the interrupted join:\n%s", lastLines(out, 40))
	}
	k.converged(2)
}

// killWhile starts up and SIGKILLs it once a process matching pattern runs
// on one of the cluster's machines and has written evidence there: in the
// middle of the step, with its leftovers on the node.
func (k *kube) killWhile(t *testing.T, pattern, evidence string) {
	t.Helper()
	cmd := exec.Command(bin, "--progress", "plain", "up", k.plan)
	cmd.Dir = k.dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var logMu sync.Mutex
	var log strings.Builder
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			logMu.Lock()
			log.WriteString(sc.Text() + "\n")
			logMu.Unlock()
		}
	}()
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		for _, c := range k.containers() {
			probe := fmt.Sprintf("pgrep -f %q >/dev/null && test -e %s", pattern, evidence)
			if _, err := execIn(t, c, "sh", "-c", probe); err == nil {
				_ = cmd.Process.Signal(syscall.SIGKILL)
				_ = cmd.Wait()
				<-done
				t.Logf("killed provision up while %q ran on %s", pattern, c)
				return
			}
		}
		select {
		case <-done:
			_ = cmd.Wait()
			logMu.Lock()
			defer logMu.Unlock()
			t.Fatalf("up ended before %q ran anywhere:\n%s", pattern, log.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	_ = cmd.Process.Kill()
	t.Fatalf("%q never ran", pattern)
}

// TestKubernetesHA runs 3 control-plane nodes with stacked etcd and a
// worker, kills the first control-plane node's machine, and checks that the
// API still answers through every surviving node's local balancer, that the
// worker stays Ready, and that a new worker joins.
func TestKubernetesHA(t *testing.T) {
	k := newKube(t, "kha")
	k.write(3, 1)
	start := time.Now()
	k.must("up", k.plan)
	t.Logf("up of 3+1: %s", time.Since(start).Round(time.Second))
	k.converged(4)

	// The first control-plane node is the one kubeadm init ran on.
	var first string
	var survivors []string
	for _, c := range k.containers() {
		if _, err := execIn(t, c, "test", "-f", "/etc/provision/kubeadm-init.yaml"); err == nil {
			first = c
		} else {
			survivors = append(survivors, c)
		}
	}
	if first == "" {
		t.Fatal("no node ran kubeadm init")
	}
	if err := dockertest.Kill(t.Context(), first); err != nil {
		t.Fatalf("docker kill %s: %v", first, err)
	}
	killed := time.Now()
	t.Logf("killed %s", first)

	// Every surviving node reaches the API through its own balancer.
	for _, c := range survivors {
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, err := execIn(t, c, "kubectl", "--kubeconfig", "/etc/kubernetes/kubelet.conf", "--request-timeout=5s", "get", "--raw", "/readyz")
			if err == nil && strings.TrimSpace(string(out)) == "ok" {
				t.Logf("API answers from %s %s after the kill", c, time.Since(killed).Round(100*time.Millisecond))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("API does not answer from %s: %v\n%s", c, err, out)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}

	// Past the node monitor's grace period the dead node is NotReady and
	// the worker still Ready: its kubelet reaches a surviving API server.
	k.must("kubeconfig", "--file", k.kubeconfig, k.plan)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		nodes := k.nodes()
		if !nodes[first] {
			for name, ready := range nodes {
				if name != first && !ready {
					t.Fatalf("node %s went NotReady after %s was killed: %v", name, first, nodes)
				}
			}
			t.Logf("%s NotReady after %s, every other node Ready", first, time.Since(killed).Round(time.Second))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still Ready 3 minutes after it was killed", first)
		}
		time.Sleep(2 * time.Second)
	}

	k.write(3, 2)
	start = time.Now()
	out := k.must("up", k.plan)
	t.Logf("a worker joined without the first control-plane node in %s", time.Since(start).Round(time.Second))
	nodes := k.nodes()
	if len(nodes) != 5 {
		t.Fatalf("want 5 nodes (the dead one included), got %v\n%s", nodes, out)
	}
	ready := 0
	for _, r := range nodes {
		if r {
			ready++
		}
	}
	if ready != 4 {
		t.Fatalf("want 4 Ready nodes, got %v", nodes)
	}
}

// TestKubernetesMulticloud runs examples/multicloud-kubernetes.yaml on
// cloudsim: the control plane on aws, workers on gcp and openstack, joined
// over verified SSH as a non-root user, all Ready; a pod on the gcp worker
// reaches one on the openstack worker through a Service; a second up changes
// nothing and down deletes every instance.
func TestKubernetesMulticloud(t *testing.T) {
	k := newKube(t, "mk")
	group := fmt.Sprintf("simk%d", time.Now().UnixNano()%1e6)
	sim := startCloudsim(t, group, "--pending", "1s")
	k.env, k.group = sim.env, group
	hello := helloImage(t, k.dir)
	plan, err := os.ReadFile("../examples/multicloud-kubernetes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer(
		"name: multik8s\n  kind: kubeadm\n", fmt.Sprintf("name: %s\n  kind: kubeadm\nstate:\n  path: %s\n", k.name, filepath.Join(k.dir, "state")),
		"kubernetes:\n  version: v1.37.2\n", "kubernetes:\n  version: v1.37.2\n  images: ["+hello+"]\n",
	).Replace(string(plan))
	if err := os.WriteFile(k.plan, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	k.must("up", k.plan)
	t.Logf("up on aws+gcp+openstack: %s", time.Since(start).Round(time.Second))
	k.converged(3)

	// One replica per worker: the client on the gcp worker must be answered
	// by the pod on the openstack worker too.
	k.apply(fmt.Sprintf(helloManifest, 2))
	k.mustKubectl("rollout", "status", "deployment/hello", "--timeout=3m")
	pods := k.podNodes("app=hello")
	var gcpNode string
	for _, n := range pods {
		if strings.Contains(n, "gcp-workers") {
			gcpNode = n
		}
	}
	if len(pods) != 2 || gcpNode == "" {
		t.Fatalf("want one hello pod on each worker, got %v", pods)
	}
	answers, _, logs := k.ask(gcpNode, "http://hello.default.svc.cluster.local", 20)
	crossed := false
	for _, a := range answers {
		if strings.Contains(pods[a], "os-workers") {
			crossed = true
		}
	}
	if !crossed {
		t.Fatalf("the client on %s never reached the pod on the openstack worker (pods %v):\n%s", gcpNode, pods, logs)
	}

	out := k.must("up", k.plan)
	if !strings.Contains(out, "No changes") {
		t.Fatalf("second up changed something:\n%s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if out, err := k.run(ctx, "down", k.plan); err != nil {
		t.Fatalf("down: %v\n%s", err, out)
	}
}
