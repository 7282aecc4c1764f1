#!/usr/bin/env bash
# Trains and evaluates the demo's base model (examples/base-model/) on one GPU:
# stage 1 (recipes/demo-base-text.yaml, language modelling on the natural-text corpus),
# stage 2 (recipes/demo-base.yaml, retrieval on generated phrasings), then passkey
# accuracy on held-out phrasings, the training family and our fixed template, and
# held-out perplexity. Build the corpus first:
#   python -m infinitecontext.trainer.corpus --out corpus --fetch-python-doc
#   recipes/demo-base.sh OUT_DIR
# OUT_DIR gets model.tar (the exported HF directory), results.json and train.log.
# DEADLINE_S (seconds from the start) skips the evaluations that would start later.
# Works with the package installed (`pip install -e .`) or, on a bare machine with
# PyTorch and tokenizers, from the checkout (the namespace is laid out with links).
set -euo pipefail
out=${1:?usage: recipes/demo-base.sh OUT_DIR}
py=${PYTHON:-python3}
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
mkdir -p "$out"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
if ! "$py" -c 'import infinitecontext.trainer.sft' 2>/dev/null; then
  ns=/tmp/icx-ns/infinitecontext
  mkdir -p "$ns"
  for pair in model:model kernels:kernels trainer:trainer_image; do
    ln -sfn "$repo/${pair#*:}" "$ns/${pair%%:*}"
  done
  export PYTHONPATH=/tmp/icx-ns
fi
icx_train() { "$py" -c 'from infinitecontext.trainer.cli import train_app; train_app()' "$@"; }
log=$out/train.log
SECONDS=0
icx_train sft --config recipes/demo-base-text.yaml 2>&1 | tee "$log"
stage1_s=$SECONDS
icx_train sft --config recipes/demo-base.yaml 2>&1 | tee -a "$log"
stage2_s=$((SECONDS - stage1_s))
tar -C runs/demo-base -cf "$out/model.tar" model
model=runs/demo-base/model
evals=runs/demo-base/eval
icx_eval() {  # an evaluation, unless the deadline has passed; a failed one is reported
  if [ $SECONDS -lt "${DEADLINE_S:-1000000}" ]; then
    "$py" -c 'from infinitecontext.trainer.cli import eval_app; eval_app()' "$@" \
      || echo "evaluation failed: $*"
  fi
}
grid=(--lengths 1024,2048,4096 --trials 10)
mkdir -p $evals
for stage in demo-base-text demo-base; do
  icx_eval perplexity --model runs/$stage/model --text corpus/heldout.jsonl \
    >"$evals/perplexity-$stage.json"
done
# The most telling grids first: DEADLINE_S skips the ones at the end.
for seed in 1234 1235; do
  icx_eval passkey --model $model --templates heldout --haystack corpus/heldout.jsonl \
    "${grid[@]}" --seed $seed --out $evals/heldout-natural-$seed 2>&1 | tee -a "$log"
  icx_eval passkey --model $model --templates heldout "${grid[@]}" --seed $seed \
    --out $evals/heldout-prose-$seed 2>&1 | tee -a "$log"
  icx_eval passkey --model $model --templates fixed "${grid[@]}" --seed $seed \
    --out $evals/fixed-$seed 2>&1 | tee -a "$log"
done
for task in multikey multiquery; do
  icx_eval passkey --model $model --templates heldout --task $task "${grid[@]}" \
    --out $evals/heldout-$task-1234 2>&1 | tee -a "$log"
done
icx_eval passkey --model $model --templates varied --haystack corpus/heldout.jsonl \
  "${grid[@]}" --out $evals/varied-natural-1234 2>&1 | tee -a "$log"
icx_eval passkey --model $model --templates heldout --lengths 8192 --trials 10 \
  --yarn-factor 2 --out $evals/heldout-prose-yarn2-1234 2>&1 | tee -a "$log"
"$py" - "$out/results.json" "$stage1_s" "$stage2_s" <<'PY'
import glob, json, os, sys, torch
evals = "runs/demo-base/eval"
results = {"stage1_s": int(sys.argv[2]), "stage2_s": int(sys.argv[3]),
           "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
           "grids": {}, "perplexity": {}}
for path in sorted(glob.glob(f"{evals}/*/*.json")):
    results["grids"][os.path.basename(os.path.dirname(path))] = json.load(open(path))
for path in sorted(glob.glob(f"{evals}/perplexity-*.json")):
    text = open(path).read().strip()
    if text:
        results["perplexity"][path.split("perplexity-")[1][:-5]] = json.loads(text)
json.dump(results, open(sys.argv[1], "w"), indent=2)
for name, grid in results["grids"].items():
    print(f"{name:32s}", {k: round(v, 3) for k, v in grid["by_length"].items()})
print(results["perplexity"], results["stage1_s"], results["stage2_s"])
PY
