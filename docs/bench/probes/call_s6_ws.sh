#!/usr/bin/env bash
# Session 6 probe call: the warp-specialised Gluon split kernel. A smoke run first, under a
# timeout (a wrong mbarrier phase hangs the GPU), then the timing of the variants it passed.
set -uo pipefail
out=$1
ns=$(kernels/namespace_links.sh)
export PYTHONPATH="$ns:$PWD/docs/bench/probes" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)'
timeout "${SMOKE_S:-150}" python3 docs/bench/probes/probe_variants_ws.py smoke "$out/ws_smoke_r${ROUND:-1}.json" "${ROUND:-1}" 2>&1 | grep -v -i warn | tail -40
echo "smoke rc ${PIPESTATUS[0]}"
timeout "${VAR_S:-400}" python3 docs/bench/probes/probe_variants_ws.py time "$out/ws_r${ROUND:-1}.json" "${ROUND:-1}" "$out/ws_smoke_r${ROUND:-1}.json" 2>&1 | grep -v -i warn | tail -150
echo "time rc ${PIPESTATUS[0]}"
if [ -n "${TIMELINE:-}" ]; then
  timeout "${TL_S:-120}" python3 docs/bench/probes/probe_variants_ws.py timeline "$out/ws_timeline_r${ROUND:-1}.json" "${ROUND:-1}" 2>&1 | grep -v -i warn | tail -20
  echo "timeline rc ${PIPESTATUS[0]}"
fi
