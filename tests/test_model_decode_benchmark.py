"""The end-to-end decode benchmark's pieces (CPU) and the CUDA-graph decode step (GPU only).

kernels/run_on_gpu.sh runs this file with tests/test_kernels_*.py, so the GPU tests here run
on the CUDA machine with the kernel tests; elsewhere they are skipped.
"""

import os

import pytest
import torch
from plugins.prerequisites import gpu_only

from infinitecontext.kernels.mla_decode_ref import mla_decode_ref
from infinitecontext.model import decode_benchmark as bench
from infinitecontext.model.config import preset
from infinitecontext.model.generate import Sampling, generate
from infinitecontext.model.graphs import CudaGraphDecoder
from infinitecontext.model.transformer import build

GiB, K = 1 << 30, 1024
cuda_only = gpu_only("CUDA graphs need a GPU")


def test_step_stats_report_the_median_and_tokens_per_second():
    stats = bench._step_stats(8, [4.0, 1.0, 2.0, 3.0, 100.0, 2.0])
    assert stats["steps"] == 6
    assert stats["step_ms"] == 2.5  # (2 + 3) / 2
    assert stats["tokens_per_s"] == pytest.approx(8 / 2.5e-3)
    assert stats["p20_ms"] == 2.0 and stats["p80_ms"] == 4.0
    assert bench._step_stats(1, [5.0])["step_ms"] == 5.0


def test_issue_shapes_fit_on_an_80_gb_gpu():
    cfg = preset("1b")
    free = 80e9 - 2.3 * GiB  # the bf16 weights (1.18 B parameters) are already resident
    triton_128k_b8 = bench.bytes_needed(cfg, 8, 128 * K, "triton")
    assert triton_128k_b8 == 27 * GiB + bench.SLACK_BYTES  # 8 × 128k × 27 KiB
    for backend in ("triton", "reference"):
        for batch in (1, 8):
            for ctx in (4 * K, 32 * K, 128 * K):
                need = bench.bytes_needed(cfg, batch, ctx, backend)
                assert bench.skip_reason(need, int(free)) is None, (backend, batch, ctx)
    assert bench.skip_reason(bench.bytes_needed(cfg, 1, 1024 * K, "triton"), free) is None
    reason = bench.skip_reason(bench.bytes_needed(cfg, 8, 1024 * K, "triton"), free)
    assert reason is not None and reason.startswith("skipped: needs 218.0 GiB")


def test_kernels_backend_is_scoped(monkeypatch):
    monkeypatch.setenv("ICX_KERNELS", "auto")
    with bench._kernels("reference"):
        assert os.environ["ICX_KERNELS"] == "reference"
    assert os.environ["ICX_KERNELS"] == "auto"
    monkeypatch.delenv("ICX_KERNELS")
    with bench._kernels("triton"):
        assert os.environ["ICX_KERNELS"] == "triton"
    assert "ICX_KERNELS" not in os.environ


@pytest.mark.parametrize("paged", [False, True], ids=["contiguous", "paged"])
def test_reference_bounded_by_capacity_matches_and_reads_nothing_on_the_host(paged, monkeypatch):
    """While a graph is captured the reference gathers the whole capacity, with no host read."""
    from infinitecontext.kernels import mla_decode_ref as ref

    q_lat, q_pe = torch.randn(3, 4, 512), torch.randn(3, 4, 64)
    cache = torch.randn(3, 64 if paged else 40, 576)
    lengths = torch.tensor([40, 7, 1], dtype=torch.int32)
    block_table = torch.tensor([[2], [0], [1]], dtype=torch.int32) if paged else None
    expected = mla_decode_ref(q_lat, q_pe, cache, lengths, 0.1, block_table)
    monkeypatch.setattr(ref, "_capturing_graph", lambda lengths: True)
    got = mla_decode_ref(q_lat, q_pe, cache, lengths, 0.1, block_table)
    # On the meta device a host read (lengths.max().item()) would raise.
    meta = [t.to("meta") for t in (q_lat, q_pe, cache, lengths)]
    meta_table = block_table.to("meta") if paged else None
    out, lse = mla_decode_ref(*meta, 0.1, meta_table)
    assert out.shape == (3, 4, 512) and lse.shape == (3, 4)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_e2e_table_prints_timed_skipped_and_memory_rows():
    timed = {"backend": "triton", "batch": 8, "context": 4096, "status": "graph"}
    timed.update(bench._step_stats(8, [2.0, 2.0, 3.0]), back_to_back_ms=1.9)
    timed["eager"] = bench._step_stats(8, [10.0])
    skipped = {"backend": "reference", "batch": 8, "context": 131072, "status": "skipped: x"}
    memory = {"context": 131072, "peak_GiB": 6.5, "weights_GiB": 2.2, "cache_GiB": 3.4}
    memory["tokens_per_s"] = 300.0
    table = bench.table(
        {"decode": [timed, skipped], "memory": [memory, {"context": 1 << 20, "status": "OOM"}]}
    )
    lines = table.splitlines()
    assert "4000.0" in lines[3] and "800.0" in lines[3] and lines[3].endswith("| graph")
    assert lines[4].endswith("| skipped: x")
    assert "6.50 GiB" in lines[5] and "300.0 tok/s" in lines[5]
    assert lines[6].endswith("OOM")


