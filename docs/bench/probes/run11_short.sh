#!/usr/bin/env bash
# Session 6's last device call (little device time was left): the Hopper/Triton split-kernel
# A/B at 16 heads, then the MLA decode kernel tests (the Hopper kernel's among them).
set -uo pipefail
out=$1
ns=$(kernels/namespace_links.sh)
nvidia-smi --query-gpu=name --format=csv,noheader
PYTHONPATH="$ns" timeout "${AB_S:-60}" python3 docs/bench/probes/ab_hopper.py "$out/ab_hopper.json" 2>&1 | grep -v -i warn | tail -20
PYTHONPATH="$ns:$PWD/tests" timeout "${TESTS_S:-120}" python3 -m pytest -q -p no:cacheprovider --noconftest \
  -p plugins.kernels tests/test_kernels_mla_decode_hopper.py tests/test_kernels_mla_decode.py >"$out/tests.log" 2>&1
echo "tests rc $?"; tail -6 "$out/tests.log"
