#!/bin/sh
# Builds the provision node root filesystem into $ROOTFS.
# Inputs (environment): ROOTFS, SUITE, MIRROR, INCLUDE (comma list),
# INIT (path of provision-init), PRELOAD (space list of .debs to cache).
# Run as root; debootstrap needs it. Output is a directory that the caller
# tars into `docker import`.
set -eu

: "${ROOTFS:?}" "${SUITE:?}" "${MIRROR:?}" "${INCLUDE:?}" "${INIT:?}" "${PRELOAD:?}"

echo "provision-image: debootstrap $SUITE from $MIRROR"
debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOTFS" "$MIRROR"

# sshd: keys only, one ed25519 host key that provision injects per machine.
cat >"$ROOTFS/etc/ssh/sshd_config.d/provision.conf" <<'CONF'
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
HostKey /etc/ssh/ssh_host_ed25519_key
UseDNS no
CONF
rm -f "$ROOTFS"/etc/ssh/ssh_host_*

# The node cache below is downloaded without recommends; make later installs
# inside a node resolve the same set, so they stay offline.
cat >"$ROOTFS/etc/apt/apt.conf.d/90provision" <<'CONF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
CONF

# No init system in a node: keep package scripts from starting services
# while we only download. Inside a node, invoke-rc.d finds no init system
# and refuses to start services by itself, so a later install of docker.io
# or haproxy starts nothing; bootstrap starts what it needs.
printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"
chmod 0755 "$ROOTFS/usr/sbin/policy-rc.d"

cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
echo "provision-image: caching $PRELOAD"
chroot "$ROOTFS" apt-get clean
chroot "$ROOTFS" apt-get update -q
chroot "$ROOTFS" apt-get install -q --download-only -y --no-install-recommends $PRELOAD
rm -f "$ROOTFS/usr/sbin/policy-rc.d"
: >"$ROOTFS/etc/resolv.conf"

# Every node must have its own machine ID (kubelet and kubeadm read it):
# ship none, and provision-init makes one at a node's first start.
: >"$ROOTFS/etc/machine-id"

install -m 0755 "$INIT" "$ROOTFS/usr/local/sbin/provision-init"
mkdir -p "$ROOTFS/etc/provision"
rm -rf "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/* "$ROOTFS"/var/log/*.log "$ROOTFS"/var/cache/debconf/*-old
echo "provision-image: rootfs ready"
