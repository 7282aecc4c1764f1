"""Why the grid's 1M row (482 µs) differs from a fresh process's (411 µs): allocator state?

Prepared in run 7's session, not run: the device time ran out (BENCHMARKS.md).
"""

import json
import sys
from pathlib import Path

import torch

from infinitecontext.kernels import bench as kb

K = 1024
flush = kb._L2Flusher()
read = kb.measure_bandwidth(flush)["read_GBps"]
out = []


def once(tag: str, batch: int = 1, ctx: int = 1024 * K) -> None:
    row = kb.bench_mla_shape(batch, ctx, 16, flush, read, None, False)
    t = row["triton"]
    out.append({"tag": tag, "ctx": ctx, "batch": batch, **t})
    print(json.dumps(out[-1]), flush=True)


once("fresh")
once("fresh again")
once("after B=64 128k row", 64, 128 * K)
once("after a B=64 row, cached segments kept")
torch.cuda.empty_cache()
once("after empty_cache")
Path(sys.argv[1]).write_text(json.dumps(out, indent=1))
