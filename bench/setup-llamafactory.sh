#!/usr/bin/env bash
# Installs LLaMA-Factory (PyPI release) into its own environment, cached outside the clone, for the side-by-side
# benchmarks (bench/training_side_by_side.py, bench/serving_side_by_side.py). Idempotent: a finished environment
# is reused. Prints the environment's bin directory on its last line.
#
# Both tools run on the same torch: LLaMA-Factory's torchvision/torchaudio requirements would otherwise pull a
# different torch build, so they are overridden away and torch is pinned to the one kubetune's train extra pins
# (pyproject.toml). torchvision is never imported; torchaudio is (llamafactory/data/mm_plugin.py imports it at the
# top, every train run reaches it), so its wheel is added without dependencies: it imports on this torch, and only
# audio inputs would need its compiled kernels.
set -euo pipefail

LF_VERSION="${LF_VERSION:-0.9.5}"
CACHE="${KUBETUNE_CACHE:-$HOME/.cache/kubetune}"
UV_VERSION="${UV_VERSION:-0.13.8}"
UV="$CACHE/uv-$UV_VERSION/bin/uv"
PYTHON="${PYTHON:-python3}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TORCH_VERSION="${LF_TORCH_VERSION:-$(grep -oE '"torch==[0-9.]+"' "$ROOT/pyproject.toml" | head -1 | tr -d '"' | cut -d= -f3)}"
ENV_DIR="$CACHE/llamafactory-$LF_VERSION-torch$TORCH_VERSION"
MARKER="$ENV_DIR/.kubetune-ready"
TORCHAUDIO_VERSION="${LF_TORCHAUDIO_VERSION:-2.11.1}"
export UV_CACHE_DIR="${UV_CACHE_DIR:-$CACHE/uv-cache}"

add_torchaudio() {  # idempotent: also completes an environment made before this step existed
  "$ENV_DIR/bin/python" -c 'import torchaudio' 2>/dev/null && return 0
  "$UV" pip install -q -p "$ENV_DIR/bin/python" --no-deps "torchaudio==$TORCHAUDIO_VERSION" >&2
}

ready() { [[ -f "$MARKER" ]] && "$ENV_DIR/bin/python" -c 'import torchaudio' 2>/dev/null; }
if ready; then echo "$ENV_DIR/bin"; exit 0; fi
mkdir -p "$CACHE"
exec 9>"$CACHE/llamafactory-$LF_VERSION.lock"
flock 9
if [[ -f "$MARKER" ]]; then add_torchaudio; echo "$ENV_DIR/bin"; exit 0; fi
if [[ ! -x "$UV" ]]; then
  "$PYTHON" -m venv "$CACHE/uv-$UV_VERSION"
  "$CACHE/uv-$UV_VERSION/bin/pip" install -q "uv==$UV_VERSION"
fi

start=$(date +%s)
rm -rf "$ENV_DIR"
"$UV" venv -q -p "$PYTHON" "$ENV_DIR"
overrides="$ENV_DIR/overrides.txt"
# A marker no platform satisfies removes a requirement; torch is the runtime's.
printf 'torch==%s\ntorchvision ; python_version < "3"\ntorchaudio ; python_version < "3"\n' "$TORCH_VERSION" > "$overrides"
"$UV" pip install -q -p "$ENV_DIR/bin/python" --overrides "$overrides" "llamafactory==$LF_VERSION" >&2
add_torchaudio
"$ENV_DIR/bin/python" -c 'import llamafactory.data, torch; print("llamafactory", llamafactory.__version__, "torch", torch.__version__)' >&2
touch "$MARKER"
echo "LLaMA-Factory $LF_VERSION ready in $(( $(date +%s) - start ))s ($ENV_DIR)" >&2
echo "$ENV_DIR/bin"
