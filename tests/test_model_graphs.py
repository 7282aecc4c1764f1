"""A decode step that never reads tensors on the host, and the CUDA-graph decoder's CPU fallback.

The capture itself needs a GPU: tests/test_model_decode_benchmark.py runs it there.
"""

import pytest
import torch

from infinitecontext.kernels import dispatch
from infinitecontext.model.config import preset
from infinitecontext.model.generate import Sampling, generate
from infinitecontext.model.graphs import CudaGraphDecoder, capture_plan
from infinitecontext.model.transformer import MLATransformer, build


@pytest.fixture(scope="module")
def model():
    return build(preset("tiny"), seed=5).float().eval()


def _filled_cache(model, batch, max_len, seed=0):
    cache = model.new_cache(batch, max_len, torch.float32)
    cache.latent.normal_(generator=torch.Generator().manual_seed(seed))
    return cache


def test_cache_update_writes_each_sequence_at_its_positions(model):
    cache = model.new_cache(2, 6, torch.float32)
    c_kv, k_pe = torch.randn(2, 2, 512), torch.randn(2, 2, 64)
    positions = torch.tensor([[1, 2], [4, 5]])
    cache.update(1, positions, c_kv, k_pe)
    expected = torch.zeros_like(cache.latent)
    for b in range(2):
        for t in range(2):
            expected[1, b, positions[b, t]] = torch.cat((c_kv[b, t], k_pe[b, t]))
    torch.testing.assert_close(cache.latent, expected, rtol=0, atol=0)
    # Within a step the slots are computed once and reused by every layer.
    with cache.step(positions):
        step = cache._step
        assert step is not None and step[0] is positions
        torch.testing.assert_close(step[1], torch.tensor([1, 2, 10, 11]))
        cache.update(0, positions, c_kv, k_pe)
    assert cache._step is None
    torch.testing.assert_close(cache.latent[0], expected[1], rtol=0, atol=0)


def test_explicit_positions_equal_the_default_decode(model):
    ids = torch.randint(0, model.config.vocab_size, (3, 1))
    default, explicit = _filled_cache(model, 3, 12), _filled_cache(model, 3, 12)
    default.lengths.copy_(torch.tensor([4, 9, 0]))
    explicit.lengths.copy_(default.lengths)
    with torch.no_grad():
        expected = model.decode(ids, default)
        got = model.decode(ids, explicit, torch.tensor([[4], [9], [0]]))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    torch.testing.assert_close(explicit.latent, default.latent, rtol=0, atol=0)
    assert explicit.lengths.tolist() == default.lengths.tolist() == [5, 10, 1]


def test_decode_with_positions_never_reads_a_tensor_on_the_host(monkeypatch):
    """On the meta device any .item(), int(), bool() or data-dependent shape raises.

    The MLA decode op is stubbed (the reference gathers up to lengths.max() on the host;
    the Triton launcher bounds by the cache's capacity and is checked by capture on a GPU).
    """
    monkeypatch.setenv("ICX_KERNELS", "reference")
    calls = []

    def mla_stub(q_lat, q_pe, cache, lengths, softmax_scale, *rest):
        calls.append(lengths)
        return torch.empty_like(q_lat), torch.empty(q_lat.shape[:2], device=q_lat.device)

    monkeypatch.setattr(dispatch, "mla_decode", mla_stub)
    cfg = preset("tiny")
    with torch.device("meta"):
        model = MLATransformer(cfg)
    cache = model.new_cache(2, 16)
    ids = torch.zeros(2, 1, dtype=torch.long, device="meta")
    positions = torch.zeros(2, 1, dtype=torch.long, device="meta")
    with torch.no_grad():
        logits = model.decode(ids, cache, positions)
        assert logits.shape == (2, 1, cfg.vocab_size)
        assert len(calls) == cfg.num_hidden_layers
        assert all(lengths.dtype == torch.int32 and lengths.is_meta for lengths in calls)
        # The default path checks the cache's room on the host: exactly one read per step.
        with pytest.raises(RuntimeError, match="meta"):
            model.decode(ids, cache)


def test_capture_plan():
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert capture_plan(cuda, "triton", "auto") is None
    assert capture_plan(cuda, "reference", True) is None
    assert "syncs" in capture_plan(cuda, "reference", "auto")
    assert capture_plan(cuda, "triton", False) == "capture off"
    assert "CUDA" in capture_plan(cpu, "reference", "auto")
    with pytest.raises(ValueError, match="CUDA device"):
        capture_plan(cpu, "reference", True)


def test_decoder_on_cpu_runs_the_step_eagerly(model):
    graphed, eager = _filled_cache(model, 2, 10, 1), _filled_cache(model, 2, 10, 1)
    decoder = CudaGraphDecoder(model, graphed)
    assert not decoder.graphed and decoder.graph is None
    for step in range(3):
        ids = torch.randint(0, model.config.vocab_size, (2,))
        positions = torch.tensor([3, 6]) + step
        got = decoder(ids, positions.to(torch.int32))
        with torch.no_grad():
            expected = model.decode(ids[:, None], eager, positions[:, None])
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
        assert decoder.positions.dtype == torch.long
    torch.testing.assert_close(graphed.latent, eager.latent, rtol=0, atol=0)
    assert graphed.lengths.tolist() == [6, 9]
    assert decoder.graph is None


def test_decoder_takes_one_token_per_sequence(model):
    decoder = CudaGraphDecoder(model, model.new_cache(2, 4, torch.float32))
    with pytest.raises(ValueError, match="one token and one position per sequence"):
        decoder(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, dtype=torch.long))


def test_generate_with_cuda_graph_requested_on_cpu_is_the_eager_result(model):
    prompts = [[5, 9, 200, 31], [44], [3, 3, 3]]
    sampling = Sampling(max_new_tokens=6)
    assert generate(model, prompts, sampling, cuda_graph=True) == generate(model, prompts, sampling)
