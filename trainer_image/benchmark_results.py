"""The trainer benchmark's results.json: written phase by phase, joined, and reported.

`Results` rewrites the file after every phase, so a run killed at its time limit keeps what
it measured. `merge` joins several processes' files (the throughput process and one per
passkey seed) and `report` turns one into Markdown tables and passkey heatmaps.
"""

from __future__ import annotations

import json
import logging
import math
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infinitecontext.kernels.benchmark_timing import release

log = logging.getLogger("benchmark")


class Results:
    """results.json, rewritten after every phase so a killed run keeps what it had."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"phases": {}}

    def record(self, name: str, value: Any) -> None:
        self.data["phases"][name] = value
        self.save()

    def save(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=2, default=str) + "\n")

    def guarded(self, name: str, phase: Callable[[], Any]) -> Any:
        started = time.monotonic()
        try:
            value = phase()
        except Exception as err:
            log.error("%s failed: %s", name, err)
            value = {
                "error": f"{type(err).__name__}: {err}",
                "trace": traceback.format_exc()[-2000:],
            }
        if isinstance(value, dict):
            value["wall_s"] = round(time.monotonic() - started, 1)
        self.record(name, value)
        release()  # give memory back to a process sharing the GPU
        return value


def normalize(data: dict[str, Any]) -> dict[str, Any]:
    """Any results.json as {"device", "torch", "phases" (throughput), "seeds": {seed:
    {"phases" (passkey), "plan", …}}}: merged files already are; a single process's file
    (the older single-seed ones included) holds its passkey phases for its `seed` (0)."""
    if "seeds" in data:
        return data
    phases = data.get("phases", {})
    passkey = {k: v for k, v in phases.items() if k.startswith("passkey/")}
    seeds: dict[str, Any] = {}
    if passkey:
        extra = {k: data[k] for k in ("plan", "passkey_training", "seconds_left") if k in data}
        seeds[str(data.get("seed", 0))] = {"phases": passkey} | extra
    return {
        "device": data.get("device"),
        "torch": data.get("torch"),
        "phases": {k: v for k, v in phases.items() if not k.startswith("passkey/")},
        "seeds": seeds,
    } | ({"passkey_training": data["passkey_training"]} if "passkey_training" in data else {})


def merge(files: list[Path]) -> dict[str, Any]:
    """One results document from several processes' (throughput, seed 0, seed 1 …)."""
    merged: dict[str, Any] = {"device": None, "torch": None, "phases": {}, "seeds": {}}
    for file in files:
        data = normalize(json.loads(file.read_text()))
        if data.get("device") not in (None, "cpu") or merged["device"] is None:
            merged["device"], merged["torch"] = data.get("device"), data.get("torch")
        merged["phases"] |= data.get("phases", {})
        merged["seeds"] |= data.get("seeds", {})
        if "passkey_training" in data and data["phases"]:
            merged["passkey_training"] = data["passkey_training"]
    merged["seeds"] = dict(sorted(merged["seeds"].items(), key=lambda kv: int(kv[0])))
    return merged


def _grid(value: dict[str, Any]) -> Any:
    from infinitecontext.trainer.evaluate import GridResult

    fields = ("task", "target", "yarn_factor", "lengths", "depths", "accuracy", "trials")
    return GridResult(
        **{f: value[f] for f in fields},
        errors={int(k): v for k, v in value.get("errors", {}).items()},
    )


def _k(n: int) -> str:
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


