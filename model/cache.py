"""The latent KV cache: per layer and token, only c_KV (kv_lora_rank) and k_pe (rope dim).

One preallocated buffer of shape (layers, batch, max_len, kv_lora_rank + rope_dim),
the layout vLLM and FlashMLA use: `[..., :kv_lora_rank]` is the normalised latent,
`[..., kv_lora_rank:]` the rotated key shared by all heads. A decode kernel reads
each token's 576 values once for both scores and values.
"""

from __future__ import annotations

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

    def layer(self, index: int) -> torch.Tensor:
        """The (B, max_len, kv_lora_rank + rope_dim) buffer of one layer."""
        return self.latent[index]

    def update(
        self, index: int, positions: torch.Tensor, c_kv: torch.Tensor, k_pe: torch.Tensor
    ) -> None:
        """Write c_kv (B, T, C) and k_pe (B, T, R) of layer `index` at positions (B, T).

        Positions are not bounds-checked here (that would sync with the host in every
        layer); the model checks them once per step with `check_room`.
        """
        entries = torch.cat((c_kv, k_pe), dim=-1).to(self.latent.dtype)  # (B, T, C+R)
        rows = torch.arange(positions.shape[0], device=positions.device)[:, None]
        self.latent[index][rows, positions.long()] = entries

    def check_room(self, last_position: int) -> None:
        if last_position >= self.max_len:
            raise IndexError(f"position {last_position} beyond cache length {self.max_len}")

    def bytes_per_token(self) -> int:
        """Bytes one token occupies across all layers, measured from the buffer itself."""
        layers, _, _, width = self.latent.shape
        return layers * width * self.latent.element_size()
