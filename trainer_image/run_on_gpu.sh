#!/usr/bin/env bash
# The trainer's GPU benchmark on a bare GPU machine with PyTorch, transformers and
# tokenizers installed but without this repository installed (the device lease of
# BENCHMARKS.md): lays out the `infinitecontext.*` namespace with links, installs the
# TRL/datasets wheels carried in .whl/trainer (for the DPO phase), runs
# `python -m infinitecontext.trainer.bench`, and copies back results.json, the log and
# the extended small model (split into 15 MB parts).
#   trainer_image/run_on_gpu.sh OUT_DIR [BUDGET_S]      ($PYTHON, $BENCH_ARGS optional)
set -uo pipefail
out=${1:?usage: run_on_gpu.sh OUT_DIR [BUDGET_S]}
budget=${2:-455}
py=${PYTHON:-python3}
repo=$(cd "$(dirname "$0")/.." && pwd)
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
if compgen -G "$repo/.whl/trainer/*.whl" >/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$repo"/.whl/trainer/*.whl || echo "run_on_gpu: wheels not installed"
fi
ns=/tmp/icx-ns/infinitecontext
mkdir -p "$ns"
for pair in model:model kernels:kernels trainer:trainer_image; do
  ln -sfn "$repo/${pair#*:}" "$ns/${pair%%:*}"
done
export PYTHONPATH=/tmp/icx-ns:/tmp/site PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader || true
"$py" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
work=/tmp/icx-bench
rm -rf "$work"
# shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
timeout $((budget + 25)) "$py" -m infinitecontext.trainer.bench --out "$work" --budget-s "$budget" ${BENCH_ARGS:-} 2>&1 \
  | grep -v -i -E 'warn|it/s\]|examples/s\]' | tee "$out/bench.log"
cp "$work/results.json" "$out/" 2>/dev/null
model=$work/small-yarn
[[ -f $model/model/model.safetensors ]] || model=$work/small-passkey
if [[ -f $model/model/model.safetensors ]]; then
  (cd "$model" && tar cf /tmp/icx-model.tar model && split -b 15000000 -d /tmp/icx-model.tar "$out/model.tar.")
fi
ls -la "$out"
