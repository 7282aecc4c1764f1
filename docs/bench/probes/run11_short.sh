#!/usr/bin/env bash
# Session 6's last device call (little device time was left): the MLA decode kernel tests
# on the GPU (the Hopper kernel's first), then the Hopper/Triton split-kernel A/B at 16 heads.
set -uo pipefail
out=$1
ns=$(kernels/namespace_links.sh)
export PYTHONUNBUFFERED=1 ICX_MLA_HOPPER=1
nvidia-smi --query-gpu=name --format=csv,noheader
PYTHONPATH="$ns:$PWD/tests" timeout "${TESTS_S:-100}" python3 -m pytest -q -p no:cacheprovider --noconftest \
  -p plugins.kernels tests/test_kernels_mla_decode_hopper.py tests/test_kernels_mla_decode.py 2>&1 | tee "$out/tests.log" | tail -8
echo "tests rc ${PIPESTATUS[0]}"
PYTHONPATH="$ns" timeout "${AB_S:-60}" python3 docs/bench/probes/ab_hopper.py "$out/ab_hopper.json" 2>&1 | grep -v -i warn | tail -20
