#!/usr/bin/env bash
# Run 11 (2026-12-06, session 6): the GPU kernel tests (with the Hopper split kernel's,
# under a timeout: a wrong mbarrier phase would hang), then the MLA grid with the shipped
# kernels only (the baselines are run 10's). The 16-head rows run the Hopper (Gluon,
# warp-specialised) split kernel and time the Triton split kernel beside it ("no-Hopper").
set -uo pipefail
out=$1
mkdir -p "$out"
ns=$(kernels/namespace_links.sh)
# Opt in: the kernel tests' bf16 16-head calls and the grid's 16-head rows run the Hopper
# kernel (the grid times the Triton split kernel beside it, "no-Hopper").
export ICX_MLA_HOPPER=1
PYTHONPATH="$ns:$PWD/tests" timeout "${TESTS_S:-240}" python3 -m pytest -q -p no:cacheprovider \
  --noconftest -p plugins.kernels tests/test_kernels_*.py >"$out/tests.log" 2>&1
echo "tests rc $?"; grep -E "passed|failed|FAILED|Error" "$out/tests.log" | tail -8
SKIP_TESTS=1 timeout "${BENCH_S:-330}" kernels/run_on_gpu.sh "$out" --sections "${SECTIONS:-mla}" \
  --no-baselines >"$out/bench.log" 2>&1
echo "bench rc $?"; grep -v -i warn "$out/bench.log" | tail -40
