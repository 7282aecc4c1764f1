#!/usr/bin/env bash
# mypy cannot follow setuptools' folder mapping (infinitecontext.trainer lives in
# trainer_image/), so we lay the namespace out as links under build/typecheck and
# check that tree (errors name build/typecheck/infinitecontext/<module>/…).
set -euo pipefail
venv=${1:-.venv}
root=build/typecheck/infinitecontext
rm -rf build/typecheck && mkdir -p "$root"
ln -s "$PWD"/infinitecontext/* "$root"/
declare -A folders=(
  [operator]=operator [crds]=crds [model]=model [kernels]=kernels
  [trainer]=trainer_image [server]=server_image [slurm_bridge]=slurm_bridge
)
for name in "${!folders[@]}"; do ln -s "$PWD/${folders[$name]}" "$root/$name"; done
"$venv/bin/mypy" -p infinitecontext
