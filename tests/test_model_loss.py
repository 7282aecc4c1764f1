"""The chunked LM-head cross-entropy (model/loss.py) against logits + F.cross_entropy."""

import pytest
import torch
import torch.nn.functional as F

from infinitecontext.model.config import preset
from infinitecontext.model.loss import default_chunk_rows, linear_cross_entropy
from infinitecontext.model.transformer import build


def reference_loss(hidden, weight, targets, weights):
    ce = F.cross_entropy((hidden @ weight.T).double(), targets, reduction="none")
    return (ce * weights).sum() / weights.sum()


@pytest.mark.parametrize("chunk_rows", [1, 8, 64], ids=["row", "ragged-chunks", "one-chunk"])
def test_loss_gradients_and_predictions_match_the_logits_path(chunk_rows):
    rows, dim, vocab = 37, 16, 50
    hidden = torch.randn(rows, dim, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(vocab, dim, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, vocab, (rows,))
    weights = torch.rand(rows, dtype=torch.float64) * (torch.rand(rows) > 0.3)  # some zero

    loss, predictions = linear_cross_entropy(hidden, weight, targets, weights, chunk_rows)
    (3.0 * loss).backward()  # an upstream gradient other than 1
    ours = (loss.detach(), hidden.grad, weight.grad)
    hidden.grad, weight.grad = None, None
    expected = reference_loss(hidden, weight, targets, weights)
    (3.0 * expected).backward()

    torch.testing.assert_close(ours[0], expected.detach())
    torch.testing.assert_close(ours[1], hidden.grad)
    torch.testing.assert_close(ours[2], weight.grad)
    assert torch.equal(predictions, (hidden @ weight.T).argmax(-1))
    assert not predictions.requires_grad


def test_no_grad_gives_the_loss_without_gradients():
    hidden = torch.randn(10, 8, requires_grad=True)
    weight = torch.randn(20, 8, requires_grad=True)
    targets = torch.randint(0, 20, (10,))
    with torch.no_grad():
        loss, _ = linear_cross_entropy(hidden, weight, targets, chunk_rows=4)
    assert not loss.requires_grad
    expected = reference_loss(hidden, weight, targets, torch.ones(10))
    torch.testing.assert_close(loss, expected.float(), rtol=1e-5, atol=1e-5)


def test_model_loss_matches_cross_entropy_of_its_logits():
    cfg = preset("tiny")
    torch.manual_seed(0)  # the inputs below; fixed so a failure reproduces
    model = build(cfg, seed=0).float()
    ids = torch.randint(0, cfg.vocab_size, (2, 9))
    targets = torch.randint(0, cfg.vocab_size, (2, 9))
    weights = torch.rand(2, 9)

    loss, predictions = model(ids, targets, weights)
    loss.backward()
    ours = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    logits = model(ids)
    ce = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    expected = (ce * weights.flatten()).sum() / weights.sum()
    expected.backward()

    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(predictions, logits.argmax(-1))
    for name, p in model.named_parameters():
        torch.testing.assert_close(ours[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_default_chunks_hold_the_same_number_of_logits_whatever_the_vocabulary():
    assert default_chunk_rows(32768) == 2048  # the 1b preset: 128 MB of bf16 logits
    assert default_chunk_rows(8192) == 8192  # small: four times the rows, same bytes
    assert default_chunk_rows(10**9) == 1
