package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// hostAddress is this machine's address on Docker's default bridge: the
// machines' containers reach services listening here, whatever docker
// network they are on.
func hostAddress(t *testing.T) string {
	t.Helper()
	ifc, err := net.InterfaceByName("docker0")
	if err != nil {
		t.Fatalf("docker's default bridge: %v", err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	t.Fatalf("docker0 has no IPv4 address: %v", addrs)
	return ""
}

func port(t *testing.T) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(freePort(t))
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// startSharedEtcd runs Debian's etcd listening on every address, so both
// this machine and pods in the cluster reach it: the shared state backend
// an autoscaler inside the cluster needs.
func startSharedEtcd(t *testing.T, host string) string {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		bin = "/usr/bin/etcd"
	}
	client, peer := port(t), port(t)
	url := fmt.Sprintf("http://%s:%d", host, client)
	dir := t.TempDir()
	cmd := exec.Command(bin, "--name", "e2e", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", fmt.Sprintf("http://0.0.0.0:%d", client), "--advertise-client-urls", url,
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer), "--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer),
		"--initial-cluster", fmt.Sprintf("e2e=http://127.0.0.1:%d", peer))
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", client), time.Second)
		if err == nil {
			c.Close()
			return url
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("etcd did not start: %v\n%s", err, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestKubernetesAutoscaler runs the autoscaler as users would: the image
// from `provision image autoscaler`, imported on every node through the
// plan, and examples/kubernetes/autoscaler.yaml applied with the plan, the
// login key and the cloud's credentials. The machines are cloudsim aws
// instances (real local hosts), the state is on etcd. Pods whose requests
// exceed the cluster go Pending, a worker is added and they run; once they
// are deleted, the extra worker is drained and removed after the unneeded
// time.
func TestKubernetesAutoscaler(t *testing.T) {
	k := newKube(t, "ka")
	host := hostAddress(t)
	etcdURL := startSharedEtcd(t, host)
	group := fmt.Sprintf("sima%d", time.Now().UnixNano()%1e6)
	sim := startCloudsim(t, group, "--aws", "0.0.0.0:0", "--gcp", "0.0.0.0:0", "--openstack", "0.0.0.0:0", "--pending", "1s")
	k.env, k.group = sim.env, group

	hello := helloImage(t, k.dir)
	image := filepath.Join(k.dir, "provision-autoscaler.tar")
	k.must("image", "autoscaler", "--file", image)
	plan := fmt.Sprintf(`version: 1
cluster:
  name: %s
  kind: kubeadm
kubernetes:
  images: [provision-autoscaler.tar, %s]
ssh:
  user: admin
state:
  backend: etcd
  endpoints: [%s]
  insecure: true   # plaintext to this machine's address, which pods reach
autoscale:
  scan_interval: 2s
  cooldown: 10s
  lease_ttl: 5s
  scale_down:
    utilization: 0.5
    unneeded_time: 20s
    drain_timeout: 2m
pools:
  - name: cp
    provider: aws
    role: manager
    count: 1
    settings: {instance_type: t3.medium, ami: ami-0d1e2b3c4a5f60718}
  - name: workers
    provider: aws
    count: 1
    settings: {instance_type: t3.large, ami: ami-0d1e2b3c4a5f60718}
    autoscale: {min: 1, max: 2}
`, k.name, filepath.Base(hello), etcdURL)
	if err := os.WriteFile(k.plan, []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	k.must("up", k.plan)
	t.Logf("up of 1+1 on cloudsim aws: %s", time.Since(start).Round(time.Second))
	k.converged(2)

	// As a user would: the namespace, the plan, the key and the cloud's
	// credentials (the emulator's endpoint as pods reach it), then the
	// example without its sample ConfigMap.
	k.mustKubectl("create", "namespace", "provision-system")
	k.mustKubectl("-n", "provision-system", "create", "configmap", "provision-plan", "--from-file=plan.yaml="+k.plan)
	key := filepath.Join(k.dir, ".provision", k.name, "id_ed25519")
	k.mustKubectl("-n", "provision-system", "create", "secret", "generic", "provision-ssh", "--from-file=id_ed25519="+key)
	cloud := []string{"-n", "provision-system", "create", "secret", "generic", "provision-cloud"}
	for _, kv := range sim.env {
		if strings.HasPrefix(kv, "AWS_") {
			// cloudsim listens on every address; pods reach it on this one.
			kv = strings.NewReplacer("0.0.0.0", host, "[::]", host).Replace(kv)
			cloud = append(cloud, "--from-literal="+kv)
		}
	}
	k.mustKubectl(cloud...)
	manifest, err := os.ReadFile("../examples/kubernetes/autoscaler.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var docs []string
	for _, doc := range strings.Split(string(manifest), "\n---\n") {
		if !strings.Contains(doc, "\nkind: ConfigMap\n") {
			docs = append(docs, doc)
		}
	}
	k.apply(strings.Join(docs, "\n---\n"))
	logs := func() string {
		out, _ := k.kubectl("-n", "provision-system", "logs", "-l", "app.kubernetes.io/name=provision-autoscaler", "--tail=80", "--prefix")
		return out
	}
	if out, err := k.kubectl("-n", "provision-system", "rollout", "status", "deployment/provision-autoscaler", "--timeout=3m"); err != nil {
		pods, _ := k.kubectl("-n", "provision-system", "get", "pods", "-o", "wide")
		t.Fatalf("autoscaler did not roll out: %v\n%s\n%s\n%s", err, out, pods, logs())
	}

	// Two pods of 1.2 CPU each: the one worker (2 CPUs) fits one.
	k.apply(`apiVersion: apps/v1
kind: Deployment
metadata: {name: demand}
spec:
  replicas: 2
  selector: {matchLabels: {app: demand}}
  template:
    metadata: {labels: {app: demand}}
    spec:
      containers:
        - name: hello
          image: provision.local/hello:e2e
          imagePullPolicy: Never
          resources: {requests: {cpu: 1200m}}
`)
	created := time.Now()
	sawPending := false
	deadline := time.Now().Add(8 * time.Minute)
	for {
		out, _ := k.kubectl("get", "pods", "-l", "app=demand", "-o", `jsonpath={range .items[*]}{.status.phase}{"\n"}{end}`)
		phases := strings.Fields(out)
		running := 0
		for _, p := range phases {
			if p == "Pending" {
				sawPending = true
			}
			if p == "Running" {
				running++
			}
		}
		if running == 2 {
			break
		}
		if time.Now().After(deadline) {
			nodes, _ := k.kubectl("get", "nodes")
			t.Fatalf("demand pods %v after 8 minutes\n%s\n%s", phases, nodes, logs())
		}
		time.Sleep(2 * time.Second)
	}
	if !sawPending {
		t.Error("the second pod never went Pending: the demand did not exceed the cluster")
	}
	nodes := k.nodes()
	if len(nodes) != 3 {
		t.Fatalf("want 3 nodes after the scale-up, got %v", nodes)
	}
	t.Logf("a worker was added and both pods run %s after they were created", time.Since(created).Round(time.Second))

	k.mustKubectl("delete", "deployment", "demand", "--wait=true")
	deleted := time.Now()
	deadline = time.Now().Add(6 * time.Minute)
	for {
		nodes := k.nodes()
		if len(nodes) == 2 && len(k.containers()) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d nodes %v, %d machines 6 minutes after the demand left\n%s", len(nodes), nodes, len(k.containers()), logs())
		}
		time.Sleep(2 * time.Second)
	}
	took := time.Since(deleted)
	t.Logf("the extra worker was drained and removed %s after the demand left", took.Round(time.Second))
	if took < 20*time.Second {
		t.Errorf("scale-down after %s, before the 20s unneeded time", took)
	}

	// The autoscaler holds the state lock while it acts: stop it before
	// the operator's down.
	k.mustKubectl("-n", "provision-system", "scale", "deployment/provision-autoscaler", "--replicas=0")
	time.Sleep(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if out, err := k.run(ctx, "down", k.plan); err != nil {
		t.Fatalf("down: %v\n%s", err, out)
	}
}
