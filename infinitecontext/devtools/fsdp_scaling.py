"""FSDP2 scaling benchmark: one recipe on 1, 2, 4 and 8 GPUs of one host.

    python -m infinitecontext.devtools.fsdp_scaling --gpus 1,2,4,8 \\
        --strategies full_shard,hybrid_shard,ddp --steps 20 --out bench-out/fsdp

Each run is launched exactly as the operator launches a TrainingRun's Job: the
command comes from `operator.workloads.jobs.launcher` (torchrun with `$(NNODES)`,
`$(NODE_RANK)`, `$(NPROC_PER_NODE)`, `$(MASTER_ADDR)` and `$(MASTER_PORT)`), and those
variables are set and expanded here as the Job's environment and the kubelet would.

Weak scaling: every GPU does the same work per step (`--tokens-per-gpu` tokens, the
recipe's micro-batch), so the ideal is N times the one-GPU tokens/s. Reported per run:
tokens/s per GPU, MFU, peak memory per GPU (rank 0) and scaling efficiency against the
one-GPU full_shard run, as a table and as JSON (`--out`/scaling.json). The first steps
compile and warm up; the trainer's meter leaves out the first step, and this takes the
mean of the last half of the steps.

Last, DCP resharding: the checkpoint of the largest full_shard run resumes on half as
many GPUs for `--resume-steps` steps; the table shows the loss before and after.

NVLink multicast stays off (NCCL_NVLS_ENABLE=0 and the like): some hosts share GPUs,
and multicast objects can take them out of service.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from infinitecontext.crds.models import Resources
from infinitecontext.operator.workloads.jobs import launcher

REPO = Path(__file__).resolve().parents[2]
NO_MULTICAST = {
    "NCCL_NVLS_ENABLE": "0",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
    "NVSHMEM_DISABLE_NVLS": "1",
}
STRATEGIES = ("full_shard", "hybrid_shard", "ddp")


def job_command(argv: list[str], gpus: int, port: int) -> tuple[list[str], dict[str, str]]:
    """The operator's launch line for one node of `gpus` GPUs, expanded as a kubelet would."""
    env = {
        "NNODES": "1",
        "NODE_RANK": "0",
        "NPROC_PER_NODE": str(gpus),
        "MASTER_ADDR": "localhost",
        "MASTER_PORT": str(port),
    }
    line = launcher(argv, nodes=1, resources=Resources(gpus_per_node=gpus))
    expanded = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], word) for word in line]
    if expanded and expanded[0] == "torchrun" and shutil.which("torchrun") is None:
        expanded[:1] = [sys.executable, "-m", "torch.distributed.run"]
    return expanded, env


def recipe_for(
    base: dict[str, Any], gpus: int, strategy: str, steps: int, tokens_per_gpu: int, out: Path
) -> dict[str, Any]:
    recipe = json.loads(json.dumps(base))  # a deep copy
    recipe["output_dir"] = str(out)
    recipe["train"] |= {"steps": steps, "tokens_per_step": tokens_per_gpu * gpus, "log_every": 1}
    recipe["parallel"] = {**recipe.get("parallel", {}), "strategy": strategy}
    recipe["checkpoint"] = {"every_steps": steps, "keep": 1}
    recipe.pop("mlflow", None)
    return recipe


