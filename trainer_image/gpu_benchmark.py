"""The trainer's GPU benchmark (one device lease per call), results as JSON.

    python -m infinitecontext.trainer.gpu_benchmark --out OUT [--budget-s 480] [--smoke]
        [--phases throughput,profile,passkey] [--presets small,1b] [--seed N]
        [--concurrent K] [--port-base P]
    python -m infinitecontext.trainer.gpu_benchmark --merge A.json B.json … --merged OUT.json
    python -m infinitecontext.trainer.gpu_benchmark --report OUT.json --figures DIR

Phases: `throughput` and `profile` (throughput_benchmark.py), `passkey` (passkey_study.py).
Every phase is guarded: a failure is recorded and the next phase runs. `--merge` joins the
results of several processes (throughput + one file per seed) and `--report` turns them
into tables and heatmaps (benchmark_results.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import torch

from infinitecontext.trainer.benchmark_results import Results, log, merge, report
from infinitecontext.trainer.parallel import init_world
from infinitecontext.trainer.passkey_study import PORTS, Budget, passkey_phase
from infinitecontext.trainer.throughput_benchmark import profile_phase, throughput_phase


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    parser.add_argument("--report", type=Path, help="results.json to turn into figures/tables")
    parser.add_argument("--figures", type=Path, default=Path("figures"))
    parser.add_argument("--merge", type=Path, nargs="+", help="results.json files to join")
    parser.add_argument("--merged", type=Path, help="where --merge writes the joined file")
    parser.add_argument("--budget-s", type=float, default=480)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, for a CPU dry run")
    parser.add_argument("--phases", default="throughput,passkey")
    parser.add_argument("--skip-throughput", action="store_true", help="= --phases passkey")
    parser.add_argument("--presets", default="", help="throughput: only these presets (a,b)")
    parser.add_argument("--seed", type=int, default=0, help="passkey study seed")
    parser.add_argument("--concurrent", type=int, default=1, help="processes sharing the GPU")
    parser.add_argument("--port-base", type=int, default=0, help="process-group ports from here")
    args = parser.parse_args()
    if args.merge:
        if args.merged is None:
            parser.error("--merge needs --merged")
        args.merged.write_text(json.dumps(merge(args.merge), indent=2, default=str) + "\n")
        return
    if args.report:
        print(report(args.report, args.figures))
        return
    if args.out is None:
        parser.error("--out is required")
    phases = set(args.phases.split(",")) - ({"throughput"} if args.skip_throughput else set())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    PORTS[:] = range(args.port_base, args.port_base + 50) if args.port_base else []
    budget = Budget(args.budget_s)
    args.out.mkdir(parents=True, exist_ok=True)
    results = Results(args.out / "results.json")
    results.data["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    results.data["torch"] = torch.__version__
    results.data["seed"] = args.seed
    results.save()
    small_rate, use_compile = 0.0, False
    if phases & {"throughput", "profile"} and (torch.cuda.is_available() or args.smoke):
        world = init_world()
        if "throughput" in phases:
            only = frozenset(filter(None, args.presets.split(",")))
            small_rate, use_compile = throughput_phase(results, world.mesh, args.smoke, only)
        if "profile" in phases:
            profile_phase(results, world.mesh, args.smoke)
        torch.distributed.destroy_process_group()
    if "passkey" in phases:
        passkey_phase(
            results, budget, small_rate, use_compile, args.out, args.smoke,
            args.seed, args.concurrent,
        )  # fmt: skip
    log.info("done; %.0f s of budget left", budget.left)


if __name__ == "__main__":
    main()
