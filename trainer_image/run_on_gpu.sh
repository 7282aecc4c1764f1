#!/usr/bin/env bash
# The trainer's GPU benchmark on a bare GPU machine with PyTorch, transformers and
# tokenizers installed but without this repository installed (the device lease of
# BENCHMARKS.md): lays out the `infinitecontext.*` namespace with links, installs the
# TRL/datasets wheels carried in .whl/trainer (for the DPO phase), runs
# `python -m infinitecontext.trainer.gpu_benchmark` and leaves in OUT_DIR: results.json,
# bench.log (ending with the report's tables) and figures.tar (the heatmaps).
#   trainer_image/run_on_gpu.sh OUT_DIR [BUDGET_S] [MODE]   ($PYTHON, $BENCH_ARGS optional)
# MODE:
#   all         one process: throughput, then the passkey study (seed 0); also the
#               extended small model, split into 15 MB parts (model.tar.NN)
#   throughput  the throughput phase only
#   profile     where one 1b@8k training step spends its GPU time (torch.profiler)
#   passkey2    the passkey study for seeds 0 and 1 as two processes sharing the GPU
#               (each with BUDGET_S), results merged into one results.json
# Every process is killed BUDGET_S + 25 s after it starts; the whole script ends about
# 15 s after that (merge, report, heatmaps).
set -uo pipefail
out=${1:?usage: run_on_gpu.sh OUT_DIR [BUDGET_S] [all|throughput|profile|passkey2]}
budget=${2:-455}
mode=${3:-all}
py=${PYTHON:-python3}
repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
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
log=$out/bench.log
: >"$log"
{
  nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader || true
  "$py" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
} 2>&1 | tee -a "$log"
work=/tmp/icx-bench
rm -rf "$work"
mkdir -p "$work"

bench() {  # bench TAG ARGS…: one bench process, its log lines tagged and appended to bench.log
  local tag=$1
  shift
  # shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
  timeout $((budget + 25)) "$py" -m infinitecontext.trainer.gpu_benchmark --budget-s "$budget" \
    "$@" ${BENCH_ARGS:-} 2>&1 \
    | grep --line-buffered -v -i -E 'warn|it/s\]|examples/s\]' \
    | sed -u "s/^/[$tag] /" | tee -a "$log"
}

case $mode in
  all)
    bench all --out "$work/all"
    results=("$work/all/results.json")
    ;;
  throughput)
    bench tp --out "$work/tp" --phases throughput
    results=("$work/tp/results.json")
    ;;
  profile)
    bench prof --out "$work/prof" --phases profile
    results=("$work/prof/results.json")
    ;;
  passkey2)
    # The PyTorch reference ops (as in the one-seed run, whose speeds size the study):
    # accuracy is measured here, not kernels. ICX_KERNELS=auto to use the Triton ones.
    export ICX_KERNELS=${ICX_KERNELS:-reference}
    for seed in 0 1; do
      bench "s$seed" --out "$work/seed$seed" --phases passkey --seed "$seed" --concurrent 2 \
        --port-base $((29500 + 100 * seed)) &
    done
    wait
    results=("$work/seed0/results.json" "$work/seed1/results.json")
    ;;
  *) echo "run_on_gpu: unknown mode $mode" && exit 2 ;;
esac
found=()
for file in "${results[@]}"; do [[ -f $file ]] && found+=("$file"); done
if ((${#found[@]})); then
  "$py" -m infinitecontext.trainer.gpu_benchmark --merge "${found[@]}" --merged "$out/results.json"
  echo "=== report ===" | tee -a "$log"
  "$py" -m infinitecontext.trainer.gpu_benchmark --report "$out/results.json" --figures "$work/figures" \
    2>&1 | tee -a "$log"
  [[ -d $work/figures ]] && tar cf "$out/figures.tar" -C "$work" figures
fi
model=$work/all/small-yarn
[[ -f $model/model/model.safetensors ]] || model=$work/all/small-passkey
if [[ $mode == all && -f $model/model/model.safetensors ]]; then
  (cd "$model" && tar cf /tmp/icx-model.tar model && split -b 15000000 -d /tmp/icx-model.tar "$out/model.tar.")
fi
ls -la "$out"
