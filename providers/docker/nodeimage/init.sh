#!/bin/sh
# provision-init: PID 1 of a provision node container.
# Prepares what a nested dockerd or a kubelet needs, creates the login user
# provision asked for, then runs sshd in the foreground.
set -eu

# /run is a tmpfs (docker run --tmpfs /run), empty at every start.
mkdir -p /run/sshd

# Docker mounts the cgroup v1 controllers read-only. A nested dockerd or a
# kubelet must create cgroups (runc fails with "mkdir
# /sys/fs/cgroup/cpuset/docker: read-only file system"). The container has
# its own cgroup namespace (--cgroupns private), so these mounts show only
# its own subtree, never the host's hierarchy. A plain "remount,rw" is
# refused on these mounts ("mount point is busy"); "remount,bind,rw" changes
# only this mount's flags and works with CAP_SYS_ADMIN and
# apparmor=unconfined.
for d in /sys/fs/cgroup/*; do
	if mountpoint -q "$d"; then
		mount -o remount,bind,rw "$d" || echo "provision-init: cannot make $d writable" >&2
	fi
done

# /proc/sys stays read-only: outside net/ it is this host's own kernel.
# Only net/ is per network namespace, and the nested dockerd, swarm and
# kube-proxy set sysctls there; bind it onto itself to get a mount of its
# own whose flags can be changed.
mount --bind /proc/sys/net /proc/sys/net
mount -o remount,bind,rw /proc/sys/net

# kubelet fails unless it can set these kernel-wide sysctls. Give each node
# a file of its own over each one: kubelet reads and writes the file and the
# host kernel never sees the write. The files live on the node's root
# filesystem, so a restarted node keeps what kubelet wrote.
sysctls=/var/lib/provision/sysctl
mkdir -p "$sysctls"
for key in vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops \
	kernel/keys/root_maxkeys kernel/keys/root_maxbytes; do
	[ -e "/proc/sys/$key" ] || continue # kernel built without the feature
	file="$sysctls/$(echo "$key" | tr / .)"
	[ -f "$file" ] || cat "/proc/sys/$key" >"$file"
	mount --bind "$file" "/proc/sys/$key"
done

# Nested containers' volume mounts need shared propagation, as in docker:dind.
mount --make-rshared /

# A kubelet in this node runs pods under a cgroup of its own, /kubelet
# (cgroupRoot in the patch below), as kind's nodes do. A new cgroup v1
# cpuset starts with no CPUs and no memory nodes, so give it the node's.
for c in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
	[ -d "$c" ] && mkdir -p "$c/kubelet" 2>/dev/null || true
done
if [ -f /sys/fs/cgroup/cpuset/cpuset.cpus ]; then
	cat /sys/fs/cgroup/cpuset/cpuset.cpus >/sys/fs/cgroup/cpuset/kubelet/cpuset.cpus
	cat /sys/fs/cgroup/cpuset/cpuset.mems >/sys/fs/cgroup/cpuset/kubelet/cpuset.mems
fi

# Docker's embedded DNS answers on 127.0.0.11 inside this node's network
# namespace only. Pods have namespaces of their own, so a kubelet handing
# them the node's resolv.conf would make CoreDNS forward to itself (a loop).
# Let the embedded DNS answer on the node's own address too, for traffic
# arriving from pods, and give pods a resolv.conf naming that address.
pod_dns() {
	addr=$(hostname -i | awk '{ print $1 }')
	[ -n "$addr" ] || return 1
	echo 1 >/proc/sys/net/ipv4/conf/all/route_localnet
	for proto in udp tcp; do
		port=$(iptables-save -t nat | sed -n "s/.*-d 127.0.0.11\/32 -p $proto .*--to-destination 127.0.0.11:\([0-9]*\).*/\1/p" | head -n 1)
		[ -n "$port" ] || return 1
		iptables -t nat -C PREROUTING -d "$addr" -p $proto --dport 53 -j DNAT --to-destination "127.0.0.11:$port" 2>/dev/null ||
			iptables -t nat -A PREROUTING -d "$addr" -p $proto --dport 53 -j DNAT --to-destination "127.0.0.11:$port"
	done
	grep -v '^nameserver' /etc/resolv.conf >/etc/provision/pod-resolv.conf || true
	echo "nameserver $addr" >>/etc/provision/pod-resolv.conf
}
mkdir -p /etc/provision
if grep -q '^nameserver 127.0.0.11' /etc/resolv.conf; then
	pod_dns || echo "provision-init: pods will have no upstream DNS" >&2
fi
[ -f /etc/provision/pod-resolv.conf ] || cp /etc/resolv.conf /etc/provision/pod-resolv.conf

# What a kubelet needs in a container and not on a VM, handed to kubeadm as
# a patch of this machine's kubelet config (kubeadm's patches directory; the
# kubeadm driver reads it on every provider): this host's Docker gives
# cgroup v1, the host may swap, and the disk is shared with the host and the
# other nodes, so eviction must not count it.
mkdir -p /etc/provision/kubeadm-patches
cat >/etc/provision/kubeadm-patches/kubeletconfiguration50-container+strategic.yaml <<'PATCH'
failCgroupV1: false
failSwapOn: false
cgroupRoot: /kubelet
resolvConf: /etc/provision/pod-resolv.conf
evictionHard:
  memory.available: 100Mi
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
imageGCHighThresholdPercent: 100
PATCH

# kubelet and kubeadm identify a node by /etc/machine-id; the image ships it
# empty so that each node makes its own, once.
if [ ! -s /etc/machine-id ]; then
	tr -d '-' </proc/sys/kernel/random/uuid >/etc/machine-id
fi

# A non-root login user: provision drops its name and keys in /etc/provision.
if [ -s /etc/provision/ssh-user ]; then
	user=$(cat /etc/provision/ssh-user)
	if ! id "$user" >/dev/null 2>&1; then
		useradd --create-home --shell /bin/bash "$user"
	fi
	echo "$user ALL=(ALL) NOPASSWD:ALL" >"/etc/sudoers.d/90-provision-$user"
	chmod 0440 "/etc/sudoers.d/90-provision-$user"
	home=$(getent passwd "$user" | cut -d: -f6)
	install -d -m 0700 -o "$user" -g "$user" "$home/.ssh"
	install -m 0600 -o "$user" -g "$user" /etc/provision/authorized_keys "$home/.ssh/authorized_keys"
fi

exec /usr/sbin/sshd -D -e
