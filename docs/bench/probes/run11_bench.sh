#!/usr/bin/env bash
# Run 11 (2026-12-06, session 6): the GPU kernel tests (with the Hopper split kernel's),
# then the MLA grid with the shipped kernels only (the baselines are run 10's): the
# 16-head rows run the Hopper (Gluon, warp-specialised) split kernel and time the Triton
# split kernel beside it ("no-Hopper").
set -uo pipefail
out=$1
timeout "${BENCH_S:-540}" kernels/run_on_gpu.sh "$out" --sections "${SECTIONS:-mla}" --no-baselines >"$out/bench.log" 2>&1
echo "rc $?"; grep -E "passed|failed|FAILED|error" "$out/tests.log" | tail -8; grep -v -i warn "$out/bench.log" | tail -40
