#!/usr/bin/env bash
# Kernel tests, then the benchmark, on a CUDA machine whose python3 has torch and Triton but
# not this package: the namespace is laid out as links (as scripts/typecheck.sh does).
#   kernels/run_on_gpu.sh OUT_DIR [bench arguments…]
set -euo pipefail
out=${1:-bench-out}
shift || true
mkdir -p "$out"
ns=$(mktemp -d)
mkdir -p "$ns/infinitecontext"
ln -s "$PWD"/infinitecontext/*.py "$ns/infinitecontext/"
ln -s "$PWD/kernels" "$ns/infinitecontext/kernels"
ln -s "$PWD/model" "$ns/infinitecontext/model"
export PYTHONPATH="$ns:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv | tee "$out/gpu.txt"
python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)'
if [[ ${SKIP_TESTS:-0} != 1 ]]; then
  python3 -m pytest -q -p no:cacheprovider --noconftest -p plugins.kernels \
    tests/test_kernels_*.py 2>&1 | tee "$out/tests.log" || echo "kernel tests FAILED"
fi
python3 -m infinitecontext.kernels.bench --out "$out" "$@"
