"""Host overhead of one eager `mla_decode_triton` call, before and after per-shape plans.

    python -m infinitecontext.kernels.mla_decode_host_benchmark --baseline-dir DIR --out OUT

DIR holds the launcher to compare against (`mla_decode.py` and `mla_decode_hopper.py` of an
earlier commit, e.g. `git show REV:kernels/mla_decode.py > DIR/mla_decode.py`), loaded as
modules of their own beside the current ones, so both run in one process on one GPU.

Per shape and version it prints and writes to OUT/mla_decode_host_overhead.json:

- eager µs: `triton.testing.do_bench` (median; L2 cleared before each call, no graph), so
  a call whose Python and launches outlast the kernels is timed by its host side;
- graph µs: `triton.testing.do_bench_cudagraph` (median), the kernels alone;
- eager − graph µs, and host µs: the Python call alone, timed on the CPU clock over
  CALLS_PER_SAMPLE calls while a `torch.cuda._sleep` kernel keeps the GPU queue busy (no
  launch waits for the GPU), median of SAMPLES samples.

Each shape's outputs of both versions are compared (relative error) before timing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import triton
from triton.testing import do_bench, do_bench_cudagraph

from infinitecontext.kernels import mla_decode
from infinitecontext.kernels.mla_decode_ref import LATENT_DIM, PAGE_SIZE

K = 1024
SOFTMAX_SCALE = 0.1352
CALLS_PER_SAMPLE = 100
SAMPLES = 7
SLEEP_CYCLES = 200_000_000
"""About 100 ms at the H100's clock: longer than CALLS_PER_SAMPLE calls of the slowest
launcher, so the GPU is still busy when the last call returns."""


@dataclass(frozen=True)
class Shape:
    heads: int
    batch: int
    context: int
    paged: bool

    def label(self) -> str:
        layout = f"paged {PAGE_SIZE}" if self.paged else "dense"
        return f"H={self.heads} B={self.batch} {self.context // K}k {layout}"


SHAPES = [
    Shape(heads, batch, context, paged)
    for heads in (16, 128)
    for batch, context, paged in (
        (1, 32 * K, False),
        (1, 32 * K, True),
        (1, 4 * K, False),
        (8, 32 * K, False),
    )
]


@dataclass
class Timing:
    eager_us: float
    graph_us: float
    eager_minus_graph_us: float
    host_us: float


def load_baseline(directory: Path) -> ModuleType:
    """The launcher in `directory` as a module of its own, its Hopper module beside it."""

    def load(name: str, path: Path) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and Triton's JIT look their module up
        spec.loader.exec_module(module)
        return module

    hopper = load("mla_decode_hopper_baseline", directory / "mla_decode_hopper.py")
    launcher = load("mla_decode_baseline", directory / "mla_decode.py")
    vars(launcher)["_hopper_module"] = lambda: hopper  # its own Hopper kernel
    return launcher


def make_inputs(shape: Shape) -> tuple[torch.Tensor, ...]:
    """bf16 queries and cache, every sequence at the full context; paged: pages in order."""
    b, h, ctx = shape.batch, shape.heads, shape.context
    q_lat = torch.randn(b, h, 512, dtype=torch.bfloat16, device="cuda")
    q_pe = torch.randn(b, h, 64, dtype=torch.bfloat16, device="cuda")
    lengths = torch.full((b,), ctx, dtype=torch.int32, device="cuda")
    cache = torch.randn(b, ctx, LATENT_DIM, dtype=torch.bfloat16, device="cuda") * 0.5
    if not shape.paged:
        return q_lat, q_pe, cache, lengths
    pages = b * ctx // PAGE_SIZE
    table = torch.arange(pages, dtype=torch.int32, device="cuda").reshape(b, -1)
    return q_lat, q_pe, cache.reshape(pages, PAGE_SIZE, LATENT_DIM), lengths, table


def host_us(call: Callable[[], Any]) -> float:
    """Median CPU time of one call, the GPU kept busy so that no launch waits for it."""
    samples = []
    for _ in range(SAMPLES):
        torch.cuda.synchronize()
        torch.cuda._sleep(SLEEP_CYCLES)
        start = time.perf_counter()
        for _ in range(CALLS_PER_SAMPLE):
            call()
        samples.append((time.perf_counter() - start) / CALLS_PER_SAMPLE * 1e6)
    torch.cuda.synchronize()
    return statistics.median(samples)


def time_call(call: Callable[[], Any]) -> Timing:
    call()
    torch.cuda.synchronize()
    eager = do_bench(call, return_mode="median") * 1e3
    graph = do_bench_cudagraph(call, return_mode="median") * 1e3
    return Timing(eager, graph, eager - graph, host_us(call))


def rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    diff = actual.double() - expected.double()
    return float(diff.norm() / expected.double().norm())


def measure(shape: Shape, baseline: ModuleType) -> dict[str, Any]:
    """Both versions on one shape's inputs: their agreement, then their timings."""
    inputs = make_inputs(shape)
    q_lat, q_pe, cache, lengths = inputs[:4]
    table = inputs[4] if shape.paged else None
    versions = {
        "before": lambda: baseline.mla_decode_triton(
            q_lat, q_pe, cache, lengths, SOFTMAX_SCALE, table
        ),
        "after": lambda: mla_decode.mla_decode_triton(
            q_lat, q_pe, cache, lengths, SOFTMAX_SCALE, table
        ),
    }
    before_out, _ = versions["before"]()
    after_out, _ = versions["after"]()
    takes_hopper = mla_decode.hopper_kernel_takes(q_lat, cache, table)
    row: dict[str, Any] = {
        **asdict(shape),
        "label": shape.label(),
        "split_kernel": "hopper" if takes_hopper else "triton",
        "rel_err_after_vs_before": rel_error(after_out, before_out),
    }
    for name, call in versions.items():
        row[name] = asdict(time_call(call))
    return row


def cpu_name() -> str:
    """The host CPU's model name (host overhead depends on it)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def run(baseline_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Every shape, both versions; the JSON is rewritten after each shape."""
    baseline = load_baseline(baseline_dir)
    rows: list[dict[str, Any]] = []
    result = {
        "gpu": torch.cuda.get_device_name(),
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "command": " ".join(sys.argv),
        "calls_per_host_sample": CALLS_PER_SAMPLE,
        "host_samples": SAMPLES,
        "rows": rows,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for shape in SHAPES:
        rows.append(measure(shape, baseline))
        print_row(rows[-1])
        torch.cuda.empty_cache()
        (out_dir / "mla_decode_host_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


HEADER = (
    "| shape | split kernel | eager µs before / after | graph µs before / after "
    "| eager − graph µs before / after | host µs before / after | rel. err |"
)


def print_row(row: dict[str, Any]) -> None:
    before, after = row["before"], row["after"]
    cells = [row["label"], row["split_kernel"]]
    for field in ("eager_us", "graph_us", "eager_minus_graph_us", "host_us"):
        cells.append(f"{before[field]:.1f} / {after[field]:.1f}")
    cells.append(f"{row['rel_err_after_vs_before']:.1e}")
    print("| " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    print(torch.cuda.get_device_name(), "torch", torch.__version__, "triton", triton.__version__)
    print(HEADER)
    print("|" + "---|" * 7)
    result = run(args.baseline_dir, args.out)
    print("\n" + HEADER)
    print("|" + "---|" * 7)
    for row in result["rows"]:
        print_row(row)


if __name__ == "__main__":
    main()
