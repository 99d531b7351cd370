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
