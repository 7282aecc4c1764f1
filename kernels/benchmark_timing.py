"""Timing shared by the benchmarks (kernels/, model/, trainer_image/): CUDA events, graphs, L2.

Every kernel variant is captured in a CUDA graph and replayed after a 256 MiB read that
evicts L2 (`L2Flusher`), between CUDA events (p20/p50/p80 over the replays), so Python
launch overhead and cache-resident inputs do not flatter small shapes. Whole training steps,
which cannot be captured, are timed by the wall clock between device syncs
(`seconds_per_call`). Only torch is imported: the trainer's CPU dry run uses this module too.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

GiB = 1 << 30


@dataclass
class Timing:
    p20_ms: float
    p50_ms: float
    p80_ms: float


class L2Flusher:
    """Evicts L2 (50 MB on the H100) before a timed call by reading a 256 MB buffer.

    Reading, not writing: a memset (Triton's `do_bench` zeroes a buffer) leaves ~50 MB of
    dirty lines that the timed kernel then has to write back to HBM, about 10 µs on the
    H100 (the MLA decode at B=1, 1M: 400 µs after a memset, 390 µs after a read). A decode
    step finds no such backlog.
    """

    def __init__(self) -> None:
        self.buffer = torch.ones(256 << 20, dtype=torch.int8, device="cuda")

    def __call__(self) -> None:
        torch.sum(self.buffer, dtype=torch.int32)


def time_graph(fn: Callable[[], Any], flush: L2Flusher, reps: int = 30) -> Timing:
    """Median and quartile-ish times of one captured call of `fn`, L2 flushed before each."""
    fn()  # compile / warm up outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()
        with torch.cuda.graph(graph, stream=stream):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    times = event_times(graph.replay, reps, before_each=flush)
    del graph
    return percentiles(times)


def time_eager(fn: Callable[[], Any], flush: L2Flusher, reps: int = 10) -> Timing:
    """Events around plain calls, for what cannot be captured."""
    fn()
    torch.cuda.synchronize()
    return percentiles(event_times(fn, reps, before_each=flush))


def event_times(
    call: Callable[[], Any], reps: int, before_each: Callable[[], Any] | None = None
) -> list[float]:
    """Milliseconds of each of `reps` calls between CUDA events (`before_each` runs outside)."""
    times = []
    for _ in range(reps):
        if before_each is not None:
            before_each()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def percentiles(times: list[float]) -> Timing:
    t = torch.tensor(times)
    q = torch.quantile(t, torch.tensor([0.2, 0.5, 0.8])).tolist()
    return Timing(*q)


def time_any(fn: Callable[[], Any], flush: L2Flusher) -> tuple[Timing | None, str]:
    """(timing, how) — graph replay if capturable, else eager; None with the error if it fails."""
    try:
        return time_graph(fn, flush), "graph"
    except torch.OutOfMemoryError:
        return None, "OOM"
    except Exception as exc:
        torch.cuda.synchronize()
        first = f"{type(exc).__name__}"
    try:
        return time_eager(fn, flush), f"eager ({first} in capture)"
    except torch.OutOfMemoryError:
        return None, "OOM"
    finally:
        release()


def _run_each(call: Callable[[Any], Any], inputs: list[Any]) -> None:
    for item in inputs:
        call(item)


def time_per_call(
    call: Callable[[Any], Any], inputs: list[Any], flush: L2Flusher
) -> tuple[Timing | None, str]:
    """Time `call` over each of `inputs` back to back in one graph; per-call times.

    Distinct inputs (one cache per layer, as in a model's decode step) keep every read cold
    after the L2 flush, while the graph's launch latency is shared by the calls.
    """
    timing, how = time_any(partial(_run_each, call, inputs), flush)
    if timing is None:
        return None, how
    n = len(inputs)
    return Timing(timing.p20_ms / n, timing.p50_ms / n, timing.p80_ms / n), f"{how} x{n}"


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def seconds_per_call(call: Callable[[], Any], warmup: int, reps: int) -> float:
    """Wall seconds per call of `reps` calls after `warmup` (device synced at both ends)."""
    for _ in range(warmup):
        call()
    sync()
    start = time.perf_counter()
    for _ in range(reps):
        call()
    sync()
    return (time.perf_counter() - start) / reps


def release() -> None:
    """Collect garbage (reference cycles hold tensors) and give the caching allocator's free
    blocks back (between shapes, or to another process sharing the GPU)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def environment() -> dict[str, Any]:
    """The GPU and library versions a report was measured with."""
    import triton

    props = torch.cuda.get_device_properties(0)
    return {
        "gpu": props.name,
        "sm_count": props.multi_processor_count,
        "torch": torch.__version__,
        "triton": triton.__version__,
    }
