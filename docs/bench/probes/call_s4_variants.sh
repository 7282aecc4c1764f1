#!/usr/bin/env bash
# Session 4 probe calls (ROUND=1..4, SUB=b for 4b): probe_variants4.py (PDL on the split kernel, combine load order, folded
# scale, unmasked full tiles) beside the shipped kernel.
set -uo pipefail
out=$1
ns=$(kernels/namespace_links.sh)
export PYTHONPATH="$ns:$PWD/docs/bench/probes" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)'
timeout "${VAR_S:-420}" python3 docs/bench/probes/probe_variants4.py "$out/variants4_r${ROUND:-1}${SUB:-}.json" "${ROUND:-1}" ${SUB:+"$SUB"} 2>&1 | grep -v -i warn | tail -150
echo "variants rc ${PIPESTATUS[0]}"
