"""The locally trained tokenizer: single-token specials, determinism, lossless round trip, save/load."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from agent.config import LOCAL_VOCAB_SIZE
from agent.tokenizer import ACTION_SYMBOLS, SPECIAL_TOKENS, build_local_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return build_local_tokenizer()


@pytest.mark.parametrize("token", [*SPECIAL_TOKENS, *ACTION_SYMBOLS])
def test_specials_and_actions_are_single_tokens(tokenizer, token):
    ids = tokenizer.encode(token, add_special_tokens=False)
    assert len(ids) == 1
    assert tokenizer.decode(ids) == token


def test_actions_inside_text_stay_single_tokens(tokenizer):
    tokens = tokenizer.convert_ids_to_tokens(tokenizer.encode("→STOP↑↑<|im_end|>", add_special_tokens=False))
    assert tokens == ["→", "STOP", "↑", "↑", "<|im_end|>"]
    assert "STOP" not in tokenizer.convert_ids_to_tokens(tokenizer.encode("STOPPED", add_special_tokens=False))


def test_training_is_deterministic_and_fits_the_preset_vocab(tokenizer):
    again = build_local_tokenizer()
    assert again.get_vocab() == tokenizer.get_vocab()
    assert 500 < len(tokenizer) <= LOCAL_VOCAB_SIZE
    extra = build_local_tokenizer(extra_texts=["zanzibar quokka " * 3] * 5)
    assert len(extra.encode(" zanzibar", add_special_tokens=False)) < len(
        tokenizer.encode(" zanzibar", add_special_tokens=False))


def test_round_trip_is_lossless_and_words_are_compact(tokenizer):
    text = "Walk past the red sofa, turn left into the kitchen — stop at the fridge (2.5 m). ünïcode ok"
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text
    assert len(tokenizer.encode(" kitchen", add_special_tokens=False)) == 1


def test_save_and_load_keeps_ids(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "<|im_start|>assistant\n↑←STOP<|im_end|>\n you can see "
    assert loaded.encode(text, add_special_tokens=False) == tokenizer.encode(text, add_special_tokens=False)
    assert loaded.pad_token == "<|endoftext|>" and loaded.eos_token == "<|im_end|>"
