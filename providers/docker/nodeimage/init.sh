#!/bin/sh
# provision-init: PID 1 of a provision node container.
# Prepares what a nested dockerd needs, creates the login user provision
# asked for, then runs sshd in the foreground.
set -eu

mkdir -p /run/sshd

# Docker mounts the cgroup v1 controllers and /proc/sys read-only in an
# unprivileged container. A nested dockerd must create cgroups (runc fails
# with "mkdir /sys/fs/cgroup/cpuset/docker: read-only file system") and swarm
# sets per-netns sysctls, so make them writable again. A plain "remount,rw"
# is refused on these bind mounts ("mount point is busy"); "remount,bind,rw"
# works with CAP_SYS_ADMIN and apparmor=unconfined.
for d in /sys/fs/cgroup/*; do
	mountpoint -q "$d" && mount -o remount,bind,rw "$d" 2>/dev/null || true
done
mount -o remount,bind,rw /proc/sys 2>/dev/null || true
# Nested containers' volume mounts need shared propagation, as in docker:dind.
mount --make-rshared / 2>/dev/null || true

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
