package docker

import (
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/docker/dockertest"
	"github.com/provisionhq/provision/providers/hostkey"
)

// TestNodeCanHostKubelet checks, inside a running node, what kubelet and
// its container runtime need from the container (kind's node entrypoint
// prepares the same).
func TestNodeCanHostKubelet(t *testing.T) {
	m, hk, signer, _ := createNode(t, "root")
	c := dialNode(t, m, hk, "root", signer)
	defer c.Close()
	hostRouteLocalnet := readHostSysctl(t, "net/ipv4/conf/all/route_localnet")

	tests := []struct {
		name string
		cmd  string // exits 0 when the node is right
	}{
		{"own cgroup namespace", `! grep -v ':/$' /proc/1/cgroup`},
		{"cgroups writable", `for d in $(findmnt -n -l -t cgroup -o TARGET); do
			mkdir "$d/provision-check" && rmdir "$d/provision-check" || exit 1; done`},
		{"/dev/kmsg readable", `timeout 5 dd if=/dev/kmsg of=/dev/null bs=8192 count=1`},
		{"/run is a tmpfs with sshd's directory", `[ "$(stat -f -c %T /run)" = tmpfs ] && [ -d /run/sshd ]`},
		{"runtime state off overlayfs", `for d in /var/lib/docker /var/lib/containerd /var/lib/kubelet; do
			t=$(stat -f -c %T "$d") && [ "$t" != overlayfs ] || { echo "$d is on $t"; exit 1; }; done`},
		{"shared mount propagation", `findmnt -n -o PROPAGATION / | grep -q shared`},
		{"machine-id set", `grep -Eqx '[0-9a-f]{32}' /etc/machine-id`},
		{"per-netns sysctls writable", `echo 1 >/proc/sys/net/ipv4/conf/all/route_localnet && grep -qx 1 /proc/sys/net/ipv4/conf/all/route_localnet`},
		// Writes the current value, so a regression here changes nothing.
		{"other kernel sysctls read-only", `v=$(cat /proc/sys/kernel/pid_max); ! (echo "$v" >/proc/sys/kernel/pid_max) 2>/dev/null`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runSSH(t, c, tt.cmd) })
	}
	if got := readHostSysctl(t, "net/ipv4/conf/all/route_localnet"); got != hostRouteLocalnet {
		t.Errorf("host net.ipv4.conf.all.route_localnet changed from %s to %s by a node", hostRouteLocalnet, got)
	}

	// Two nodes are two machines to kubelet and kubeadm.
	m2, hk2, signer2, _ := createNode(t, "root")
	c2 := dialNode(t, m2, hk2, "root", signer2)
	defer c2.Close()
	if a, b := runSSH(t, c, "cat /etc/machine-id"), runSSH(t, c2, "cat /etc/machine-id"); a == b {
		t.Errorf("two nodes share machine-id %s", a)
	}
}

// kubeletSysctls are the kernel-wide sysctls kubelet sets at start, with the
// values it writes.
var kubeletSysctls = []struct{ key, value string }{
	{"vm/overcommit_memory", "1"},
	{"vm/panic_on_oom", "0"},
	{"kernel/panic", "10"},
	{"kernel/panic_on_oops", "1"},
	{"kernel/keys/root_maxkeys", "1000000"},
	{"kernel/keys/root_maxbytes", "25000000"},
}

// TestKernelSysctlsStayInNode proves kubelet's writes to kernel-wide
// sysctls succeed inside a node, read back, survive a restart of the node,
// and never reach this host's kernel.
func TestKernelSysctlsStayInNode(t *testing.T) {
	m, hk, signer, _ := createNode(t, "root")
	c := dialNode(t, m, hk, "root", signer)
	defer c.Close()
	host := map[string]string{}
	for _, s := range kubeletSysctls {
		host[s.key] = readHostSysctl(t, s.key)
	}
	for _, s := range kubeletSysctls {
		t.Run(s.key, func(t *testing.T) {
			// Refuse to write unless the file is the node's own: should the
			// shadow ever go missing, the write must not reach the host.
			runSSH(t, c, `grep -q ' /proc/sys/`+s.key+` ' /proc/self/mountinfo || { echo "/proc/sys/`+s.key+` is the host's"; exit 1; }
				echo `+s.value+` >/proc/sys/`+s.key)
			if got := strings.TrimSpace(runSSH(t, c, "cat /proc/sys/"+s.key)); got != s.value {
				t.Errorf("node reads %s = %q after writing %q", s.key, got, s.value)
			}
			if got := readHostSysctl(t, s.key); got != host[s.key] {
				t.Errorf("host %s changed from %s to %s by a node", s.key, host[s.key], got)
			}
		})
	}
	id := runSSH(t, c, "cat /etc/machine-id")
	c.Close()

	// kubelet reads them again after a restart; the node keeps its identity.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := dockertest.Restart(ctx, m.ProviderID); err != nil {
		t.Fatalf("docker restart: %v", err)
	}
	ms, err := newProvider(providers.Env{Cluster: m.Cluster}, dockerClient(t)).List(ctx, providers.Selector{Cluster: m.Cluster})
	if err != nil || len(ms) != 1 {
		t.Fatalf("List after restart: %v, %v", ms, err)
	}
	c = dialNode(t, ms[0], hk, "root", signer)
	defer c.Close()
	for _, s := range kubeletSysctls {
		if got := strings.TrimSpace(runSSH(t, c, "cat /proc/sys/"+s.key)); got != s.value {
			t.Errorf("after restart node reads %s = %q, want %q", s.key, got, s.value)
		}
	}
	if again := runSSH(t, c, "cat /etc/machine-id"); again != id {
		t.Errorf("machine-id changed across restart: %s → %s", id, again)
	}
}

