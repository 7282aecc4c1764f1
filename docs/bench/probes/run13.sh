#!/usr/bin/env bash
# Run 13 (session 7): the Hopper split kernel on by default (B <= 4, its own split counts).
# The kernel tests on the GPU with the default environment, the MLA grid with the shipped
# kernels only (the eager/compile/naive baselines are run 10's), then end to end if time is
# left.
set -uo pipefail
out=$1
mkdir -p "$out"
ns=$(kernels/namespace_links.sh)
export PYTHONUNBUFFERED=1
unset ICX_MLA_HOPPER
t0=$SECONDS
PYTHONPATH="$ns:$PWD/tests" timeout "${TESTS_S:-240}" python3 -m pytest -q -rA -p no:cacheprovider \
  --noconftest -p plugins.kernels tests/test_kernels_*.py >"$out/tests.log" 2>&1
echo "kernel tests rc $? ($((SECONDS - t0)) s)"
grep -E "^(FAILED|ERROR)|hopper|passed|failed" "$out/tests.log" | grep -v "^PASSED tests/test_kernels_mla_decode.py" | tail -30
SKIP_TESTS=1 timeout "${BENCH_S:-200}" kernels/run_on_gpu.sh "$out" --sections mla --no-baselines >"$out/bench.log" 2>&1
echo "bench rc $? ($((SECONDS - t0)) s)"; grep -v -i warn "$out/bench.log" | tail -30
left=$((570 - SECONDS))
if ((left > 60)); then
  SKIP_TESTS=1 timeout "$left" kernels/run_on_gpu.sh "$out/e2e" --sections e2e --no-baselines >"$out/e2e.log" 2>&1
  echo "e2e rc $? ($((SECONDS - t0)) s)"; grep -v -i warn "$out/e2e.log" | tail -15
fi
