"""Bucketed packing, the fused varlen attention path (its plumbing, with a CPU stand-in for the CUDA
flash kernel) and torch.compile graph counts of the packed LM layers."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from learner_fixtures import TokenDataset, collate_tokens, tiny_lm

import training.attention as attention
from training.config import SpeedConfig
from training.model_setup import prepare_model
from training.modules import CausalLMParts, TrainingModule
from training.packing import bucketed_length, next_power_of_two, pack_padded


def causal_per_block(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor) -> torch.Tensor:
    """(N, heads, d) causal attention per cu block: what flash varlen computes (differentiable)."""
    bounds = cu.tolist()
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    pieces = [F.scaled_dot_product_attention(*(t[s:e].transpose(0, 1) for t in (q, k, v)), is_causal=True)
              for s, e in zip(bounds[:-1], bounds[1:])]
    return torch.cat(pieces, dim=1).transpose(0, 1)


@torch.library.custom_op("streamvln_tests::varlen_reference", mutates_args=())
def varlen_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor) -> torch.Tensor:
    """The same as an opaque op with a fake kernel, as dynamo sees torch's varlen op (forward only)."""
    return causal_per_block(q, k, v, cu).contiguous()


@varlen_reference.register_fake
def _(q, k, v, cu):
    return torch.empty_like(q)


def _use_stand_in(monkeypatch, params: frozenset[str], calls: list | None, opaque: bool = False) -> None:
    def varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k, **kwargs):
        if calls is not None:  # (not under compile: a growing list would be a guard failure each call)
            calls.append((q.shape, k.shape, max_q, dict(kwargs)))
        return (varlen_reference if opaque else causal_per_block)(q, k, v, cu_q)

    monkeypatch.setattr(attention, "_varlen_api", lambda: (varlen_attn, params))
    monkeypatch.setattr(attention, "fused_varlen_available", lambda query: True)


def _batches(count: int, per_batch: int = 4) -> list[dict]:
    data = TokenDataset(count * per_batch, seed=2)
    return [collate_tokens([data[i] for i in range(b * per_batch, (b + 1) * per_batch)]) for b in range(count)]


def test_bucketed_packing_pads_a_masked_trailing_block():
    embeds = torch.arange(2 * 4, dtype=torch.float32).view(2, 4, 1)
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])
    labels = torch.tensor([[5, 6, 7, -100], [-100, 8, 9, 10]])
    packed = pack_padded(embeds, mask, labels, multiple=4)
    assert packed.inputs_embeds.shape == (1, 8, 1) and packed.real_tokens == 6
    assert packed.inputs_embeds.flatten().tolist() == [0, 1, 2, 5, 6, 7, 0, 0]
    assert packed.labels.tolist() == [[-100, 6, 7, -100, 9, 10, -100, -100]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 0, 1, 2, 0, 1]]  # padding is its own block
    # the longest sample or padding block (up to multiple - 1) as a power of two: 3 -> 4 (the total, 8,
    # would size the kernels' grid and buffers as samples x N)
    assert packed.cu_seqlens.tolist() == [0, 3, 6, 8] and packed.max_seqlen == 4
    assert pack_padded(embeds, mask, labels, multiple=16).max_seqlen == 16  # a 10-token padding block
    assert pack_padded(embeds, mask, labels).cu_seqlens.tolist() == [0, 3, 6]  # no bucket: no padding block
    exact = pack_padded(embeds, mask, labels, multiple=3)  # 6 tokens fill the bucket: an empty padding block
    assert exact.cu_seqlens.tolist() == [0, 3, 6, 6] and exact.inputs_embeds.shape[1] == 6
    assert [bucketed_length(n, 256) for n in (1, 256, 257)] == [256, 256, 512] and bucketed_length(7, 0) == 7
    assert [next_power_of_two(n) for n in (1, 2, 3, 200, 256, 257)] == [1, 2, 4, 256, 256, 512]
    # without buckets: the longest sample as a power of two, not the packed total (the kernels' grid and
    # buffers are samples x max_seqlen)
    assert pack_padded(embeds, mask, labels).max_seqlen == 4
    wide = torch.ones(3, 200, dtype=torch.long)
    wide[:, 150:] = 0
    unbucketed = pack_padded(torch.zeros(3, 200, 1), wide, torch.zeros(3, 200, dtype=torch.long))
    assert unbucketed.real_tokens == 450 and unbucketed.max_seqlen == 256


@pytest.mark.parametrize("params", [frozenset({"window_size"}), frozenset({"window_size", "enable_gqa", "scale"}),
                                    frozenset({"is_causal"})])
