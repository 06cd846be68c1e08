"""`sdpa_varlen`: causal attention per packed sample with SDPA's fused kernels (a training lever).

With padding-free packing, transformers' SDPA path builds an (N x N) block-diagonal mask, which rules
out SDPA's flash kernel. This attention function instead runs `scaled_dot_product_attention(...,
is_causal=True)` on each packed sample's slice (flash / efficient kernels, no mask, no FLOPs across
samples), given the sample bounds as Python ints (`packed_bounds`, computed once per micro batch by
training/packing.py, so no device sync per layer). Without `packed_bounds` (an unpacked batch, the
vision tower, inference) it is exactly transformers' SDPA attention.

Registered with transformers' AttentionInterface under SDPA_VARLEN; nothing about it is saved with
the model (config.json does not store the attention implementation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SDPA_VARLEN = "sdpa_varlen"


@torch.compiler.disable  # one graph break per layer beats a recompile for every new packing layout
def sdpa_varlen_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                          packed_bounds: tuple[int, ...] | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """query (1, heads, N, d), key/value (1, kv_heads, N, d) -> (1, N, heads, d), as transformers expects."""
    if packed_bounds is None or attention_mask is not None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    if query.shape[0] != 1:
        raise ValueError(f"packed attention expects one row, got a batch of {query.shape[0]}")
    gqa = key.shape[1] != query.shape[1]
    dropout = dropout if module.training else 0.0
    pieces = [
        F.scaled_dot_product_attention(query[:, :, start:end], key[:, :, start:end], value[:, :, start:end],
                                       dropout_p=dropout, is_causal=True, scale=scaling, enable_gqa=gqa)
        for start, end in zip(packed_bounds[:-1], packed_bounds[1:])
    ]
    return torch.cat(pieces, dim=2).transpose(1, 2).contiguous(), None


def register_attention_functions() -> None:
    """Make SDPA_VARLEN a valid `attn_implementation` (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(SDPA_VARLEN, sdpa_varlen_attention)


def set_language_model_attention(lm: torch.nn.Module, implementation: str) -> None:
    """Switch the LM's attention implementation (sdpa, eager, flex_attention, sdpa_varlen)."""
    if implementation == SDPA_VARLEN:
        register_attention_functions()
    if lm.config._attn_implementation == implementation:
        return
    if hasattr(lm, "set_attn_implementation") and implementation != SDPA_VARLEN:
        lm.set_attn_implementation(implementation)
    else:
        lm.config._attn_implementation = implementation  # read by every attention call of the model
