#!/usr/bin/env bash
# Print a fresh directory holding `infinitecontext` as links into this checkout (its top-level
# modules, kernels/ and model/): put it on PYTHONPATH where python3 has torch and Triton but
# not this package (the GPU machine). Run from the repository root.
set -euo pipefail
ns=$(mktemp -d)
mkdir -p "$ns/infinitecontext"
ln -s "$PWD"/infinitecontext/*.py "$ns/infinitecontext/"
ln -s "$PWD/kernels" "$ns/infinitecontext/kernels"
ln -s "$PWD/model" "$ns/infinitecontext/model"
echo "$ns"
