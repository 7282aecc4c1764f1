"""The real SFT entrypoint (run_sft) with recipes/1b-8k.yaml on one H100: 20 steps of
8 sequences (4 micro-batches of 2), metrics.jsonl's tokens/s and MFU per logged step."""

import dataclasses
import json
import sys
import time
from pathlib import Path

from infinitecontext.trainer import recipe as recipes
from infinitecontext.trainer.recipe import SFTRecipe
from infinitecontext.trainer.sft import run_sft

out = Path(sys.argv[1])
base = recipes.load(Path("recipes/1b-8k.yaml"), SFTRecipe)
train = dataclasses.replace(base.train, steps=20, tokens_per_step=65536, log_every=2)
recipe = dataclasses.replace(
    base,
    output_dir="/tmp/sft-1b",
    train=train,
    optim=dataclasses.replace(base.optim, warmup_steps=2),
    checkpoint=dataclasses.replace(base.checkpoint, every_steps=1000),
)
t0 = time.monotonic()
result = run_sft(recipe, resume=False)
print("wall", round(time.monotonic() - t0, 1), "final", result.metrics, flush=True)
lines = Path("/tmp/sft-1b/metrics.jsonl").read_text().splitlines()
(out / "metrics.jsonl").write_text("\n".join(lines) + "\n")
for line in lines:
    m = json.loads(line)
    print({k: m.get(k) for k in ("step", "loss", "tokens_per_s", "mfu", "seq_len")}, flush=True)
