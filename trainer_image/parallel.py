"""Distributed set-up and FSDP2: the only place that reads the parallelism config.

Order follows torchtitan's `parallelize`: activation checkpointing per block, then
torch.compile per block, then `fully_shard` per block and once more on the root
(the last block keeps its parameters gathered after forward, since backward needs
them at once). One code path for one CPU process (gloo), many CPU processes (gloo,
the tests) and one or many GPUs (NCCL).

World size 1: FSDP2 still keeps a sharded fp32 parameter and an unsharded bf16 copy
made by an "all-gather" (cast + copies). Resharding after forward then only frees that
copy to re-make it in backward, and resharding after each accumulation micro-batch's
backward re-makes it in the next forward: with one rank neither saves memory on other
ranks' behalf, so both are off (`parallelize`, `set_micro_batch`).

`parallel.strategy` picks how ranks hold the model (`data_parallel_mesh`): full_shard
shards over every rank; hybrid_shard (HSDP) shards within groups, by default one node's
processes, and replicates across them; ddp replicates everything (HSDP with groups of
one), DDP's memory and traffic through the same FSDP2 path.
"""

from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

from infinitecontext.trainer.recipe import ParallelSpec


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int
    device: torch.device
    mesh: DeviceMesh

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_world() -> World:
    """Join the process group torchrun describes, or make a group of one."""
    if "RANK" not in os.environ:  # not under torchrun: a world of one process
        os.environ.update(
            RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(free_port()),
        )  # fmt: skip
    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend, mesh_type = "nccl", "cuda"
    else:
        device, backend, mesh_type = torch.device("cpu"), "gloo", "cpu"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=10))
    size = dist.get_world_size()
    mesh = init_device_mesh(mesh_type, (size,), mesh_dim_names=("dp",))
    return World(dist.get_rank(), size, local_rank, device, mesh)


def close_world() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def data_parallel_mesh(spec: ParallelSpec, world: World) -> DeviceMesh:
    """The mesh FSDP2 shards over: 1-D for full_shard, (replicate, shard) otherwise."""
    if spec.strategy == "full_shard":
        return world.mesh
    shard = 1 if spec.strategy == "ddp" else spec.shard_group_size or local_world_size()
    if shard < 1 or world.size % shard:
        raise ValueError(
            f"parallel.shard_group_size {shard} does not divide the world size {world.size}"
        )
    return init_device_mesh(
        world.device.type, (world.size // shard, shard), mesh_dim_names=("replicate", "shard")
    )


def shard_size(mesh: DeviceMesh) -> int:
    """Ranks one parameter is split over (the last mesh dimension)."""
    return mesh.size(mesh.ndim - 1)


def local_world_size() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def parallelize(model: nn.Module, spec: ParallelSpec, mesh: DeviceMesh) -> nn.Module:
    """Apply AC, compile and FSDP2 to an MLATransformer (or any model with .model.layers).

    `spec.reshard_after_forward` applies only when a parameter is split over more than
    one rank: unsplit, the "sharded" parameter is the whole fp32 parameter, so freeing
    the bf16 copy after forward saves nothing that matters and costs a second copy
    (cast + all-gather copy-in/out, ~2 passes over the weights) in backward."""
    layers = model.get_submodule("model.layers")
    assert isinstance(layers, nn.ModuleList)
    if spec.activation_checkpointing:
        apply_activation_checkpointing(layers)
    if spec.compile:
        for block in layers:
            block.compile()
    reshard = spec.reshard_after_forward and shard_size(mesh) > 1
    apply_fsdp(model, layers, mesh, mixed_precision_policy(spec), reshard)
    return model


def set_micro_batch(model: nn.Module, last: bool, shard_ranks: int) -> None:
    """Call before each gradient-accumulation micro-batch's forward.

    Gradients are reduced (and cast to fp32 into the sharded gradient) only on the last
    micro-batch; before it FSDP2 accumulates the unsharded gradients
    (`set_requires_gradient_sync`, FSDP1's `no_sync`). When parameters are not split
    (one rank, or ddp) the unsharded bf16 parameters are also kept from one micro-batch
    to the next instead of being freed after backward and re-gathered in the next
    forward (split over several ranks, that would keep the whole model gathered on
    every rank, so they are freed as usual). A model that is not FSDP-wrapped is left
    as it is. `shard_ranks`: how many ranks one parameter is split over
    (`shard_size(mesh)`; the world size under full_shard)."""
    if not isinstance(model, FSDPModule):
        return
    model.set_requires_gradient_sync(last)
    if shard_ranks == 1:
        model.set_reshard_after_backward(last)


def mixed_precision_policy(spec: ParallelSpec) -> MixedPrecisionPolicy:
    if spec.mixed_precision == "bf16":
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy(param_dtype=torch.float32, reduce_dtype=torch.float32)


def apply_activation_checkpointing(layers: nn.ModuleList) -> None:
    """Recompute each block's activations in backward (state-dict names are unchanged)."""
    for index, block in enumerate(layers):
        layers[index] = checkpoint_wrapper(block, preserve_rng_state=False)


def apply_fsdp(
    model: nn.Module,
    layers: nn.ModuleList,
    mesh: DeviceMesh,
    policy: MixedPrecisionPolicy,
    reshard_after_forward: bool,
) -> None:
    last = len(layers) - 1
    for index, block in enumerate(layers):
        fully_shard(
            block,
            mesh=mesh,
            mp_policy=policy,
            reshard_after_forward=reshard_after_forward and index < last,
        )
    fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: float, device: torch.device) -> float:
    tensor = torch.tensor(value, dtype=torch.float64, device=device)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor)
        tensor /= dist.get_world_size()
    return float(tensor)


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """Rank 0's decision, on every rank."""
    tensor = torch.tensor([int(flag)], device=device)
    if dist.is_initialized():
        dist.broadcast(tensor, src=0)
    return bool(tensor.item())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
