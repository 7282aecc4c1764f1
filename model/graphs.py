"""One decode step captured in a CUDA graph, replayed per token.

Eagerly, a decode step of the `1b` preset launches 24 layers × a few dozen kernels from
Python, and at batch 1 the GPU mostly waits for the host. `CudaGraphDecoder` captures
`model.decode(ids, cache, positions)` for one token per sequence, a fixed batch and a fixed
cache, with the inputs in static buffers; a step is then two small copies and one graph
launch. The decode path with explicit positions reads nothing back to the host (see
`MLATransformer.decode` and `LatentKVCache`), which is what makes it capturable.

Everything the graph touches is fixed at capture: the model's weights, the cache buffers,
and the kernel backend (`ICX_KERNELS` is read while capturing). The cache is written in
place, so its contents may change between steps.

On CPU, or when capture is off, the decoder runs the same call eagerly.
"""

from __future__ import annotations

from typing import Literal

import torch

from infinitecontext.kernels import dispatch
from infinitecontext.model.cache import LatentKVCache
from infinitecontext.model.transformer import MLATransformer

Capture = bool | Literal["auto"]


def capture_plan(device: torch.device, backend: dispatch.Backend, capture: Capture) -> str | None:
    """None if the step will be captured, else why it runs eagerly.

    "auto" captures on CUDA with the Triton MLA kernel. The reference MLA decode syncs with
    the host for `lengths.max()` when eager; captured, it gathers the cache's whole capacity
    instead, more work than eager while the cache is not full, so "auto" leaves it eager.
    True insists (a CPU device is an error), False never captures.
    """
    if capture is False:
        return "capture off"
    if device.type != "cuda":
        if capture is True:
            raise ValueError(f"CUDA graphs need a CUDA device, the cache is on {device}")
        return f"not a CUDA device ({device.type})"
    if capture == "auto" and backend != "triton":
        return (
            "the reference MLA decode syncs with the host (lengths.max());"
            " captured it would read the whole cache"
        )
    return None


class CudaGraphDecoder:
    """`decoder(ids, positions)` → logits (B, 1, V) of one decode step, replayed from a graph.

    ids (B,) or (B, 1) token ids; positions (B,) or (B, 1): where each sequence's token goes
    (and so how many cache entries it attends to: positions + 1). The caller keeps
    positions < `cache.max_len`; nothing checks them on the host. The graph is captured at
    the first call, with that call's inputs (a step is idempotent: the warm-up runs write
    the same entries the replay writes). The returned logits live in a static buffer that
    the next call overwrites.
    """

    def __init__(
        self,
        model: MLATransformer,
        cache: LatentKVCache,
        capture: Capture = "auto",
        warmup: int = 2,
    ) -> None:
        self.model, self.cache, self.warmup = model, cache, warmup
        device = cache.latent.device
        self.ids = torch.zeros((cache.batch_size, 1), dtype=torch.long, device=device)
        self.positions = torch.zeros_like(self.ids)
        self.eager_reason = capture_plan(device, dispatch.backend_for(cache.latent), capture)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.logits: torch.Tensor | None = None

    @property
    def graphed(self) -> bool:
        return self.eager_reason is None

    def __call__(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        batch = self.ids.shape[0]
        if ids.numel() != batch or positions.numel() != batch:
            raise ValueError(
                f"one token and one position per sequence ({batch}), "
                f"got ids {tuple(ids.shape)} and positions {tuple(positions.shape)}"
            )
        self.ids.copy_(ids.reshape(batch, 1))
        self.positions.copy_(positions.reshape(batch, 1))
        return self.step()

    @torch.no_grad()
    def step(self) -> torch.Tensor:
        """Run the step on whatever the static `ids` and `positions` buffers hold."""
        if self.eager_reason is not None:
            return self.model.decode(self.ids, self.cache, self.positions)
        if self.graph is None:
            self._capture()
        assert self.graph is not None and self.logits is not None
        self.graph.replay()
        return self.logits

    def reset(self) -> None:
        """Drop the graph and its memory pool; the next call captures again."""
        self.graph, self.logits = None, None

    def _capture(self) -> None:
        device = self.ids.device
        with torch.cuda.device(device):
            # Warm up on a side stream (Triton compiles, cuBLAS picks its algorithms), as
            # torch.cuda.graphs recommends, then capture one step.
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(self.warmup):
                    self.model.decode(self.ids, self.cache, self.positions)
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                logits = self.model.decode(self.ids, self.cache, self.positions)
        self.graph, self.logits = graph, logits
