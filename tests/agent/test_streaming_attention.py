"""Masked GQA attention without K/V copies, and the stacked cache hand-off of the batched scratch."""

from __future__ import annotations

import pytest
import torch
from streaming_support import tiny_model

from agent.streaming.attention import NAME, use_gqa_attention
from agent.streaming.cache import SessionCache, TextModel


def masked_forward(language_model, rows: int, past: int, count: int) -> torch.Tensor:
    """Hidden states of `count` new tokens per row on top of `past` cached ones, under an explicit
    (rows, 1, count, past + count) additive mask that hides a different cache prefix in each row."""
    config = language_model.config
    text = TextModel(language_model, [0])
    torch.manual_seed(3)
    history = torch.randn(rows, past, config.hidden_size)
    new = torch.randn(rows, count, config.hidden_size)
    cache = text.new_cache()
    text.run(history, cache, torch.arange(past).expand(rows, past))
    columns = torch.arange(past + count)
    queries = torch.arange(count).unsqueeze(1) + past
    visible = (columns <= queries).unsqueeze(0) & (columns >= torch.arange(rows).view(rows, 1, 1) * 2)
    mask = torch.where(visible, 0.0, torch.finfo(torch.float32).min).unsqueeze(1)
    out = text.decoder(inputs_embeds=new, attention_mask={"full_attention": mask},
                       position_ids=queries.T.expand(rows, count), use_cache=True, **{text._cache_arg: cache})
    return out.last_hidden_state


@pytest.mark.parametrize("count", [1, 5])  # a decode step (mask broadcast) and a prefill (mask repeated)
def test_gqa_attention_matches_transformers_sdpa(count):
    language_model = tiny_model().language_model
    config = language_model.config
    assert config.num_key_value_heads < config.num_attention_heads  # the tiny preset has GQA
    language_model.set_attn_implementation("sdpa")
    reference = masked_forward(language_model, rows=3, past=9, count=count)
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(query, *args, **kwargs):
        calls.append(query.shape[1])
        return original(query, *args, **kwargs)

    assert use_gqa_attention(language_model) and config._attn_implementation == NAME
    torch.nn.functional.scaled_dot_product_attention = spy
    try:
        ours = masked_forward(language_model, rows=3, past=9, count=count)
    finally:
        torch.nn.functional.scaled_dot_product_attention = original
    assert calls and set(calls[-config.num_hidden_layers:]) == {config.num_key_value_heads}  # folded heads
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


def test_stacked_cache_round_trip_and_truncation():
    language_model = tiny_model().language_model
    cache = SessionCache(TextModel(language_model, [0]))
    cache.prefill(torch.randn(7, language_model.config.hidden_size))
    assert cache.stacked() is None  # built layer by layer by transformers
    keys = torch.stack([k for k, _ in cache.layer_tensors()])
    values = torch.stack([v for _, v in cache.layer_tensors()])
    cache.adopt(keys.clone(), values.clone())
    stacked_keys, stacked_values = cache.stacked()
    torch.testing.assert_close(stacked_keys, keys, atol=0, rtol=0)
    torch.testing.assert_close(stacked_values, values, atol=0, rtol=0)
    cache.truncate_to(4)
    assert cache.stacked()[0].shape[-2] == 4
    torch.testing.assert_close(cache.stacked()[1], values[..., :4, :], atol=0, rtol=0)
    cache.prefill(torch.randn(2, language_model.config.hidden_size))  # a layer-wise append ends the view
    assert cache.length == 6 and cache.stacked() is None
