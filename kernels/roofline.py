"""The GPU's measured copy and read bandwidth: what the benchmarks' "% of BW" columns are against.

The read bandwidth differs by a few percent between machines of the same GPU type (3,154 to
3,224 GB/s on H100 80GB HBM3 machines), so each benchmark run measures its own.
"""

from __future__ import annotations

from functools import partial

import torch
import triton
import triton.language as tl

from infinitecontext.kernels.benchmark_timing import GiB, L2Flusher, time_graph


@triton.jit
def _read_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr, ITERS: tl.constexpr):  # type: ignore[no-untyped-def]
    """Streams x once: each program sums ITERS consecutive blocks (a read-only roofline)."""
    pid = tl.program_id(0).to(tl.int64)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for i in range(ITERS):
        offs = (pid * ITERS + i) * BLOCK + tl.arange(0, BLOCK)
        acc += tl.load(x_ptr + offs, mask=offs < n, other=0.0, eviction_policy="evict_first")
    tl.store(out_ptr + pid, tl.sum(acc, axis=0))


def measure_bandwidth(flush: L2Flusher) -> dict[str, float]:
    """Copy (read + write counted) and read-only bandwidth over 2 GiB buffers, in GB/s."""
    n = 2 * GiB // 4
    src = torch.randn(n, device="cuda")
    dst = torch.empty_like(src)
    copy = time_graph(partial(dst.copy_, src), flush)
    block, iters = 4096, 8
    programs = triton.cdiv(n, block * iters)
    sink = torch.empty(programs, device="cuda")

    read = partial(_read_kernel[(programs,)], src, sink, n, BLOCK=block, ITERS=iters, num_warps=8)
    read_triton = time_graph(read, flush)
    read_torch = time_graph(src.sum, flush)
    nbytes = n * 4
    result = {
        "copy_GBps": 2 * nbytes / copy.p50_ms / 1e6,
        "read_triton_GBps": nbytes / read_triton.p50_ms / 1e6,
        "read_torch_sum_GBps": nbytes / read_torch.p50_ms / 1e6,
    }
    result["read_GBps"] = max(result["read_triton_GBps"], result["read_torch_sum_GBps"])
    return result
