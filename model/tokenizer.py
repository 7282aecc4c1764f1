"""A byte-level BPE tokenizer trained here, on text we generate (nothing is downloaded).

Saved as `tokenizer.json` (+ `tokenizer_config.json`) so that transformers'
AutoTokenizer and vLLM load it beside the model. Special tokens take ids 0, 1, 2 —
MLAConfig's bos, eos and pad defaults.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

SPECIAL_TOKENS = ("<bos>", "<eos>", "<pad>")

_SUBJECTS = (
    "The grass",
    "The sky",
    "A river",
    "The old map",
    "Our ship",
    "The library",
    "A quiet town",
    "The market",
    "Every garden",
    "The mountain road",
)
_VERBS = ("is", "looks", "was", "seems", "stays", "became")
_OBJECTS = (
    "green",
    "blue",
    "calm",
    "busy",
    "far away",
    "full of light",
    "covered in snow",
    "older than anyone remembers",
    "quiet at night",
    "open until noon",
)
_CLAUSES = (
    "Here we go.",
    "There and back again.",
    "Nobody said a word.",
    "The pass key is hidden somewhere.",
    "Remember the numbers.",
    "Keep reading.",
)


def synthetic_text(seed: int, sentences: int) -> Iterator[str]:
    """Varied filler sentences with numbers, words and punctuation, deterministic per seed."""
    rng = random.Random(seed)
    for _ in range(sentences):
        kind = rng.random()
        if kind < 0.6:
            yield f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}."
        elif kind < 0.8:
            yield f"The pass key is {rng.randrange(10**4, 10**7)}. Remember it."
        else:
            yield rng.choice(_CLAUSES)


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE with digits split one per token.

    Single digits make every number the same few tokens, so copying a pass key is the
    same skill for any key (merged digit groups would give each key its own spelling).
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, directory: Path, model_max_length: int) -> None:
    """tokenizer.json plus the config that makes AutoTokenizer a fast tokenizer over it."""
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    bos, eos, pad = SPECIAL_TOKENS
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": bos,
        "eos_token": eos,
        "pad_token": pad,
        "add_bos_token": False,
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def load_tokenizer(directory: Path) -> Tokenizer:
    return Tokenizer.from_file(str(directory / "tokenizer.json"))


def default_tokenizer(vocab_size: int, seed: int = 0) -> Tokenizer:
    """A tokenizer trained on 20k synthetic sentences: what `icx model export` ships."""
    return train_tokenizer(synthetic_text(seed, 20_000), vocab_size)
