#!/usr/bin/env bash
# Run 7 (2026-12-06): the kernel tests on the GPU, then the split-count probe. Results in OUT.
set -uo pipefail
out=$1
export PYTHONUNBUFFERED=1
ns=$(kernels/namespace_links.sh)
t0=$(date +%s)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $out/gpu.txt
PYTHONPATH="$ns:$PWD/tests" timeout "${TESTS_S:-150}" python3 -m pytest -q -p no:cacheprovider \
  --noconftest -p plugins.kernels tests/test_kernels_*.py >$out/tests.log 2>&1
echo "tests done at $(($(date +%s) - t0)) s"; tail -3 $out/tests.log
PYTHONPATH=$ns timeout "${PROBE_S:-150}" python3 docs/bench/probes/probe_splits.py "$out/splits.json" 2>&1 \
  | grep -v Warning | tee $out/splits.log
echo "probe done at $(($(date +%s) - t0)) s"
