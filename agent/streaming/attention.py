"""Masked grouped-query attention without `repeat_kv` (the batched streaming paths' attention).

transformers' SDPA path copies every key/value head `num_key_value_groups` times whenever an explicit
mask is given (torch's GQA kernels refuse masks). The streaming agent always passes one: batched
sessions attend over a static scratch with a per-row mask. At 7b shapes (28 query heads on 4 KV heads)
and 8 rows that copy is ~250 MB per layer per forward, the largest cost of a batched decode step.

Here the query heads that share a KV head are folded into the query length instead:
(B, H, T, D) -> (B, H_kv, G*T, D), with the (B, 1, T, L) mask repeated G times along the query
axis (decode, T = 1: broadcast, no copy; a (B, 1, G*T, L) mask is taken as already folded, as the
graphed prefills pass it). Same math; calls without a mask (or without GQA) go to transformers' own
SDPA function unchanged.
"""

from __future__ import annotations

import logging

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

log = logging.getLogger(__name__)

NAME = "streamvln_gqa_sdpa"


def gqa_sdpa_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                       is_causal=None, **kwargs):
    groups = int(getattr(module, "num_key_value_groups", 1))
    plain = (attention_mask is None or groups == 1 or attention_mask.dtype == torch.bool
             or attention_mask.dim() != 4 or attention_mask.shape[1] != 1
             or kwargs.get("position_bias") is not None or kwargs.get("softcap") is not None)
    if plain:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    batch, heads, count, dim = query.shape
    kv_heads = key.shape[1]
    packed = query.reshape(batch, kv_heads, groups * count, dim)  # head kv*G + g -> rows g*T .. g*T+T-1
    mask = attention_mask[..., : key.shape[-2]]
    if count > 1 and mask.shape[2] != groups * count:  # prefill_graph.py passes it already folded
        mask = mask.repeat(1, 1, groups, 1)
    out = torch.nn.functional.scaled_dot_product_attention(
        packed, key, value, attn_mask=mask, dropout_p=dropout if module.training else 0.0, scale=scaling)
    out = out.reshape(batch, heads, count, out.shape[-1]).transpose(1, 2).contiguous()
    return out, None


def use_gqa_attention(language_model) -> bool:
    """Switch an SDPA language model with GQA to `gqa_sdpa_attention` (same results, no K/V copies
    under a mask). Leaves other attention implementations alone; returns whether it switched."""
    config = language_model.config
    if config._attn_implementation not in ("sdpa", NAME):
        return False
    if config.num_key_value_heads == config.num_attention_heads:
        return False
    try:
        AttentionInterface.register(NAME, gqa_sdpa_attention)
        AttentionMaskInterface.register(NAME, sdpa_mask)  # the masks transformers builds for SDPA
        language_model.set_attn_implementation(NAME)
    except (AttributeError, KeyError, TypeError, ValueError) as error:  # an older/newer transformers API
        log.warning("could not install the masked GQA attention (%s); using transformers' SDPA", error)
        return False
    return config._attn_implementation == NAME
