import pytest
import torch

from infinitecontext.model.config import preset
from infinitecontext.model.generate import Sampling, generate, sample
from infinitecontext.model.transformer import build


@pytest.fixture(scope="module")
def model():
    return build(preset("tiny"), seed=7).float().eval()


def greedy_without_cache(model, prompt, steps):
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    return ids[len(prompt) :]


def test_batched_greedy_equals_recomputing_every_step(model):
    prompts = [[5, 9, 200, 31, 7, 8], [44], [3, 3, 3]]
    outputs = generate(model, prompts, Sampling(max_new_tokens=10))
    for prompt, output in zip(prompts, outputs, strict=True):
        assert output == greedy_without_cache(model, prompt, 10)


def test_stop_tokens_end_a_sequence_without_ending_the_batch(model):
    prompts = [[5, 9, 200], [44, 45]]
    free = generate(model, prompts, Sampling(max_new_tokens=6))
    stop = free[0][2]
    stopped = generate(model, prompts, Sampling(max_new_tokens=6, stop_tokens=(stop,)))
    assert stopped[0] == free[0][: free[0].index(stop)]
    second = free[1][: free[1].index(stop)] if stop in free[1] else free[1]
    assert stopped[1] == second


def test_sampling_is_reproducible_with_a_seed(model):
    sampling = Sampling(max_new_tokens=8, temperature=1.0, top_p=0.9, seed=11)
    assert generate(model, [[1, 2, 3]], sampling) == generate(model, [[1, 2, 3]], sampling)


def test_top_p_keeps_the_smallest_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    seen = {int(sample(logits, 1.0, top_p=0.7)) for _ in range(200)}
    assert seen == {0, 1}
    assert int(sample(logits, 1.0, top_p=0.01)) == 0


def test_empty_prompt_is_rejected(model):
    with pytest.raises(ValueError, match="at least one token"):
        generate(model, [[]])
