"""Weighted cross-entropy of the LM head, chunk by chunk, without the full logits.

At 8k tokens and a 32k vocabulary the logits are 8192 × 32768: 0.5 GB in bf16, 1 GB again
once cast to fp32 for the softmax, and as much for their gradient, streamed through
several separate kernels forward and backward. Here (as Liger-Kernel's fused linear
cross-entropy does) each chunk of rows forms its logits, reduces them to the loss and
turns them at once into its gradients with respect to the hidden states and the head's
weight; backward then only scales what forward left. The elementwise part of a chunk
(fp32 log-sum-exp, softmax minus the one-hot target, the token weights) is one compiled
function on CUDA.

    loss = Σ_i w_i · (logsumexp(z_i) − z_i[t_i]) / Σ_i w_i,   z_i = W · h_i
    ∂loss/∂z_i = w_i / Σw · (softmax(z_i) − onehot(t_i))
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

CHUNK_LOGITS = 2048 * 32768
"""Logits per chunk: 128 MB in bf16 (plus the fp32 work inside the compiled function, which
inductor keeps in registers); 2048 rows of a 32k vocabulary. A fixed row count would cut a
small vocabulary into many small GEMMs (`small`'s 8k vocabulary gets 8192 rows a chunk)."""


def default_chunk_rows(vocab_size: int) -> int:
    return max(1, CHUNK_LOGITS // vocab_size)


def _chunk_loss_and_grad(
    logits: Tensor, targets: Tensor, scaled_weights: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """logits (c, V), targets (c,), weights / Σw (c,) → (Σ loss, ∂loss/∂logits, argmax).

    The softmax runs in fp32 at least (float64 stays float64)."""
    wide = logits.to(torch.promote_types(logits.dtype, torch.float32))
    lse = torch.logsumexp(wide, dim=-1)  # (c,)
    target_logit = wide.gather(1, targets[:, None]).squeeze(1)
    loss = ((lse - target_logit) * scaled_weights).sum()
    vocab = torch.arange(logits.shape[-1], device=logits.device)
    one_hot = (vocab[None, :] == targets[:, None]).to(wide.dtype)
    grad = (torch.exp(wide - lse[:, None]) - one_hot) * scaled_weights[:, None]
    return loss, grad.to(logits.dtype), wide.argmax(dim=-1)


_chunk_loss_and_grad_compiled = torch.compile(_chunk_loss_and_grad, dynamic=True)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        hidden: Tensor,
        weight: Tensor,
        targets: Tensor,
        weights: Tensor,
        chunk: int,
        grad_enabled: bool,
    ) -> tuple[Tensor, Tensor]:
        rows = hidden.shape[0]
        wide = torch.promote_types(hidden.dtype, torch.float32)
        scaled = weights.to(wide) / weights.to(wide).sum().clamp_min(1e-6)
        # Under no_grad nothing will call backward: skip the gradient GEMMs.
        want_hidden = grad_enabled and ctx.needs_input_grad[0]
        want_weight = grad_enabled and ctx.needs_input_grad[1]
        grad_hidden = torch.empty_like(hidden) if want_hidden else None
        grad_weight = torch.zeros_like(weight) if want_weight else None
        loss = torch.zeros((), device=hidden.device, dtype=wide)
        predictions = torch.empty(rows, device=hidden.device, dtype=torch.long)
        step = _chunk_loss_and_grad_compiled if hidden.is_cuda else _chunk_loss_and_grad
        for start in range(0, rows, chunk):
            part = slice(start, start + chunk)
            h = hidden[part]
            chunk_loss, grad_logits, predictions[part] = step(
                h @ weight.T, targets[part], scaled[part]
            )
            loss += chunk_loss
            if grad_hidden is not None:
                torch.mm(grad_logits, weight, out=grad_hidden[part])
            if grad_weight is not None:
                grad_weight.addmm_(grad_logits.T, h)
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.mark_non_differentiable(predictions)
        return loss, predictions

    @staticmethod
    def backward(
        ctx: Any, grad_loss: Tensor, _grad_predictions: Tensor | None
    ) -> tuple[Tensor | None, Tensor | None, None, None, None, None]:
        grad_hidden, grad_weight = ctx.saved_tensors
        return (
            grad_hidden * grad_loss.to(grad_hidden.dtype) if grad_hidden is not None else None,
            grad_weight * grad_loss.to(grad_weight.dtype) if grad_weight is not None else None,
            None,
            None,
            None,
            None,
        )


def linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    weights: Tensor | None = None,
    chunk_rows: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Weighted mean cross-entropy of `hidden @ weight.T` and the argmax predictions.

    hidden (N, D), weight (V, D), targets (N,) int64, weights (N,) or None (all 1).
    Returns (loss: an fp32 scalar, float64 for float64 inputs; predictions (N,) int64, not
    differentiable). `chunk_rows` defaults to CHUNK_LOGITS // V rows.
    """
    if weights is None:
        weights = torch.ones(targets.shape, device=targets.device)
    if chunk_rows is None:
        chunk_rows = default_chunk_rows(weight.shape[0])
    loss, predictions = _LinearCrossEntropy.apply(
        hidden, weight, targets, weights, chunk_rows, torch.is_grad_enabled()
    )
    return loss, predictions