// readHostSysctl reads a sysctl of this host (the test's own namespaces).
func readHostSysctl(t *testing.T, key string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/" + key)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestDeleteRemovesVolumes checks a deleted machine leaves none of its
// anonymous volumes behind: each holds a nested runtime's images.
func TestDeleteRemovesVolumes(t *testing.T) {
	nodeImage(t)
	cluster := uniqueCluster(t, "vol")
	t.Cleanup(cleanupCluster(t, cluster))
	p := newProvider(providers.Env{Cluster: cluster}, dockerClient(t))
	hk, err := hostkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	before := dockerVolumes(ctx, t)
	ms, err := p.Create(ctx, []providers.MachineSpec{{
		ID: providers.MachineID(cluster + "-m0"), Cluster: cluster, Pool: "p", SSHUser: "root", HostKey: hk,
	}})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	vols, err := dockertest.ContainerVolumes(ctx, ms[0].ProviderID)
	if err != nil {
		t.Fatal(err)
	}
	var names, dests []string
	for _, v := range vols {
		names, dests = append(names, v.Name), append(dests, v.Destination)
	}
	slices.Sort(dests)
	if want := []string{"/var/lib/containerd", "/var/lib/docker", "/var/lib/kubelet"}; !slices.Equal(dests, want) {
		t.Errorf("machine volumes at %v, want %v", dests, want)
	}
	for _, n := range names {
		if slices.Contains(before, n) {
			t.Errorf("machine got volume %s that existed before it", n)
		}
	}
	if err := p.Delete(ctx, []providers.MachineID{ms[0].ID}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	after := dockerVolumes(ctx, t)
	for _, n := range names {
		if slices.Contains(after, n) {
			t.Errorf("volume %s of the deleted machine is left", n)
		}
	}
}

func dockerVolumes(ctx context.Context, t *testing.T) []string {
	t.Helper()
	names, err := dockertest.Volumes(ctx)
	if err != nil {
		t.Fatalf("docker volume ls: %v", err)
	}
	return names
}

// TestKubeadmPackagesOffline installs what a kubeadm node installs from
// Debian inside a node cut off from the network: everything must come from
// the image's apt cache, and no service may be started half-configured.
func TestKubeadmPackagesOffline(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: installing the packages takes ~20s")
	}
	m, hk, signer, _ := createNode(t, "root")
	c := dialNode(t, m, hk, "root", signer)
	defer c.Close()
	// apt lists what it would download as 'URI' lines: none for the whole
	// preload, docker.io included.
	if out := runSSH(t, c, "apt-get install --print-uris -y -q "+imagePreload); regexp.MustCompile(`(?m)^'`).MatchString(out) {
		t.Fatalf("apt would download packages the image should hold:\n%s", out)
	}
	runSSH(t, c, "ip route del default") // the cluster subnet stays reachable for ssh
	start := time.Now()
	runSSH(t, c, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q "+kubeadmPreload)
	t.Logf("offline apt-get install %s: %v", kubeadmPreload, time.Since(start).Round(100*time.Millisecond))
	runSSH(t, c, `for c in runc conntrack socat ebtables ethtool haproxy; do command -v $c >/dev/null || { echo "$c missing"; exit 1; }; done
		test -x /usr/lib/cni/bridge && test -x /usr/lib/cni/host-local`)
	if out := runSSH(t, c, "pgrep -l haproxy || true"); strings.TrimSpace(out) != "" {
		t.Errorf("installing haproxy started it: %s", out)
	}
}
