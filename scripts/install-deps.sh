#!/usr/bin/env bash
# Installs what provision's local provider and tests need on Debian/Ubuntu:
# Docker engine, debootstrap (node image) and the OpenSSH client, then starts
# dockerd when none answers; the AWS and OpenStack CLIs for e2e. Safe to run again.
set -euo pipefail

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v curl >/dev/null 2>&1 || need+=(curl)
[ -x /usr/bin/etcd ] || command -v etcd >/dev/null 2>&1 || need+=(etcd-server) # state/etcd tests run it
# e2e drives cloudsim with clients nobody here wrote: the AWS CLI and the
# OpenStack CLI, as Debian packages them.
[ -x /usr/bin/aws ] || need+=(awscli)
[ -x /usr/bin/openstack ] || need+=(python3-openstackclient)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: need root to install: ${need[*]} (run: sudo $0)" >&2
    exit 1
  fi
  echo "install-deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${need[@]}" | sort -u) >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: dockerd is not running and starting it needs root" >&2
    exit 1
  fi
  echo "install-deps: starting dockerd (log: /var/log/provision-dockerd.log)"
  nohup dockerd >/var/log/provision-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { echo "install-deps: dockerd did not start; see /var/log/provision-dockerd.log" >&2; exit 1; }
fi
echo "install-deps: docker $(docker version --format '{{.Server.Version}}') ready"
