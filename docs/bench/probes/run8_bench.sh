#!/usr/bin/env bash
# Run 8 (2026-12-06): the full kernel benchmark (MLA grid with baselines, norms, end to end).
set -uo pipefail
out=$1
SKIP_TESTS=1 timeout "${BENCH_S:-580}" kernels/run_on_gpu.sh "$out" --sections "${SECTIONS:-mla,norms,e2e}" >"$out/bench.log" 2>&1
echo "rc $?"; grep -v -i warn "$out/bench.log" | tail -45
