#!/usr/bin/env bash
# One GPU session: install the carried wheels (the GPU box has no registry), then measure what CPUs cannot:
# training tokens/s, MFU and peak memory (full, LoRA, QLoRA/bitsandbytes, Liger, padded vs neat packing, DeepSpeed
# ZeRO-2) and HF-engine serving throughput. Results land in $OUT (JSON + logs).
#   Prepare the wheels once on a machine with registry access: see bench/README.md.
set -u
OUT=${OUT:-/tmp/kubetune-gpu}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD/runtime:$PWD/operator PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -m kubetune.cli.main env 2>&1 | tee "$OUT/env.txt"
timeout "${TRAIN_BUDGET_S:-330}" python3 bench/gpu_training.py --out "$OUT" --steps "${STEPS:-15}" \
  ${TRAIN_ONLY:+--only "$TRAIN_ONLY"} 2>&1 | grep -vE "it/s\]|examples/s\]" | tee "$OUT/train.log"
timeout "${SERVE_BUDGET_S:-150}" python3 bench/gpu_serving.py --backend hf --requests 64 --concurrency 16 \
  2>&1 | tail -40 | tee "$OUT/serve.log"
echo "done"
