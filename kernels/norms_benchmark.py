"""RMSNorm, residual-add + RMSNorm and RoPE benchmark (bf16, forward).

    python -m infinitecontext.kernels.norms_benchmark --out DIR

Times the Triton kernels against the PyTorch references (`rms_norm_ref`, `add_rms_norm_ref`,
`apply_rope_ref_`) run eagerly and under `torch.compile`, for M rows × width. Each variant
is one call per CUDA graph replay after an L2 flush (`benchmark_timing`); RMSNorm is also
timed as a stream of 8 calls on distinct inputs in one graph, which takes the graph launch
out of a few-µs measurement. Writes DIR/norms.json and prints a line per shape.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from infinitecontext.kernels.benchmark_timing import (
    L2Flusher,
    environment,
    time_any,
    time_per_call,
)
from infinitecontext.kernels.rms_norm import add_rms_norm_triton, rms_norm_triton
from infinitecontext.kernels.rms_norm_ref import add_rms_norm_ref, rms_norm_ref
from infinitecontext.kernels.roofline import measure_bandwidth
from infinitecontext.kernels.rope import apply_rope_triton_
from infinitecontext.kernels.rope_ref import apply_rope_ref_

ROWS = (1, 64, 2048, 16384)
WIDTHS = (512, 1536, 2048)


def time_norms(flush: L2Flusher, copy_gbps: float) -> list[dict[str, Any]]:
    rows = []
    compiled_rms = torch.compile(rms_norm_ref)
    compiled_add = torch.compile(add_rms_norm_ref)
    compiled_rope = torch.compile(apply_rope_ref_)
    for m in ROWS:
        for width in WIDTHS:
            x = torch.randn(m, width, device="cuda", dtype=torch.bfloat16)
            res = torch.randn_like(x)
            w = torch.rand(width, device="cuda", dtype=torch.bfloat16) + 0.5
            rope_x = torch.randn(m, width // 64, 64, device="cuda", dtype=torch.bfloat16)
            rope_view = rope_x.transpose(0, 1)  # (heads, T=M, 64): cos/sin (M, 32) broadcast
            angles = torch.rand(m, 32, device="cuda")
            cos, sin = angles.cos(), angles.sin()
            elem = 2
            ops: dict[str, tuple[float, dict[str, Callable[[], Any]]]] = {
                "rms_norm": (
                    2 * m * width * elem,
                    {
                        "triton": partial(rms_norm_triton, x, w, 1e-6),
                        "eager": partial(rms_norm_ref, x, w, 1e-6),
                        "compile": partial(compiled_rms, x, w, 1e-6),
                    },
                ),
                "add_rms_norm": (
                    4 * m * width * elem,
                    {
                        "triton": partial(add_rms_norm_triton, x, res, w, 1e-6),
                        "eager": partial(add_rms_norm_ref, x, res, w, 1e-6),
                        "compile": partial(compiled_add, x, res, w, 1e-6),
                    },
                ),
                "rope": (
                    2 * m * width * elem + 2 * m * 32 * 4,
                    {
                        "triton": partial(apply_rope_triton_, rope_view, cos, sin),
                        "eager": partial(apply_rope_ref_, rope_view, cos, sin),
                        "compile": partial(compiled_rope, rope_view, cos, sin),
                    },
                ),
            }
            for op, (nbytes, variants) in ops.items():
                row: dict[str, Any] = {"op": op, "M": m, "width": width, "bytes": nbytes}
                for name, fn in variants.items():
                    timing, how = time_any(fn, flush)
                    row[name] = {"status": how}
                    if timing:
                        gbps = nbytes / timing.p50_ms / 1e6
                        row[name].update(
                            us=timing.p50_ms * 1e3, GBps=gbps, pct_copy_bw=100 * gbps / copy_gbps
                        )
                row["stream_us"] = _norm_stream_us(op, m, width, compiled_rms, flush)
                rows.append(row)
                print(_norm_line(row), flush=True)
    return rows


def _norm_stream_us(
    op: str, m: int, width: int, compiled_rms: Callable[..., Any], flush: L2Flusher
) -> dict[str, float]:
    """Per-call µs of Triton and compile when one graph runs 8 calls on distinct inputs.

    A single replay of a few-µs kernel mostly times the graph launch; in a model the norms
    run back to back with other kernels, which this stream timing resembles (as for MLA).
    """
    if op != "rms_norm":
        return {}
    xs = [torch.randn(m, width, device="cuda", dtype=torch.bfloat16) for _ in range(8)]
    w = torch.rand(width, device="cuda", dtype=torch.bfloat16) + 0.5
    result = {}
    norms: dict[str, Callable[..., Any]] = {"triton": rms_norm_triton, "compile": compiled_rms}
    for name, norm in norms.items():
        timing, _ = time_per_call(partial(_norm_of, norm, w), xs, flush)
        if timing:
            result[name] = timing.p50_ms * 1e3
    return result


def _norm_of(norm: Callable[..., Any], weight: torch.Tensor, x: torch.Tensor) -> Any:
    return norm(x, weight, 1e-6)


def _norm_line(row: dict[str, Any]) -> str:
    def us(name: str) -> str:
        return f"{row[name].get('us', float('nan')):9.2f}"

    pct = row["triton"].get("pct_copy_bw", float("nan"))
    return (
        f"{row['op']:>13} M={row['M']:>6} W={row['width']:>5}  triton {us('triton')} us "
        f"({pct:5.1f}% copy BW)  eager {us('eager')}  compile {us('compile')}"
        + "".join(f"  stream {k} {v:.2f}" for k, v in row.get("stream_us", {}).items())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    flush = L2Flusher()
    report: dict[str, Any] = environment() | {"bandwidth": measure_bandwidth(flush)}
    print(f"GPU {report['gpu']}: {json.dumps(report['bandwidth'])}", flush=True)
    report["norms"] = time_norms(flush, report["bandwidth"]["copy_GBps"])
    json_path = args.out / "norms.json"
    json_path.write_text(json.dumps(report, indent=1))
    print(f"wrote {json_path}", flush=True)


if __name__ == "__main__":
    main()
