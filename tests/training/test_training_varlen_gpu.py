"""GPU checks of the fused varlen attention (run on the device machine: pytest -m gpu tests/training)."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.gpu


def _qkv(heads: int, kv_heads: int, tokens: int, dim: int = 64):
    gen = torch.Generator(device="cuda").manual_seed(0)
    make = lambda h: torch.randn(1, h, tokens, dim, device="cuda", dtype=torch.bfloat16,  # noqa: E731
                                 generator=gen).requires_grad_()
    return make(heads), make(kv_heads), make(kv_heads)


@pytest.mark.parametrize("max_seqlen", [1024, 512])  # the packed total, or the blocks' power-of-two bound
@pytest.mark.parametrize("bounds", [[0, 300, 700, 1000, 1024], [0, 300, 700, 1024, 1024]])
def test_fused_varlen_equals_per_sample_sdpa_on_cuda(bounds, max_seqlen):
    """3 samples + a bucket-padding block (the second: empty, the bucket is exactly full)."""
    from training import attention

    assert attention.fused_varlen_available(torch.zeros(1, device="cuda", dtype=torch.bfloat16))
    module = torch.nn.Module()
    q, k, v = _qkv(14, 2, 1024)  # GQA as the small preset (14 query heads, 2 KV heads)
    cu = torch.tensor(bounds, dtype=torch.int32, device="cuda")
    fused, _ = attention.sdpa_varlen_attention(module, q, k, v, None, scaling=0.125, packed_cu_seqlens=cu,
                                               packed_max_seqlen=max_seqlen)
    grads = torch.autograd.grad(fused.float().square().sum(), (q, k, v))
    reference = attention._per_sample_sdpa(q, k, v, cu, 0.0, 0.125)
    ref_grads = torch.autograd.grad(reference.float().square().sum(), (q, k, v))
    assert fused.shape == reference.shape == (1, 1024, 14, 64)
    assert torch.allclose(fused.float(), reference.float(), atol=2e-2, rtol=2e-2)
    for ours, theirs in zip(grads, ref_grads):
        assert torch.allclose(ours.float(), theirs.float(), atol=5e-2, rtol=5e-2)


def test_compiled_packed_lm_has_no_graph_break_on_cuda():
    """The fused op is traced into each compiled layer (with activation checkpointing): no graph break,
    one graph for every packing layout of a length bucket, and the backward runs."""
    from torch._dynamo.utils import counters
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from training.config import SpeedConfig
    from training.model_setup import prepare_model
    from training.modules import CausalLMParts, TrainingModule

    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=128, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)
    model = Qwen2ForCausalLM(config).cuda().to(torch.bfloat16)
    speed = SpeedConfig(packing=True, attn_implementation="sdpa_varlen", compile_blocks=True, pack_multiple=256,
                        compile_shapes="static", compile_backend="aot_eager")
    prepare_model(model, ("mm_language_model",), speed)
    module = TrainingModule(model, speed, CausalLMParts(model))
    # 240, 230, 120, 256 tokens: one bucket (256); the last fills it (an empty padding block)
    for lengths in ([100, 60, 80], [90, 120, 20], [30, 40, 50], [128, 100, 28]):
        width = max(lengths)
        mask = torch.tensor([[1] * n + [0] * (width - n) for n in lengths], device="cuda")
        ids = torch.randint(0, 128, mask.shape, device="cuda")
        labels = torch.where(mask.bool(), ids, torch.full_like(ids, -100))
        out = module({"input_ids": ids, "attention_mask": mask, "labels": labels})
        out.loss.backward()
        assert torch.isfinite(out.loss)
    assert sum(counters["graph_break"].values()) == 0
    assert counters["stats"]["unique_graphs"] == 1
    torch._dynamo.reset()
