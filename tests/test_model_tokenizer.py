from infinitecontext.model.tokenizer import (
    SPECIAL_TOKENS,
    default_tokenizer,
    load_tokenizer,
    save_tokenizer,
    synthetic_text,
)


def test_synthetic_text_is_deterministic_and_varied():
    first = list(synthetic_text(seed=1, sentences=200))
    assert first == list(synthetic_text(seed=1, sentences=200))
    assert first != list(synthetic_text(seed=2, sentences=200))
    assert len(set(first)) > 100


def test_tokenizer_round_trips_and_reserves_special_ids(tmp_path):
    tokenizer = default_tokenizer(vocab_size=1024)
    # Never more ids than the model's vocabulary; the 256 bytes and the specials at least.
    assert 256 + len(SPECIAL_TOKENS) < tokenizer.get_vocab_size() <= 1024
    assert [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2]
    text = "The pass key is 84213. Remember it. Ünïcödé → ok"
    save_tokenizer(tokenizer, tmp_path, 2048)
    loaded = load_tokenizer(tmp_path)
    assert loaded.decode(loaded.encode(text).ids) == text
    digits = [loaded.id_to_token(i) for i in loaded.encode("84213").ids]
    assert digits == list("84213")  # one token per digit: every pass key is spelled alike
