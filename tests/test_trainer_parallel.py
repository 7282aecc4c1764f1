"""FSDP2 gradient accumulation on one CPU process (gloo): parallel.set_micro_batch."""

import pytest
import torch
import torch.nn.functional as F
from torch.distributed.tensor import DTensor

from infinitecontext.model.config import preset
from infinitecontext.model.transformer import build
from infinitecontext.trainer import parallel
from infinitecontext.trainer.recipe import ParallelSpec


@pytest.fixture
def world(monkeypatch):
    env = dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
    for key, value in (env | {"MASTER_PORT": str(parallel.free_port())}).items():
        monkeypatch.setenv(key, value)  # init_world's variables, undone after the test
    yield parallel.init_world()
    parallel.close_world()


def accumulate(world, ids: torch.Tensor, skip_sync: bool):
    """Gradients after accumulating over ids' micro-batches, and whether the first
    block's parameters were left gathered after each micro-batch's backward."""
    model = build(preset("tiny"), seed=0)
    parallel.parallelize(model, ParallelSpec(mixed_precision="fp32"), world.mesh)
    block = model.get_submodule("model.layers")[0]
    gathered = []
    for i in range(len(ids)):
        if skip_sync:
            parallel.set_micro_batch(model, i == len(ids) - 1, world.size)
        logits = model(ids[i, :, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), ids[i, :, 1:].flatten())
        (loss / len(ids)).backward()
        gathered.append(not isinstance(next(block.parameters()), DTensor))
    grads = {n: p.grad.full_tensor() for n, p in model.named_parameters() if p.grad is not None}
    return grads, gathered


@pytest.mark.slow  # two gloo ranks training: over 30 s on 2 cores
def test_accumulation_without_gradient_sync_matches_syncing_every_micro_batch(world):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, preset("tiny").vocab_size, (3, 2, 65), generator=generator)
    synced, resharded = accumulate(world, ids, skip_sync=False)
    skipped, kept = accumulate(world, ids, skip_sync=True)
    assert synced.keys() == skipped.keys() and len(synced) > 10
    for name, grad in synced.items():
        torch.testing.assert_close(skipped[name], grad, msg=name)
    # world size 1: the gathered parameters stay until the last micro-batch's backward
    assert kept == [True, True, False]
    assert resharded == [False, False, False]
