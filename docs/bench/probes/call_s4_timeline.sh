#!/usr/bin/env bash
# Session 4: per-program timeline of 8 back-to-back calls at H=16, B=1, 128k (probe_timeline4.py).
set -uo pipefail
out=$1
ns=$(kernels/namespace_links.sh)
export PYTHONPATH="$ns:$PWD/docs/bench/probes" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout "${TL_S:-300}" python3 docs/bench/probes/probe_timeline4.py "$out/timeline4.json" 2>&1 | grep -v -i warn | tail -40
echo "timeline rc ${PIPESTATUS[0]}"
