#!/usr/bin/env bash
# Session 4: Nsight Compute on the run-10 kernels (H=16, B=1, 128k and H=128, B=8, 32k).
set -uo pipefail
out=$1
ns=$(kernels/namespace_links.sh)
export PYTHONPATH="$ns" PYTHONUNBUFFERED=1
for case in "16 1 131072 mla_h16_b1_128k_run10" "128 8 32768 mla_h128_b8_32k_run10"; do
  set -- $case
  timeout 150 ncu --clock-control none --kernel-name regex:'_split_kernel|_combine_kernel' \
    --launch-skip 4 --launch-count 2 --section SpeedOfLight --section LaunchStats \
    --section WarpStateStats --section MemoryWorkloadAnalysis --section Occupancy \
    python3 -m infinitecontext.kernels.profile mla --heads "$1" --batch "$2" --context "$3" --calls 4 \
    > "$out/$4.txt" 2>&1
  echo "$4 rc $?"
  grep -E "_split_kernel|_combine_kernel|Duration|DRAM Throughput|Memory Throughput|Compute \(SM\)|Registers Per|Achieved Occupancy" "$out/$4.txt" | head -30
done
