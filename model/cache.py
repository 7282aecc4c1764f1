"""The latent KV cache: per layer and token, only c_KV (kv_lora_rank) and k_pe (rope dim).

One preallocated buffer of shape (layers, batch, max_len, kv_lora_rank + rope_dim),
the layout vLLM and FlashMLA use: `[..., :kv_lora_rank]` is the normalised latent,
`[..., kv_lora_rank:]` the rotated key shared by all heads. A decode kernel reads
each token's 576 values once for both scores and values.

Nothing here reads a tensor's values on the host: writes go through `index_copy_` with the
positions on the device, and `lengths` stays a device tensor, so a decode step that passes
its positions explicitly can be captured in a CUDA graph (see graphs.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from infinitecontext.model.config import MLAConfig


class LatentKVCache:
    def __init__(
        self,
        cfg: MLAConfig,
        batch_size: int,
        max_len: int,
        dtype: torch.dtype = torch.bfloat16,
        device: torch.device | str = "cpu",
    ) -> None:
        self.kv_lora_rank = cfg.kv_lora_rank
        self.max_len = max_len
        shape = (cfg.num_hidden_layers, batch_size, max_len, cfg.latent_dim)
        self.latent = torch.zeros(shape, dtype=dtype, device=device)
        # Tokens already in the cache for each sequence; new tokens go at these positions.
        self.lengths = torch.zeros(batch_size, dtype=torch.int32, device=device)
        # (positions, slots) of the step in progress, so the layers share one index computation.
        self._step: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def batch_size(self) -> int:
        return self.latent.shape[1]

    def layer(self, index: int) -> torch.Tensor:
        """The (B, max_len, kv_lora_rank + rope_dim) buffer of one layer."""
        return self.latent[index]

    def slots(self, positions: torch.Tensor) -> torch.Tensor:
        """Row indices (B·T,) of positions (B, T) in a layer viewed as (B·max_len, width)."""
        rows = torch.arange(positions.shape[0], device=positions.device)[:, None]
        return (rows * self.max_len + positions.long()).flatten()

    @contextmanager
    def step(self, positions: torch.Tensor) -> Iterator[None]:
        """Within this block, `update` with this very `positions` tensor reuses its slots."""
        self._step = (positions, self.slots(positions))
        try:
            yield
        finally:
            self._step = None

    def update(
        self, index: int, positions: torch.Tensor, c_kv: torch.Tensor, k_pe: torch.Tensor
    ) -> None:
        """Write c_kv (B, T, C) and k_pe (B, T, R) of layer `index` at positions (B, T).

        Positions are not bounds-checked here (that would sync with the host in every
        layer); the model checks them once per step with `check_room`, or the caller
        guarantees them (explicit positions, CUDA graphs). On CUDA an out-of-range
        position is a device-side assert.
        """
        entries = torch.cat((c_kv, k_pe), dim=-1).to(self.latent.dtype)  # (B, T, C+R)
        step = self._step
        slots = step[1] if step is not None and step[0] is positions else self.slots(positions)
        rows = self.latent[index].view(-1, self.latent.shape[-1])  # (B·max_len, C+R)
        rows.index_copy_(0, slots, entries.flatten(0, 1))

    def check_room(self, last_position: int) -> None:
        if last_position >= self.max_len:
            raise IndexError(f"position {last_position} beyond cache length {self.max_len}")

    def bytes_per_token(self) -> int:
        """Bytes one token occupies across all layers, measured from the buffer itself."""
        layers, _, _, width = self.latent.shape
        return layers * width * self.latent.element_size()