def test_fused_path_equals_per_sample_sdpa_with_buckets(monkeypatch, params):
    """Same loss and gradients as the per-sample loop, for each varlen API generation (GQA repeated or native);
    the bucket padding changes nothing."""
    model = tiny_lm(seed=3).eval()
    batch = _batches(1)[0]
    attention.set_language_model_attention(model, attention.SDPA_VARLEN)
    loop = TrainingModule(model, SpeedConfig(packing=True, attn_implementation="sdpa_varlen"), CausalLMParts(model))
    reference = loop(batch)
    reference_grad = torch.autograd.grad(reference.loss, model.model.layers[0].self_attn.q_proj.weight)[0]
    calls = []
    _use_stand_in(monkeypatch, params, calls)
    fused_model = copy.deepcopy(model)
    speed = SpeedConfig(packing=True, attn_implementation="sdpa_varlen", pack_multiple=32)
    fused = TrainingModule(fused_model, speed, CausalLMParts(fused_model))(batch)
    grad = torch.autograd.grad(fused.loss, fused_model.model.layers[0].self_attn.q_proj.weight)[0]
    assert fused.loss.item() == pytest.approx(reference.loss.item(), rel=1e-5)
    assert torch.allclose(grad, reference_grad, atol=1e-6)
    assert int(fused.num_tokens) == int(batch["attention_mask"].sum())  # real tokens, padding excluded
    assert len(calls) == 2  # one call per layer for the whole micro batch
    shape_q, shape_k, max_q, kwargs = calls[0]
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    total = bucketed_length(sum(lengths), 32)
    assert shape_q[0] == total and max_q == next_power_of_two(max(*lengths, 31)) < total
    causal = {"is_causal": True} if "is_causal" in params else {"window_size": (-1, 0)}
    assert causal.items() <= kwargs.items()
    assert (shape_k[1] == 2) == ("enable_gqa" in params)  # KV heads repeated only without native GQA


def test_unbucketed_fused_call_gets_the_longest_sample_as_its_bound(monkeypatch):
    """Without buckets the kernels are told the longest sample (as a power of two), not the packed total."""
    model = tiny_lm(seed=3).eval()
    attention.set_language_model_attention(model, attention.SDPA_VARLEN)
    batch = _batches(1)[0]
    calls = []
    _use_stand_in(monkeypatch, frozenset({"window_size"}), calls)
    TrainingModule(model, SpeedConfig(packing=True, attn_implementation="sdpa_varlen"), CausalLMParts(model))(batch)
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    shape_q, _, max_q, _ = calls[0]
    assert shape_q[0] == sum(lengths) and max_q == next_power_of_two(max(lengths)) < sum(lengths)


def _compiled_forward_counts(monkeypatch, shapes: str, multiple: int, batches: list[dict]) -> tuple[int, int]:
    from torch._dynamo.utils import counters

    _use_stand_in(monkeypatch, frozenset({"window_size", "enable_gqa"}), None, opaque=True)
    torch._dynamo.reset()
    counters.clear()
    model = tiny_lm(seed=1)
    speed = SpeedConfig(packing=True, attn_implementation="sdpa_varlen", compile_blocks=True, pack_multiple=multiple,
                        compile_shapes=shapes, compile_backend="aot_eager", gradient_checkpointing=True)
    prepare_model(model, ("mm_language_model",), speed)
    module = TrainingModule(model, speed, CausalLMParts(model))
    with torch.no_grad():
        for batch in batches:
            module(batch)
    graphs, breaks = counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())
    torch._dynamo.reset()
    return graphs, breaks


def test_static_compile_builds_one_graph_per_length_bucket(monkeypatch):
    batches = _batches(5)
    lengths = {int(b["attention_mask"].sum()) for b in batches}
    assert len(lengths) >= 3  # the packed length changes from batch to batch
    buckets = {bucketed_length(n, 128) for n in lengths}
    graphs, breaks = _compiled_forward_counts(monkeypatch, "static", 128, batches)
    assert breaks == 0 and graphs == len(buckets) == 1  # all layers share it, no recompile per layout
    graphs, breaks = _compiled_forward_counts(monkeypatch, "static", 0, batches)
    assert breaks == 0 and graphs == len(lengths)  # without buckets: one graph per new length
    graphs, breaks = _compiled_forward_counts(monkeypatch, "auto", 0, batches)
    assert breaks == 0 and graphs <= 3  # static first, then symbolic lengths


def test_speed_config_rejects_bad_compile_settings():
    for bad in ({"pack_multiple": -1}, {"compile_shapes": "sometimes"}, {"compile_backend": "tvm"}):
        with pytest.raises(ValueError, match="speed."):
            SpeedConfig(**bad).validate()


@pytest.mark.parametrize("implementation, warned", [("sdpa", True), ("eager", True), ("sdpa_varlen", False)])
def test_packing_with_a_dense_mask_attention_is_warned(caplog, implementation, warned):
    speed = SpeedConfig(packing=True, attn_implementation=implementation, gradient_checkpointing=False)
    with caplog.at_level("WARNING", logger="training.model_setup"):
        prepare_model(tiny_lm(seed=1), ("mm_language_model",), speed)
    assert any("square of the micro batch" in record.message for record in caplog.records) == warned
