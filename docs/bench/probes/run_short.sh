#!/usr/bin/env bash
# One short device call: kernel tests, MLA A/B probe, SDPA layouts, trainer throughput +
# profile. Results in OUT; the logs in OUT/logs.tar.
set -uo pipefail
out=$1
export PYTHONUNBUFFERED=1
ns=$(kernels/namespace_links.sh)
logs=/tmp/logs
mkdir -p $logs
t0=$(date +%s)
stamp() { echo "$1 done at $(($(date +%s) - t0)) s" | tee -a $logs/stamps; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $logs/gpu.txt
PYTHONPATH="$ns:$PWD/tests" timeout "${TESTS_S:-100}" python3 -m pytest -q -p no:cacheprovider \
  --noconftest -p plugins.kernels tests/test_kernels_*.py >$logs/tests.log 2>&1
stamp tests
PYTHONPATH=$ns timeout "${PROBE_S:-100}" python3 docs/bench/probes/probe_mla2.py "$out/probe2.json" 2>&1 \
  | grep -v Warning >$logs/probe2.log
stamp probe2
timeout "${SDPA_S:-20}" python3 docs/bench/probes/probe_sdpa.py "$out/sdpa.json" >$logs/sdpa.log 2>&1
stamp sdpa
BENCH_ARGS="--phases throughput,profile --presets ${PRESETS:-small,1b}" timeout "${TRAINER_S:-190}" \
  trainer_image/run_on_gpu.sh /tmp/tp 200 throughput >$logs/tp.log 2>&1
cp /tmp/tp/results.json "$out/trainer_results.json"
stamp trainer
tar cf "$out/logs.tar" -C /tmp logs
tail -3 $logs/tests.log
cat $logs/stamps $logs/probe2.log $logs/sdpa.log
grep -E "throughput/|profile/" $logs/tp.log | cut -c1-700
