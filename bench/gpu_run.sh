#!/usr/bin/env bash
# One GPU session: install the carried wheels (the GPU box has no registry), then measure what CPUs cannot:
# training tokens/s, MFU and peak memory (LoRA, QLoRA and full fine-tuning in bf16 with the fused AdamW and no
# gradient checkpointing; Liger; checkpointing on; padded vs neat packing; DeepSpeed ZeRO-2 and FSDP) and HF-engine
# serving throughput. Results land in $OUT (JSON + logs).
#   Prepare the wheels once on a machine with registry access: see bench/README.md.
#   DRY_RUN=1 renders every training config into $OUT and prints the commands instead of running them (CPU).
set -u
OUT=${OUT:-/tmp/kubetune-gpu}
STEPS=${STEPS:-15}
VARIANTS=${TRAIN_ONLY:-lora,qlora,full,lora_liger,full_liger,lora_gc,lora_padded,full_ds_z2,full_fsdp}
mkdir -p "$OUT"
train_cmd=(python3 bench/gpu_training.py --out "$OUT" --steps "$STEPS" --warmup 4 --only "$VARIANTS")
serve_cmd=(python3 bench/gpu_serving.py --backend hf --requests 64 --concurrency 16)
if [[ -n "${DRY_RUN:-}" ]]; then
  export PYTHONPATH=$PWD/runtime${PYTHONPATH:+:$PYTHONPATH}
  "${PYTHON:-python3}" bench/gpu_training.py --out "$OUT" --steps "$STEPS" --only "$VARIANTS" --render
  echo "would run: timeout ${TRAIN_BUDGET_S:-420} ${train_cmd[*]}"
  echo "would run: timeout ${SERVE_BUDGET_S:-120} ${serve_cmd[*]}"
  exit 0
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD/runtime:$PWD/operator PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -m kubetune.cli.main env 2>&1 | tee "$OUT/env.txt"
python3 -c 'import torch; print("flash-attn varlen:", __import__("importlib").util.find_spec("flash_attn") is not None,
"| bf16:", torch.cuda.is_bf16_supported())' 2>&1 | tee -a "$OUT/env.txt"
timeout "${TRAIN_BUDGET_S:-420}" "${train_cmd[@]}" 2>&1 | grep -vE "it/s\]|examples/s\]" | tee "$OUT/train.log"
timeout "${SERVE_BUDGET_S:-120}" "${serve_cmd[@]}" 2>&1 | tail -40 | tee "$OUT/serve.log"
echo "done"
