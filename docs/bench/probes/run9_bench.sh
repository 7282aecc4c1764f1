#!/usr/bin/env bash
# Run 9 (2026-12-06, session 3): the GPU kernel tests, then the full kernel benchmark (MLA
# grid with baselines, norms, end to end) with interleaved 16-head chunks and the read flush.
set -uo pipefail
out=$1
timeout "${BENCH_S:-570}" kernels/run_on_gpu.sh "$out" --sections "${SECTIONS:-mla,norms,e2e}" >"$out/bench.log" 2>&1
echo "rc $?"; grep -E "passed|failed|FAILED|error" "$out/tests.log" | tail -5; grep -v -i warn "$out/bench.log" | tail -45
