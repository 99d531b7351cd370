package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/provisionhq/provision/state/etcd"
	"github.com/provisionhq/provision/state/etcd/etcdtest"
	"github.com/provisionhq/provision/state/etcd/transport"
)

// routeAddress is this machine's address on its default route: what a
// container in a node container (the autoscaler service on a manager)
// reaches the host's etcd and cloudsim on. Docker's default bridge (see
// hostAddress) will not do: a nested dockerd gives its own bridge the same
// 172.17.0.1.
func routeAddress(t *testing.T) net.IP {
	t.Helper()
	// No packet is sent: connecting a UDP socket only picks the route.
	conn, err := net.Dial("udp4", "192.0.2.1:9")
	if err == nil {
		defer conn.Close()
		if ip := conn.LocalAddr().(*net.UDPAddr).IP; !ip.IsLoopback() {
			return ip
		}
	}
	t.Fatalf("no address on a default route for the service to reach etcd and cloudsim on (%v)", err)
	return nil
}

// TestAutoscalerService: `provision autoscale deploy` runs the autoscaler
// as a two-replica Swarm service on the cluster it scales (cloudsim's AWS
// backed by local hosts, state on a TLS etcd with client certificates).
// The leader scales the worker pool up for a pending service; after
// `docker kill` of the leader's container the standby leads within the
// lease TTL and scales the pool back down. Nothing secret shows in the
// service's definition or its containers' configuration.
func TestAutoscalerService(t *testing.T) {
	requireDocker(t)
	ip := routeAddress(t)
	group := fmt.Sprintf("svc%d", time.Now().UnixNano()%1e6)
	sim := startCloudsim(t, group, "--aws", ip.String()+":0", "--pending", "1s")
	etcdSrv := etcdtest.StartTLSAt(t, ip)
	c := newCluster(t, "svc")
	keyFile, keyPEM := loginKey(t)
	const awsSecret = "AWS-SECRET-SENTINEL-7f3e"
	c.env, c.group = append(append([]string{}, sim.env...), "AWS_SECRET_ACCESS_KEY="+awsSecret), group
	const leaseTTL = 6 * time.Second
	plan := fmt.Sprintf(`version: 1
cluster:
  name: %s
ssh:
  user: admin
  key: %s
state:
  backend: etcd
  endpoints: [%s]
  prefix: /e2e
  tls: {ca: %s, cert: %s, key: %s}
autoscale:
  scan_interval: 2s
  cooldown: 5s
  lease_ttl: %s
  scale_down:
    unneeded_time: 10s
    drain_timeout: 1m
pools:
%s  - name: workers
    provider: aws
    settings: *aws
    setup: *setup
    autoscale: {min: 0, max: 2, cpu: 2, memory: 4GiB}
`, c.name, keyFile, etcdSrv.Endpoints[0], etcdSrv.TLS.CAFile, etcdSrv.TLS.CertFile, etcdSrv.TLS.KeyFile, leaseTTL, awsManager)
	if err := os.WriteFile(c.plan, []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}
	c.must("up", c.plan)
	c.converged(1)
	onManager := func(args ...string) string {
		t.Helper()
		return c.must(append([]string{"ssh", c.plan, "managers", "--"}, args...)...)
	}
	t.Cleanup(func() {
		// Before down: a running autoscaler would wait on down's lock.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = c.run(ctx, "ssh", c.plan, "managers", "--", "docker", "service", "rm", "provision-autoscaler")
	})

	start := time.Now()
	out := c.must("-o", "json", "autoscale", "deploy", c.plan)
	var dep struct {
		Image    string   `json:"image"`
		Created  bool     `json:"created"`
		LoadedOn []string `json:"loaded_on"`
		Secrets  []string `json:"secrets"`
	}
	if err := json.Unmarshal([]byte(lastLine(out)), &dep); err != nil {
		t.Fatalf("deploy output: %v\n%s", err, out)
	}
	t.Logf("deployed %s in %s: loaded on %v, secrets %v", dep.Image, time.Since(start).Round(time.Millisecond), dep.LoadedOn, dep.Secrets)
	if !dep.Created || len(dep.LoadedOn) != 1 {
		t.Errorf("first deploy: created %v, loaded on %v: want a new service and the image loaded on the manager", dep.Created, dep.LoadedOn)
	}
	for _, want := range []string{"ssh-key", "etcd-ca", "etcd-cert", "etcd-key", "cloud-env"} {
		if !strings.Contains(strings.Join(dep.Secrets, " "), want) {
			t.Errorf("secrets %v lack %s", dep.Secrets, want)
		}
	}

	// Nothing secret where anyone on a manager can read it.
	key := strings.Join(strings.Split(strings.TrimSpace(string(keyPEM)), "\n")[1:3], "")
	inspect := onManager("docker", "service", "inspect", "provision-autoscaler") +
		onManager("sh", "-c", "'docker inspect $(docker ps -q --filter label=com.docker.swarm.service.name=provision-autoscaler)'")
	for what, secret := range map[string]string{"login key": key, "AWS secret": awsSecret} {
		if strings.Contains(inspect, secret) {
			t.Errorf("the %s is in docker inspect's output", what)
		}
	}
	if !strings.Contains(inspect, "/run/secrets/cloud-env") {
		t.Errorf("docker inspect does not show the service's secrets (was it searched?):\n%s", inspect)
	}

	// A redeploy of the same binary, plan and credentials changes nothing.
	if out := lastLine(c.must("-o", "json", "autoscale", "deploy", c.plan)); !strings.Contains(out, `"changed":false`) {
		t.Errorf("second deploy changed the service: %s", out)
	}

	el := leaderWatch(t, c.name, etcdSrv, leaseTTL)
	leader := el.wait(t, 2*time.Minute, "")
	t.Logf("leader %s", leader)

	// One 1.5-CPU replica fits the manager; the second goes pending.
	created := time.Now()
	onManager("docker", "service", "create", "--detach", "--name", "hog", "--replicas", "2", "--reserve-cpu", "1.5",
		"--no-resolve-image", "provision-sleeper:local")
	waitFor(t, 5*time.Minute, "both hog tasks running", serviceLogs{c}, func() bool {
		out, err := c.run(context.Background(), "ssh", c.plan, "managers", "--", "docker", "service", "ps", "hog",
			"--filter", "desired-state=running", "--format", "'{{.CurrentState}}'")
		return err == nil && strings.Count(out, "Running") == 2
	})
	t.Logf("scaled up for the pending task in %s", time.Since(created).Round(time.Second))
	if n := poolSize(c, "workers"); n != 1 {
		t.Errorf("%d workers after the scale-up, want 1", n)
	}

	// Kill the leader's container: the standby leads within the TTL.
	replicas := strings.Fields(onManager("docker", "ps", "-q", "--no-trunc", "--filter", "label=com.docker.swarm.service.name=provision-autoscaler"))
	if len(replicas) != 2 {
		t.Fatalf("replica containers %v, want 2", replicas)
	}
	host, _, _ := strings.Cut(leader, "/")
	var victim, standby string
	for _, id := range replicas {
		if strings.HasPrefix(id, host) {
			victim = id
		} else {
			standby = id
		}
	}
	if victim == "" {
		t.Fatalf("leader %s is none of the replicas %v", leader, replicas)
	}
	onManager("docker", "kill", victim)
	killed := time.Now()
	next := el.wait(t, 3*leaseTTL, leader)
	took := time.Since(killed)
	t.Logf("after docker kill of %s, %s leads in %s (lease TTL %s)", victim[:12], next, took.Round(10*time.Millisecond), leaseTTL)
	if !strings.HasPrefix(standby, strings.Split(next, "/")[0]) {
		t.Errorf("new leader %s is not the standby replica %s", next, standby[:12])
	}
	if took > leaseTTL {
		t.Errorf("takeover took %s, more than the lease TTL %s", took, leaseTTL)
	}

	// The new leader scales the pool back down once the demand is gone.
	onManager("docker", "service", "rm", "hog")
	removed := time.Now()
	waitFor(t, 4*time.Minute, "the worker removed", serviceLogs{c}, func() bool { return poolSize(c, "workers") == 0 })
	t.Logf("scaled down in %s", time.Since(removed).Round(time.Second))
	if n := len(c.containers()); n != 1 {
		t.Errorf("%d instance hosts after the scale-down, want the manager's only", n)
	}
}