def train(recipe: dict[str, Any], gpus: int, port: int, *extra: str) -> list[dict[str, Any]]:
    out = Path(recipe["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    config = out / "recipe.yaml"
    config.write_text(yaml.safe_dump(recipe))
    argv = [sys.executable, "-m", "infinitecontext.cli", "train", "sft", "--config", str(config)]
    command, job_env = job_command([*argv, *extra], gpus, port)
    env = os.environ | job_env | NO_MULTICAST
    env.pop("MLFLOW_TRACKING_URI", None)
    with (out / "train.log").open("a") as log:
        subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    return read_metrics(out)


def read_metrics(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def summary(rows: list[dict[str, Any]], gpus: int) -> dict[str, float]:
    timed = [r for r in rows if "tokens_per_s" in r]
    tail = timed[len(timed) // 2 :] or timed
    mean = lambda key: sum(r.get(key, 0.0) for r in tail) / max(len(tail), 1)  # noqa: E731
    return {
        "tokens_per_s": mean("tokens_per_s"),
        "tokens_per_s_per_gpu": mean("tokens_per_s") / gpus,
        "mfu": mean("mfu"),
        "peak_memory_gib": max((r.get("peak_memory_gib", 0.0) for r in rows), default=0.0),
        "final_loss": rows[-1]["loss"],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    base = yaml.safe_load(Path(args.recipe).read_text())
    results: list[dict[str, Any]] = []
    port = args.port
    for gpus in args.gpus:
        for strategy in args.strategies:
            if gpus == 1 and strategy != "full_shard":
                continue  # one GPU: all three are the same
            out = args.out / f"{strategy}-{gpus}"
            shutil.rmtree(out, ignore_errors=True)
            recipe = recipe_for(base, gpus, strategy, args.steps, args.tokens_per_gpu, out)
            port += 1
            row = {"gpus": gpus, "strategy": strategy, **summary(train(recipe, gpus, port), gpus)}
            results.append(row)
            print(json.dumps(row), flush=True)
    one = next((r for r in results if r["gpus"] == 1), None)
    for row in results:
        if one:
            row["scaling_efficiency"] = row["tokens_per_s_per_gpu"] / one["tokens_per_s_per_gpu"]
            row["mfu_points_vs_one_gpu"] = 100 * (row["mfu"] - one["mfu"])
    return {"runs": results, "reshard": reshard(args, base, port + 1)}


def reshard(args: argparse.Namespace, base: dict[str, Any], port: int) -> dict[str, Any] | None:
    """Resume the largest full_shard run's last checkpoint on half as many GPUs."""
    largest = max((g for g in args.gpus if g > 1), default=None)
    if largest is None or args.resume_steps <= 0:
        return None
    source = args.out / f"full_shard-{largest}"
    target, gpus = args.out / f"resharded-{largest}-to-{largest // 2}", largest // 2
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source / "checkpoints", target / "checkpoints")
    steps = args.steps + args.resume_steps
    # the same global batch as the source run, so the data stream continues unchanged
    recipe = recipe_for(base, largest, "full_shard", steps, args.tokens_per_gpu, target)
    after = [r for r in train(recipe, gpus, port) if r["step"] > args.steps]
    return {
        "from_gpus": largest,
        "to_gpus": gpus,
        "resumed_at_step": args.steps,
        "loss_before": [r["loss"] for r in read_metrics(source)][-3:],
        "loss_after": [r["loss"] for r in after][:3],
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        "| GPUs | strategy | tokens/s | tokens/s per GPU | MFU | peak GiB/GPU | scaling |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['gpus']} | {r['strategy']} | {r['tokens_per_s']:,.0f} "
            f"| {r['tokens_per_s_per_gpu']:,.0f} | {100 * r['mfu']:.1f}% "
            f"| {r['peak_memory_gib']:.1f} | {100 * r.get('scaling_efficiency', 0):.1f}% |"
        )
    if result["reshard"]:
        shard = result["reshard"]
        lines.append(
            f"\nDCP reshard {shard['from_gpus']} → {shard['to_gpus']} GPUs at step "
            f"{shard['resumed_at_step']}: loss before {shard['loss_before']}, "
            f"after {shard['loss_after']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    csv_ints = lambda text: [int(x) for x in text.split(",")]  # noqa: E731
    parser.add_argument("--gpus", type=csv_ints, default=[1, 2, 4, 8])
    parser.add_argument("--strategies", type=lambda t: t.split(","), default=list(STRATEGIES))
    parser.add_argument("--recipe", default=str(REPO / "recipes" / "1b-8k.yaml"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--tokens-per-gpu", type=int, default=65_536)
    parser.add_argument("--resume-steps", type=int, default=5)
    parser.add_argument("--port", type=int, default=29_400)
    parser.add_argument("--out", type=Path, default=Path("bench-out/fsdp-scaling"))
    args = parser.parse_args(argv)
    unknown = set(args.strategies) - set(STRATEGIES)
    if unknown:
        parser.error(f"unknown strategies {sorted(unknown)}; choose from {STRATEGIES}")
    result = run(args)
    (args.out / "scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
