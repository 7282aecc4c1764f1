#!/usr/bin/env bash
# Kernel tests, then benchmarks, on a CUDA machine whose python3 has torch and Triton but
# not this package: the namespace is laid out as links (kernels/namespace_links.sh).
#   kernels/run_on_gpu.sh OUT_DIR [BENCHMARK…]   ($BENCH_ARGS: extra arguments for each)
# BENCHMARK: mla_decode, norms (kernels/*_benchmark.py) or decode (model/decode_benchmark.py);
# all three by default. Each writes its JSON into OUT_DIR (BENCHMARKS.md).
set -euo pipefail
out=${1:-bench-out}
shift || true
benchmarks=("$@")
((${#benchmarks[@]})) || benchmarks=(mla_decode norms decode)
mkdir -p "$out"
ns=$(kernels/namespace_links.sh)
export PYTHONPATH="$ns:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv | tee "$out/gpu.txt"
python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)'
if [[ ${SKIP_TESTS:-0} != 1 ]]; then
  python3 -m pytest -q -p no:cacheprovider --noconftest -p plugins.kernels \
    tests/test_kernels_*.py tests/test_model_decode_benchmark.py 2>&1 | tee "$out/tests.log" \
    || echo "kernel tests FAILED"
fi
for name in "${benchmarks[@]}"; do
  case $name in
    mla_decode | norms) module=infinitecontext.kernels.${name}_benchmark ;;
    decode) module=infinitecontext.model.decode_benchmark ;;
    *) echo "run_on_gpu: unknown benchmark $name (mla_decode, norms, decode)" && exit 2 ;;
  esac
  # shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
  python3 -m "$module" --out "$out" ${BENCH_ARGS:-}
done
