"""What the session-6/7 A/B probes (ab_hopper.py, ab_stages.py, ab_splits.py) share: the
benchmark's timing (read flush, up to 8 distinct caches in one graph), one shape's inputs,
one timed and checked row, the JSON written after every row."""
# ruff: noqa

import json
from pathlib import Path

import torch

from infinitecontext.kernels import bench as kb

K = 1024
SOFTMAX_SCALE = 0.1352


class Probe:
    def __init__(self, out_path: Path):
        self.out_path = out_path
        self.flush = kb._L2Flusher()
        self.bw = kb.measure_bandwidth(self.flush)
        print(torch.cuda.get_device_name(), "bandwidth", self.bw, flush=True)
        self.result = {"gpu": torch.cuda.get_device_name(), "bandwidth": self.bw, "rows": []}

    @staticmethod
    def inputs(batch, ctx, heads):
        """q_lat, q_pe, the cache, full lengths, and the distinct caches a stream rotates through."""
        gen = torch.Generator(device="cuda").manual_seed(batch + ctx)
        q_lat = torch.randn(batch, heads, 512, device="cuda", dtype=torch.bfloat16, generator=gen)
        q_pe = torch.randn(batch, heads, 64, device="cuda", dtype=torch.bfloat16, generator=gen)
        cache = torch.randn(batch, ctx, 576, device="cuda", dtype=torch.bfloat16, generator=gen)
        lengths = torch.full((batch,), ctx, dtype=torch.int32, device="cuda")
        caches = [cache] + [cache.clone() for _ in range(kb._copies(cache.numel() * 2) - 1)]
        return q_lat, q_pe, cache, lengths, caches

    def time(self, call, cache, caches, ref, batch, ctx, heads, labels):
        """Time `call` over `caches`, check its output on `cache` against `ref`; the row is
        `labels` then us, % read BW and the relative error."""
        err = float((call(cache)[0].float() - ref.float()).norm() / ref.float().norm())
        timing, how = kb.time_per_call(call, caches, self.flush)
        rates = kb._rates(
            timing,
            how,
            kb.mla_bytes(batch, ctx, heads),
            kb.mla_flops(batch, ctx, heads),
            self.bw["read_GBps"],
        )
        row = dict(
            labels, us=round(timing.p50_ms * 1e3, 2), pct=round(rates["pct_read_bw"], 2), err=err
        )
        self.result["rows"].append(row)
        print(json.dumps(row), flush=True)
        self.out_path.write_text(json.dumps(self.result, indent=1))
