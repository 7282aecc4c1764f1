#!/usr/bin/env bash
# Session 3, call 1: split-kernel variants + timelines, then the 1M allocator probe.
set -uo pipefail
out=$1
ns=$(kernels/namespace_links.sh)
export PYTHONPATH="$ns:$PWD/scratch" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout "${VAR_S:-200}" python3 scratch/probe_variants.py "$out/variants.json" "${CTXS:-128,32,1024}" 2>&1 | grep -v -i warn | tail -70
echo "variants rc ${PIPESTATUS[0]}"
timeout "${P1M_S:-120}" python3 docs/bench/probes/probe_1m.py "$out/probe_1m.json" 2>&1 | grep -v -i warn | tail -12
echo "probe_1m rc ${PIPESTATUS[0]}"
