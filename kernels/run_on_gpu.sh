#!/usr/bin/env bash
# Kernel tests, then the benchmark, on a CUDA machine whose python3 has torch and Triton but
# not this package: the namespace is laid out as links (kernels/namespace_links.sh).
#   kernels/run_on_gpu.sh OUT_DIR [bench arguments…]
set -euo pipefail
out=${1:-bench-out}
shift || true
mkdir -p "$out"
ns=$(kernels/namespace_links.sh)
export PYTHONPATH="$ns:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv | tee "$out/gpu.txt"
python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)'
if [[ ${SKIP_TESTS:-0} != 1 ]]; then
  python3 -m pytest -q -p no:cacheprovider --noconftest -p plugins.kernels \
    tests/test_kernels_*.py 2>&1 | tee "$out/tests.log" || echo "kernel tests FAILED"
fi
python3 -m infinitecontext.kernels.bench --out "$out" "$@"
