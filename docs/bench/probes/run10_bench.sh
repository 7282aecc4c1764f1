#!/usr/bin/env bash
# Run 10 (2026-12-06, session 4): the GPU kernel tests, then the full kernel benchmark (MLA
# grid with baselines, norms, end to end): 16-head tiles launched early (PDL), 64-head tiles
# with only the ragged last tile masked, the combine's loads hoisted.
set -uo pipefail
out=$1
timeout "${BENCH_S:-570}" kernels/run_on_gpu.sh "$out" --sections "${SECTIONS:-mla,norms,e2e}" >"$out/bench.log" 2>&1
echo "rc $?"; grep -E "passed|failed|FAILED|error" "$out/tests.log" | tail -5; grep -v -i warn "$out/bench.log" | tail -45
