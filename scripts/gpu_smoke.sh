#!/usr/bin/env bash
# GPU smoke: the pipeline's CUDA path (bf16, gradient checkpointing, device placement) on the tiny model,
# since a GPU host in CI cannot download Qwen3-14B either; `fincorp preflight` on the real GPU (the paper
# plan, and the tiny run's plan beside torch.cuda.max_memory_allocated() in sft.json / grpo.json).
# Under 5 minutes; log, plans and metrics in one folder.
#   scripts/gpu_smoke.sh [OUT_DIR]        (default: gpu-smoke/)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-smoke}
mkdir -p "$out"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))" \
  | tee "$out/device.txt"
export FINCORP_SMOKE_OUT="$out" HF_HUB_OFFLINE=1
start=$(date +%s)
# The plan on the detected GPU (its driver, memory, compute capability); a plan that stops is recorded too.
fincorp preflight --profile paper --out "$out/preflight-paper.md" 2>&1 | tee "$out/preflight.txt" || true
python -m pytest tests/test_gpu.py tests/test_sft.py tests/test_grpo.py tests/test_eval.py -v -p no:cacheprovider \
  --junitxml "$out/junit.xml" 2>&1 | tee "$out/log.txt"
echo "wall seconds: $(( $(date +%s) - start ))" | tee -a "$out/log.txt"