# ------------------------------------------------------------------------- on the GPU


@pytest.fixture(scope="module")
def cuda_model():
    return build(preset("tiny"), seed=11, device="cuda").float().eval()


def _twin_caches(model, batch, max_len):
    first = model.new_cache(batch, max_len, torch.float32)
    first.latent.normal_(generator=torch.Generator("cuda").manual_seed(batch + max_len))
    second = model.new_cache(batch, max_len, torch.float32)
    second.latent.copy_(first.latent)
    return first, second


def _check_replays_match_eager(model, decoder, cache, eager_cache, starts):
    vocab = model.config.vocab_size
    for step in range(3):
        ids = torch.randint(0, vocab, (len(starts),), device="cuda")
        positions = torch.tensor(starts, device="cuda") + step
        got = decoder(ids, positions).clone()
        with torch.no_grad():
            expected = model.decode(ids[:, None], eager_cache, positions[:, None])
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cache.latent, eager_cache.latent, rtol=1e-5, atol=1e-5)
    assert cache.lengths.tolist() == eager_cache.lengths.tolist()


@cuda_only
def test_graph_replays_equal_eager_decode_steps(cuda_model, monkeypatch):
    monkeypatch.setenv("ICX_KERNELS", "triton")
    cache, eager_cache = _twin_caches(cuda_model, 3, 300)
    decoder = CudaGraphDecoder(cuda_model, cache)
    assert decoder.graphed
    _check_replays_match_eager(cuda_model, decoder, cache, eager_cache, [0, 17, 250])
    assert decoder.graph is not None


@cuda_only
def test_reference_backend_decodes_eagerly_unless_capture_is_asked(cuda_model, monkeypatch):
    monkeypatch.setenv("ICX_KERNELS", "reference")
    cache, eager_cache = _twin_caches(cuda_model, 2, 64)
    decoder = CudaGraphDecoder(cuda_model, cache)
    assert not decoder.graphed and "syncs" in str(decoder.eager_reason)
    _check_replays_match_eager(cuda_model, decoder, cache, eager_cache, [5, 60])
    cache, eager_cache = _twin_caches(cuda_model, 2, 64)
    decoder = CudaGraphDecoder(cuda_model, cache, capture=True)
    ids = torch.tensor([1, 2], device="cuda")
    got = decoder(ids, torch.tensor([5, 60], device="cuda")).clone()
    assert decoder.graph is not None
    with torch.no_grad():
        expected = cuda_model.decode(ids[:, None], eager_cache, torch.tensor([[5], [60]]).cuda())
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@cuda_only
def test_generate_with_cuda_graphs_gives_the_eager_tokens(cuda_model, monkeypatch):
    monkeypatch.setenv("ICX_KERNELS", "triton")
    prompts = [[5, 9, 200, 31, 7], [44], [3, 3, 3]]
    sampling = Sampling(max_new_tokens=8)
    eager = generate(cuda_model, prompts, sampling)
    assert generate(cuda_model, prompts, sampling, cuda_graph=True) == eager


@cuda_only
@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_decode_tokens_per_s_times_graph_and_eager_steps(backend):
    model = build(preset("tiny"), seed=0, device="cuda").to(torch.bfloat16).eval()
    row = bench._decode_tokens_per_s(model, 2, 1024, backend, replays=4, eager_steps=2)
    assert row["status"].startswith("graph") and row["steps"] == 4
    assert row["tokens_per_s"] == pytest.approx(2 / (row["step_ms"] / 1e3))
    assert row["back_to_back_ms"] > 0 and row["eager"]["steps"] == 2
