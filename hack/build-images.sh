#!/usr/bin/env bash
# Build the images the one-node test cluster runs, without any registry, and import them into containerd:
#   registry.k8s.io/pause:3.10        the sandbox image, from pause.c in the k8s.io/kubernetes module
#   docker.io/library/python:3.11-slim a stand-in (Debian bookworm from debootstrap, a venv at /usr/local) so the
#                                      project's Dockerfiles build unmodified with `--pull=never`
#   localhost/kubetune-operator:<key>  images/Dockerfile.operator
#   localhost/kubetune-runtime:<key>   images/Dockerfile.runtime (torch from PyPI: no other index is reachable)
#   localhost/kubetune-vllm:<key>      images/Dockerfile.vllm (vLLM's CPU build, installed by hack/setup-vllm.sh)
#   localhost/kubetune-openai-client:<key>  tests/support/images/Dockerfile.openai-client (node tests' app pod)
#   localhost/kubetune-pytorch-init:<key>   tests/support/images/Dockerfile.pytorch-init (the training-operator's
#                                      init container; its default alpine:3.10 cannot be pulled here)
# Every image is keyed by a hash of its inputs; present keys are reused, older kubetune tags are pruned.
# Root only (buildah, containerd). Prints `KEY=VALUE` lines (the image references) and writes them to
# $cache/images.env for the node fixture.
#
# Usage: hack/build-images.sh [all|base]      base: only pause + the python stand-in
set -euo pipefail
what=${1:-all}
root=$(cd "$(dirname "$0")/.." && pwd)
top=${KUBETUNE_CACHE:-$HOME/.cache/kubetune}
cache=$top/images
K8S_VERSION=${K8S_VERSION:-v1.36.3}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_PACKAGES=python3,python3-pip,python3-venv,ca-certificates
# Image content must not depend on the host's pip configuration; PyPI's torch is the only one reachable here.
TORCH_INDEX=${TORCH_INDEX:-https://pypi.org/simple}
HOST_CA=/etc/ssl/certs/ca-certificates.crt
mkdir -p "$cache"

# buildah storage lives in the cache, so layers survive between runs of a fresh clone.
export CONTAINERS_STORAGE_CONF=$cache/storage.conf
cat > "$CONTAINERS_STORAGE_CONF" <<CONF
[storage]
driver = "overlay"
graphroot = "$cache/storage"
runroot = "$cache/storage-run"
CONF

log() { echo ">> $*" >&2; }
has_image() { buildah images -q "$1" >/dev/null 2>&1; }
key_of() { sha256sum | cut -c1-16; }
timed() { local t=$SECONDS; "$@"; log "$1 ${2:-}: $((SECONDS - t))s"; }

# --- pause: kubernetes' own pause.c, static, FROM scratch -------------------------------------------------------
pause_image() {
  local src ref=registry.k8s.io/pause:3.10 dir=$cache/pause
  src=$(cd "$root/hack/controlplane/k8s" && export GOTOOLCHAIN=local && go mod download k8s.io/kubernetes \
        && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
  local key; key=$(cat "$src" | key_of)
  if has_image "$ref" && [ "$(cat "$dir/key" 2>/dev/null)" = "$key" ]; then return; fi
  log "pause image ($key)"
  rm -rf "$dir"; mkdir -p "$dir"
  cp "$src" "$dir/pause.c"; chmod u+w "$dir/pause.c"
  gcc -Os -Wall -Werror -static -DVERSION=v3.10-kubetune -o "$dir/pause" "$dir/pause.c"
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' > "$dir/Containerfile"
  buildah bud -q --pull=never -t "$ref" -f "$dir/Containerfile" "$dir" >/dev/null
  echo "$key" > "$dir/key"
}

# --- python:3.11-slim stand-in: debootstrap minbase + python3, a venv at /usr/local like the official image ------
python_image() {
  local ref=docker.io/library/python:3.11-slim
  local key; key=$(printf '%s %s %s v1' "$SUITE" "$BASE_PACKAGES" "$MIRROR" | key_of)
  if has_image "$ref" && [ "$(cat "$cache/python.key" 2>/dev/null)" = "$key" ]; then return; fi
  local tarball=$cache/rootfs-$SUITE-$key.tar
  if [ ! -f "$tarball" ]; then
    log "debootstrap $SUITE ($key)"
    local rootfs=$cache/rootfs.tmp
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs" "$MIRROR" >"$cache/debootstrap.log" 2>&1 \
      || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/*
    tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
    find "$cache" -maxdepth 1 -name "rootfs-$SUITE-*.tar" ! -name "$(basename "$tarball")" -delete
  fi
  log "python:3.11-slim stand-in ($key)"
  local ctr; ctr=$(buildah from scratch)
  buildah add --quiet "$ctr" "$tarball" / >/dev/null
  buildah config --env LANG=C.UTF-8 --cmd '["/bin/bash"]' "$ctr"
  buildah commit -q --rm "$ctr" localhost/kubetune-debian:$SUITE >/dev/null
  local dir=$cache/python; mkdir -p "$dir"
  cat > "$dir/Containerfile" <<'CF'
FROM localhost/kubetune-debian:bookworm
RUN python3 -m venv /usr/local && /usr/local/bin/python -m pip --version && rm -rf /root/.cache
ENV LANG=C.UTF-8 PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["python3"]
CF
  buildah bud -q --pull=never -t "$ref" -f "$dir/Containerfile" "$dir" >/dev/null
  echo "$key" > "$cache/python.key"
}

# --- the project's images ----------------------------------------------------------------------------------------
# Inputs: the Dockerfile, the build context files it copies (what .dockerignore lets through) and the base key.
project_key() {
  local dockerfile=$1
  { cat "$root/$dockerfile" "$cache/python.key"
    [[ $dockerfile == *vllm* ]] && cat "$root/hack/setup-vllm.sh"
    (cd "$root" && find pyproject.toml README.md runtime operator -type f \
       ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' | LC_ALL=C sort | xargs sha256sum)
  } | key_of
}

project_image() {
  local name=$1 dockerfile=$2 key ref context=$root
  if [ "${3:-}" = own-context ]; then  # a test image: its folder is its context, its Dockerfile its only input
    context=$root/$(dirname "$dockerfile")
    key=$(cat "$root/$dockerfile" "$cache/python.key" | key_of)
  else
    key=$(project_key "$dockerfile")
  fi
  ref=localhost/$name:$key
  if ! has_image "$ref"; then
    log "$name ($key) from $dockerfile"
    local t=$SECONDS
    # --layers keeps each step cached, so a source change rebuilds only the steps after the dependencies.
    # The host CA bundle is bind-mounted for pip (egress TLS may be intercepted), never copied into a layer.
    # The host's uv cache is lent to the vLLM install (a mount: nothing of it lands in a layer), so a rebuild
    # does not download vLLM's 6 GB again.
    mkdir -p "$top/uv-cache"
    buildah bud -q --layers --pull=never --network=host \
      -v "$HOST_CA:/etc/ssl/certs/ca-certificates.crt:ro" \
      -v "$top/uv-cache:/var/cache/kubetune-uv" \
      --build-arg TORCH_INDEX="$TORCH_INDEX" --build-arg UV_CACHE_DIR=/var/cache/kubetune-uv \
      -f "$root/$dockerfile" -t "$ref" "$context" >/dev/null
    log "$name built in $((SECONDS - t))s"
  fi
  # Older builds of this image: untag them (their layers are pruned below).
  buildah images --format '{{.Name}}:{{.Tag}}' 2>/dev/null | grep "^localhost/$name:" | grep -v ":$key\$" \
    | xargs -r buildah rmi -f >/dev/null 2>&1 || true
  echo "$ref"
}

# --- containerd import -----------------------------------------------------------------------------------------
# containerd's root persists in the cache (images stay imported between runs); a private containerd is started
# for the import when the node's is not running.
CTD_ROOT=$top/containerd/root
ctd_sock=${CONTAINERD_ADDRESS:-}
ctd_pid=""
ctd_up() {
  if [ -n "$ctd_sock" ] && ctr -a "$ctd_sock" version >/dev/null 2>&1; then return; fi
  local state=$top/containerd/import-state
  ctd_sock=$state/containerd.sock
  rm -rf "$state"; mkdir -p "$state" "$CTD_ROOT"
  containerd --root "$CTD_ROOT" --state "$state" --address "$ctd_sock" >"$top/containerd/import.log" 2>&1 &
  ctd_pid=$!
  for _ in $(seq 100); do ctr -a "$ctd_sock" version >/dev/null 2>&1 && return; sleep 0.2; done
  log "containerd did not start: $top/containerd/import.log"; tail -20 "$top/containerd/import.log" >&2; exit 1
}
ctd_down() { if [ -n "$ctd_pid" ]; then kill "$ctd_pid" 2>/dev/null || true; wait "$ctd_pid" 2>/dev/null || true; fi; }
trap ctd_down EXIT
ctrk() { ctr -a "$ctd_sock" -n k8s.io "$@"; }

# docker-archive streams every layer, also those containerd has (a source change costs the whole runtime image's
# copy, ~3 min here); buildah 1.28 compresses layers for an OCI layout even with --disable-compression, so an
# incremental layout would recompress 6 GB instead.
import_image() {
  local ref=$1
  if [ -n "$(ctrk images ls -q "name==$ref")" ]; then return; fi
  log "import $ref into containerd"
  local t=$SECONDS
  buildah push -q "$ref" "docker-archive:/dev/stdout:$ref" | ctrk images import - >/dev/null
  log "imported $ref in $((SECONDS - t))s"
}

prune_containerd() {
  local keep=("$@")
  # (a fresh containerd holds none of them: grep finding nothing is not an error under pipefail)
  { ctrk images ls -q | grep -E '^localhost/kubetune-(operator|runtime|vllm|openai-client|pytorch-init):' || true; } |
  while read -r ref; do
    [[ " ${keep[*]} " == *" $ref "* ]] || { log "prune $ref"; ctrk images rm --sync "$ref" >/dev/null; }
  done
  # The kubelet's CRI names every image it used by its id (sha256:...) as well; an id whose image no name points at
  # any more holds the old layers (6 GB for a runtime image) until it goes too.
  local listing named; listing=$(ctrk images ls | awk 'NR > 1 {print $1, $3}')
  named=$(awk '$1 !~ /^sha256:/ {print $2}' <<<"$listing" | sort -u)
  awk '$1 ~ /^sha256:/' <<<"$listing" | while read -r ref digest; do
    grep -qx "$digest" <<<"$named" || { log "prune $ref"; ctrk images rm --sync "$ref" >/dev/null || true; }
  done
}

timed pause_image
timed python_image
refs=(registry.k8s.io/pause:3.10)
operator=""; runtime=""; vllm=""; client=""; init=""
if [ "$what" = all ]; then
  operator=$(project_image kubetune-operator images/Dockerfile.operator)
  runtime=$(project_image kubetune-runtime images/Dockerfile.runtime)
  vllm=$(project_image kubetune-vllm images/Dockerfile.vllm)
  client=$(project_image kubetune-openai-client tests/support/images/Dockerfile.openai-client own-context)
  init=$(project_image kubetune-pytorch-init tests/support/images/Dockerfile.pytorch-init own-context)
  refs+=("$operator" "$runtime" "$vllm" "$client" "$init")
  buildah rmi --prune >/dev/null 2>&1 || true
fi
ctd_up
# Old versions go before the new ones come in: two generations of the runtime and vLLM images do not fit the disk.
if [ "$what" = all ]; then prune_containerd "$operator" "$runtime" "$vllm" "$client" "$init"; fi
for ref in "${refs[@]}"; do import_image "$ref"; done
rm -rf "$cache/oci"  # an OCI layout of an earlier version of this script
{ echo "PAUSE_IMAGE=registry.k8s.io/pause:3.10"
  [ -n "$operator" ] && echo "OPERATOR_IMAGE=$operator"
  [ -n "$runtime" ] && echo "RUNTIME_IMAGE=$runtime"
  [ -n "$vllm" ] && echo "VLLM_IMAGE=$vllm"
  [ -n "$client" ] && echo "CLIENT_IMAGE=$client"
  [ -n "$init" ] && echo "PYTORCH_INIT_IMAGE=$init"
} | tee "$cache/images.env"
