#!/usr/bin/env bash
# Install what the one-node test cluster takes from Debian packages: containerd, runc, the CNI plugins,
# iptables, conntrack (kube-proxy), buildah (image builds without a daemon) and debootstrap (the base image).
# Idempotent: does nothing when every tool is already there; runs `apt-get update` at most once.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have containerd || need+=(containerd)
have runc || need+=(runc)
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && [ -x /usr/lib/cni/portmap ] \
  || need+=(containernetworking-plugins)
have iptables || need+=(iptables)
have conntrack || need+=(conntrack)
have buildah || need+=(buildah)
have debootstrap || need+=(debootstrap)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "node-prereqs: missing ${need[*]}; run as root (apt-get install)" >&2
  exit 1
fi
echo ">> apt-get install ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