def _pct(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{100 * value:.0f}%"


def throughput_lines(phases: dict[str, Any]) -> list[str]:
    lines = [
        "| shape | variant | tokens/step | tokens/s | MFU | step (s) | peak GiB "
        "| 1 micro-batch/step: tokens/s (MFU) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    best: dict[str, dict[str, float]] = {}
    for key, value in phases.items():
        if not key.startswith("throughput/") or "tokens_per_s" not in value:
            continue
        _, shape, variant = key.split("/")
        seq_len = int(shape.split("@")[1])
        micro, batch = value.get("micro_batches", 1), value.get("batch")
        tokens = f"{micro} × {batch} × {seq_len}" if batch else "1 step"
        one = value.get("accum1")
        single = f"{one['tokens_per_s']:,} ({100 * one['mfu']:.1f}%)" if one else "—"
        lines.append(
            f"| {shape} | {variant} | {tokens} | {value['tokens_per_s']:,} "
            f"| {100 * value['mfu']:.1f}% | {value['step_s']} | {value['peak_gib']} | {single} |"
        )
        side = "hf" if variant.startswith("hf") else "ours"
        layout = f" ({micro} × {batch})" if batch else ""
        for group in (shape, shape + layout):  # the best of any layout, and each layout
            sides = best.setdefault(group, {})
            sides[side] = max(sides.get(side, 0.0), float(value["tokens_per_s"]))
    lines.append("")
    for group, sides in best.items():
        if "hf" in sides and "ours" in sides:
            lines.append(f"{group}: ours / transformers = {sides['ours'] / sides['hf']:.2f}×")
    lines.append("")
    return lines


def seed_lines(seed: str, phases: dict[str, Any], figures: Path, suffix: str) -> list[str]:
    from infinitecontext.trainer.evaluate import plot_heatmap

    lines = [f"### seed {seed}", ""]
    for key, value in phases.items():
        name = key.split("/", 1)[1]
        if "skipped" in value or "error" in value:
            why = value.get("skipped") or value["error"].splitlines()[0][:200]
            lines += [f"{name}: not run ({why})", ""]
        elif "accuracy" in value:
            grid = _grid(value)
            plot_heatmap(grid, figures / f"{name}{suffix}.png")
            lines.append(
                f"**{name}** (YaRN ×{grid.yarn_factor:g}, {grid.trials} trials × "
                f"{len(grid.depths)} depths per length, {value.get('wall_s', '?')} s)"
            )
            lines.append("")
            lines.append("| " + " | ".join(_k(n) for n in grid.lengths) + " |")
            lines.append("|" + "---|" * len(grid.lengths))
            by_length = grid.by_length
            lines.append("| " + " | ".join(_pct(by_length.get(n)) for n in grid.lengths) + " |")
            lines.append("")
        elif name == "dpo" and value.get("before"):
            before, after = value["before"]["mean"], value["after"]["mean"]
            margins = [h.get("rewards/margins", float("nan")) for h in value["history"]]
            lines.append(
                f"DPO ({len(value['history'])} steps, pairs of {value['pair_length']} tokens): "
                f"passkey at {value['length']} tokens {100 * before:.1f}% before, "
                f"{100 * after:.1f}% after; reward margin {margins[0]:.3f} → {margins[-1]:.3f}"
            )
            lines.append("")
        elif name.endswith("_train") and "steps" in value:
            loss = value["final"].get("loss", float("nan"))
            seeds = f", data seed {value['data_seed']}" if "data_seed" in value else ""
            lines.append(f"{name}: {value['steps']} steps in {value['train_s']} s{seeds}, "
                         f"final loss {loss:.4f}")  # fmt: skip
            lines.append("")
    return lines


SUMMARY_TABLES = {
    "stage1_eval": "stage 1, no YaRN",
    "stage1_eval_yarn": "stage 1, YaRN at eval only (×2/×4/×8)",
    "stage2_eval": "stage 2 (YaRN ×8 fine-tune)",
    "stage2_eval_long": "stage 2 (YaRN ×8 fine-tune)",
}


def summary_lines(seeds: dict[str, Any]) -> list[str]:
    """Per-seed accuracy by length (stage 1 with and without YaRN, stage 2) and the
    issue's targets over all seeds."""
    rows: dict[str, dict[str, dict[int, float]]] = {}
    for seed, entry in seeds.items():
        for key, value in entry["phases"].items():
            if "accuracy" not in value:
                continue
            name = key.split("/", 1)[1]
            table = SUMMARY_TABLES.get(name.rstrip("0123456789"), name)
            rows.setdefault(table, {}).setdefault(seed, {}).update(_grid(value).by_length)
    if not rows:
        return []
    lines = ["### passkey accuracy by length, per seed", ""]
    for table, by_seed in rows.items():
        lengths = sorted({n for acc in by_seed.values() for n in acc})
        lines.append(f"| {table} | " + " | ".join(_k(n) for n in lengths) + " |")
        lines.append("|---|" + "---|" * len(lengths))
        for seed, acc in by_seed.items():
            lines.append(f"| seed {seed} | " + " | ".join(_pct(acc.get(n)) for n in lengths) + " |")
        if len(by_seed) > 1:
            mean = [_mean([acc[n] for acc in by_seed.values() if n in acc]) for n in lengths]
            lines.append("| mean | " + " | ".join(_pct(m) for m in mean) + " |")
        lines.append("")
    final = rows.get(SUMMARY_TABLES["stage2_eval"], {})
    if final:
        short = [a for acc in final.values() for n, a in acc.items() if n <= 4096]
        at32 = [acc[32768] for acc in final.values() if 32768 in acc]
        lines.append(f"targets over {len(final)} seed(s): ≥ 95% up to 4k: "
                     f"{_verdict(short, 0.95)}; ≥ 90% at 32k: {_verdict(at32, 0.90)}")  # fmt: skip
        for n in (65536, 131072):
            values = [acc[n] for acc in final.values() if n in acc]
            if values:
                lines.append(f"{_k(n)}: " + ", ".join(_pct(v) for v in values) + " (aim 90%)")
        lines.append("")
    return lines


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _verdict(values: list[float], target: float) -> str:
    if not values:
        return "not measured"
    return f"{'met' if min(values) >= target else 'NOT met'} (lowest {_pct(min(values))})"


def report(results_file: Path, figures: Path) -> str:
    """Markdown tables (throughput, per-seed passkey grids, cross-seed summary) and a
    heatmap per evaluated grid (`<grid>_seed<N>.png` when there are several seeds)."""
    data = normalize(json.loads(results_file.read_text()))
    lines = [f"device: {data.get('device')}, torch {data.get('torch')}", ""]
    lines += throughput_lines(data.get("phases", {}))
    seeds = data.get("seeds", {})
    for seed, entry in seeds.items():
        suffix = f"_seed{seed}" if len(seeds) > 1 else ""
        lines += seed_lines(seed, entry["phases"], figures, suffix)
        walls = ", ".join(
            f"{k.split('/', 1)[1]} {v['wall_s']}" for k, v in entry["phases"].items()
            if "wall_s" in v
        )  # fmt: skip
        lines += [f"wall (s): {walls}", ""] if walls else []
    if seeds:
        lines += summary_lines(seeds)
    return "\n".join(lines)
