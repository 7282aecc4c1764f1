#!/usr/bin/env bash
# Run 12 (session 7): the packaged Hopper split kernel's first GPU run. Its tests (under a
# timeout: a wrong mbarrier phase would hang); if they fail, the per-head diagnosis; the
# Hopper/Triton A/B; the other kernel tests with the Hopper kernel on; the MLA grid.
set -uo pipefail
out=$1
mkdir -p "$out"
ns=$(kernels/namespace_links.sh)
export PYTHONUNBUFFERED=1 ICX_MLA_HOPPER=1
nvidia-smi --query-gpu=name --format=csv,noheader
python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)'
t0=$SECONDS
PYTHONPATH="$ns:$PWD/tests" timeout "${HOPPER_S:-120}" python3 -m pytest -q -rA -p no:cacheprovider \
  --noconftest -p plugins.kernels tests/test_kernels_mla_decode_hopper.py >"$out/hopper_tests.log" 2>&1
rc=$?
echo "hopper tests rc $rc ($((SECONDS - t0)) s)"; grep -E "^(PASSED|FAILED|SKIPPED|ERROR)|passed|failed" "$out/hopper_tests.log" | tail -20
if [[ $rc != 0 ]]; then
  grep -E "^E " "$out/hopper_tests.log" | head -30
  PYTHONPATH="$ns" timeout "${DIAG_S:-90}" python3 docs/bench/probes/diag_hopper.py "$out/diag.json" 2>&1 | grep -v -i warn | cut -c1-600
  echo "diag done ($((SECONDS - t0)) s)"
fi
PYTHONPATH="$ns" timeout "${AB_S:-80}" python3 docs/bench/probes/ab_hopper.py "$out/ab_hopper.json" 2>&1 | grep -v -i warn | tail -20
echo "ab done ($((SECONDS - t0)) s)"
if [[ $rc == 0 ]]; then
  PYTHONPATH="$ns:$PWD/tests" timeout "${TESTS_S:-150}" python3 -m pytest -q -p no:cacheprovider \
    --noconftest -p plugins.kernels tests/test_kernels_*.py >"$out/tests.log" 2>&1
  echo "kernel tests rc $? ($((SECONDS - t0)) s)"; grep -E "passed|failed|FAILED" "$out/tests.log" | tail -8
  left=$((560 - SECONDS))
  SKIP_TESTS=1 timeout "$left" kernels/run_on_gpu.sh "$out" --sections mla --no-baselines >"$out/bench.log" 2>&1
  echo "bench rc $? ($((SECONDS - t0)) s)"; grep -v -i warn "$out/bench.log" | tail -40
fi
