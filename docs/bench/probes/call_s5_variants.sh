#!/usr/bin/env bash
# Session 5 probe calls beside the shipped kernel: PROBE=5 (the split kernel's tiles by
# TMA), 6 (a dynamic tail inside the pipelined loop), 7 (the call taken apart), _gluon (the
# split kernel in Gluon).
set -uo pipefail
out=$1
ns=$(kernels/namespace_links.sh)
export PYTHONPATH="$ns:$PWD/docs/bench/probes" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)'
timeout "${VAR_S:-480}" python3 docs/bench/probes/probe_variants${PROBE:-5}.py "$out/variants${PROBE:-5}_r${ROUND:-1}.json" "${ROUND:-1}" 2>&1 | grep -v -i warn | tail -150
echo "variants rc ${PIPESTATUS[0]}"
