"""Run one kernel case a few times, for a profiler to watch (Nsight Compute).

    ncu --clock-control none --kernel-name regex:'_split|_combine' --launch-skip 2 \
        python -m infinitecontext.kernels.profile mla --heads 16 --batch 1 --context 131072

Warm-up calls compile the kernels first, so `--launch-skip` past them profiles steady-state
launches. The inputs are random (never zeros: they can run faster than real data).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

from infinitecontext.kernels.mla_decode import DecodeConfig, mla_decode_triton
from infinitecontext.kernels.mla_decode_ref import KV_LORA_RANK, LATENT_DIM, ROPE_DIM
from infinitecontext.kernels.rms_norm import rms_norm_triton
from infinitecontext.kernels.rms_norm_ref import rms_norm_ref


def mla_case(args: argparse.Namespace) -> Callable[[], object]:
    dt = torch.bfloat16
    q_lat = torch.randn(args.batch, args.heads, KV_LORA_RANK, device="cuda", dtype=dt)
    q_pe = torch.randn(args.batch, args.heads, ROPE_DIM, device="cuda", dtype=dt)
    cache = torch.randn(args.batch, args.context, LATENT_DIM, device="cuda", dtype=dt)
    lengths = torch.full((args.batch,), args.context, dtype=torch.int32, device="cuda")
    config = DecodeConfig(*args.config) if args.config else None
    return lambda: mla_decode_triton(
        q_lat, q_pe, cache, lengths, 0.1352, num_splits=args.splits, config=config
    )


def rms_norm_case(args: argparse.Namespace) -> Callable[[], object]:
    x = torch.randn(args.rows, args.width, device="cuda", dtype=torch.bfloat16)
    weight = torch.randn(args.width, device="cuda", dtype=torch.bfloat16)
    if args.impl == "triton":
        return lambda: rms_norm_triton(x, weight, 1e-6)
    compiled = torch.compile(rms_norm_ref)
    return lambda: compiled(x, weight, 1e-6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--calls", type=int, default=5)
    sub = parser.add_subparsers(dest="op", required=True)
    mla = sub.add_parser("mla", parents=[common])
    mla.add_argument("--heads", type=int, default=16)
    mla.add_argument("--batch", type=int, default=1)
    mla.add_argument("--context", type=int, default=128 * 1024)
    mla.add_argument("--splits", type=int, default=None)
    mla.add_argument(
        "--config", type=int, nargs=5, metavar=("BLOCK_H", "BLOCK_N", "WARPS", "STAGES", "CTAS")
    )
    norm = sub.add_parser("rms_norm", parents=[common])
    norm.add_argument("--rows", type=int, default=2048)
    norm.add_argument("--width", type=int, default=512)
    norm.add_argument("--impl", choices=("triton", "compile"), default="triton")
    args = parser.parse_args()
    call = mla_case(args) if args.op == "mla" else rms_norm_case(args)
    for _ in range(args.calls):
        call()
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
