"""`sdpa_varlen`: causal attention within packed samples (a training lever).

With padding-free packing, transformers' SDPA path builds an (N x N) block-diagonal mask, which rules
out SDPA's flash kernel. This attention function instead reads the packed layout from two kwargs that
training/modules.py passes through the LM (`packed_cu_seqlens`: int32 (S + 1,) sample starts and the
total, on the model device; `packed_max_seqlen`: an int, an upper bound of a sample's length, which
the flash kernels size their grid and buffers by, per sample):

- CUDA: one fused varlen flash-attention call per layer for the whole micro batch
  (torch.nn.attention.varlen, a torch.library custom op: torch.compile traces it, no graph break, and
  the layout is data, not a shape, so new packings do not recompile);
- otherwise (CPU, or a torch without varlen): causal SDPA per sample slice (a graph break under compile).

Without `packed_cu_seqlens` (an unpacked batch, the vision tower, inference) it is exactly transformers'
SDPA attention. Registered with transformers' AttentionInterface under SDPA_VARLEN; nothing about it is
saved with the model (config.json does not store the attention implementation).
"""

from __future__ import annotations

import inspect
from functools import lru_cache

import torch
import torch.nn.functional as F

SDPA_VARLEN = "sdpa_varlen"


@lru_cache(maxsize=1)
def _varlen_api() -> tuple[object, frozenset[str]] | None:
    """(varlen_attn, its keyword names) or None; the signature changed across torch releases
    (2.9: is_causal; 2.10+: window_size, scale; 2.12+: enable_gqa)."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn, frozenset(inspect.signature(varlen_attn).parameters)


def fused_varlen_available(query: torch.Tensor) -> bool:
    """The fused path runs on CUDA half-precision tensors (flash attention's dtypes)."""
    return query.is_cuda and query.dtype in (torch.float16, torch.bfloat16) and _varlen_api() is not None


def _fused_varlen(query, key, value, cu_seqlens, max_seqlen: int, scaling: float | None) -> torch.Tensor:
    """query (1, heads, N, d), key/value (1, kv_heads, N, d) -> (1, N, heads, d)."""
    varlen_attn, params = _varlen_api()
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (N, heads, d), last dim contiguous
    kwargs = {}
    if "is_causal" in params:
        kwargs["is_causal"] = True
    else:
        kwargs["window_size"] = (-1, 0)  # causal in the 2.10+ API
    if "scale" in params and scaling is not None:
        kwargs["scale"] = scaling
    if k.shape[1] != q.shape[1]:
        if "enable_gqa" in params:
            kwargs["enable_gqa"] = True
        else:  # older API: repeat KV heads (GQA groups are consecutive query heads)
            groups = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    out = varlen_attn(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, **kwargs)
    return out.unsqueeze(0)


@torch.compiler.disable  # the per-sample loop has data-dependent slices: keep it out of compiled graphs
def _per_sample_sdpa(query, key, value, cu_seqlens, dropout: float, scaling: float | None) -> torch.Tensor:
    bounds = cu_seqlens.tolist()  # free on the CPU; a sync on CUDA (this path is the fallback there)
    gqa = key.shape[1] != query.shape[1]
    pieces = [
        F.scaled_dot_product_attention(query[:, :, start:end], key[:, :, start:end], value[:, :, start:end],
                                       dropout_p=dropout, is_causal=True, scale=scaling, enable_gqa=gqa)
        for start, end in zip(bounds[:-1], bounds[1:]) if end > start  # an empty bucket-padding block
    ]
    return torch.cat(pieces, dim=2).transpose(1, 2).contiguous()


def sdpa_varlen_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                          packed_cu_seqlens: torch.Tensor | None = None, packed_max_seqlen: int = 0,
                          **kwargs) -> tuple[torch.Tensor, None]:
    """query (1, heads, N, d), key/value (1, kv_heads, N, d) -> (1, N, heads, d), as transformers expects."""
    if packed_cu_seqlens is None or attention_mask is not None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    if query.shape[0] != 1:
        raise ValueError(f"packed attention expects one row, got a batch of {query.shape[0]}")
    dropout = dropout if module.training else 0.0
    device = query.device.type
    if torch.is_autocast_enabled(device) and query.dtype == torch.float32:  # a custom op: autocast skips it
        dtype = torch.get_autocast_dtype(device)
        query, key, value = query.to(dtype), key.to(dtype), value.to(dtype)
    if dropout == 0.0 and fused_varlen_available(query):
        return _fused_varlen(query, key, value, packed_cu_seqlens, packed_max_seqlen, scaling), None
    return _per_sample_sdpa(query, key, value, packed_cu_seqlens, dropout, scaling), None


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