func poolSize(c *cluster, pool string) int {
	n := 0
	for _, m := range c.status().Machines {
		if m.Pool == pool {
			n++
		}
	}
	return n
}

// serviceLogs shows the autoscaler service's logs when a wait fails.
type serviceLogs struct{ c *cluster }

func (s serviceLogs) String() string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, _ := s.c.run(ctx, "ssh", s.c.plan, "managers", "--", "docker", "service", "logs", "--timestamps", "provision-autoscaler")
	ps, _ := s.c.run(ctx, "ssh", s.c.plan, "managers", "--", "docker", "service", "ps", "--no-trunc", "provision-autoscaler")
	return ps + "\n" + out
}

// leaderWatcher reads the autoscaler's leader election from etcd, as the
// replicas see it.
type leaderWatcher struct {
	el *etcd.Elector
}

func leaderWatch(t *testing.T, cluster string, srv *etcdtest.Server, ttl time.Duration) *leaderWatcher {
	t.Helper()
	tlsCfg, err := (transport.Files{CA: srv.TLS.CAFile, Cert: srv.TLS.CertFile, Key: srv.TLS.KeyFile}).Load()
	if err != nil {
		t.Fatal(err)
	}
	b, err := etcd.New(t.Context(), etcd.Config{Endpoints: srv.Endpoints, Cluster: cluster, Prefix: "/e2e", TLS: tlsCfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return &leaderWatcher{el: etcd.NewElector(b, ttl)}
}

// wait returns the leader once it is someone other than not.
func (w *leaderWatcher) wait(t *testing.T, limit time.Duration, not string) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		id, err := w.el.Leader(ctx)
		cancel()
		if err == nil && id != "" && id != not {
			return id
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader other than %q within %s (last: %q, %v)", not, limit, id, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
