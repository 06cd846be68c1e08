"""The MFU levers of issue 5 on the CPU: bench variant tokens (grad accumulation, DeepSpeed knobs,
autocast), the fp32-weights + torch.autocast learner path with its own foreach clipping, and the
sync-free multimodal insertion + packing (counts measured on the CPU batch)."""

from __future__ import annotations

import json

import pytest
import torch
from learner_fixtures import lm_learner

from agent.multimodal import host_layout, insert_multimodal
from training.deepspeed_config import build_deepspeed_config, learner_clips_gradients
from training.packing import pack_padded
from training.synthetic import SyntheticShape, slowfast_batch


def test_variant_tokens_split_into_run_shape_deepspeed_overrides_and_levers():
    from streamvln.benchmarks.learner_variants import parse_levers, plan_variant

    plan = plan_variant("aolog+varlen+mb3+ga4+zero1+cg0+ovl0+rr+rb50+ab20+igu+noof+gafp32", 2, 2)
    assert (plan.levers, plan.micro_batch, plan.grad_accum, plan.zero_stage) == ("aolog+varlen", 3, 4, 1)
    assert plan.deepspeed_overrides == {
        "zero_optimization": {"contiguous_gradients": False, "overlap_comm": False, "round_robin_gradients": True,
                              "reduce_bucket_size": 50_000_000, "allgather_bucket_size": 20_000_000},
        "bf16": {"immediate_grad_update": True, "check_grad_overflow": False},
        "data_types": {"grad_accum_dtype": "fp32"}}
    default = plan_variant("aolog", 2, 2)
    assert (default.grad_accum, default.micro_batch, default.deepspeed_overrides) == (1, 2, {})
    speed = parse_levers("aolog+autocast+foreach", grad_ckpt=True)
    assert speed.torch_autocast and speed.optimizer_impl == "foreach" and speed.assistant_only_logits
    with pytest.raises(ValueError, match="unknown lever 'ga0'"):
        parse_levers(plan_variant("aolog+ga0", 2, 2).levers, grad_ckpt=True)


def test_deepspeed_config_overrides_and_autocast(make_config):
    merged = build_deepspeed_config(make_config(deepspeed_overrides={"zero_optimization": {"round_robin_gradients": True}}))
    zero = merged["zero_optimization"]
    assert zero["round_robin_gradients"] is True and zero["overlap_comm"] is True  # merged, not replaced
    assert not learner_clips_gradients(merged) and merged["gradient_clipping"] == 1.0

    config = make_config(bf16=True, zero_stage=0)
    config.speed.torch_autocast = True
    merged = build_deepspeed_config(config)
    assert merged["bf16"] == {"enabled": False}
    assert merged["torch_autocast"] == {"enabled": True, "dtype": "bfloat16"}
    assert learner_clips_gradients(merged) and merged["gradient_clipping"] == 0.0  # the learner clips
    config.zero_stage = 2
    assert build_deepspeed_config(config)["gradient_clipping"] == 1.0  # ZeRO clips its own partitions

    bad = make_config(bf16=False)
    bad.speed.torch_autocast = True
    with pytest.raises(ValueError, match="torch_autocast .* needs bf16: true"):
        bad.validate()
    with pytest.raises(ValueError, match="remove 'optimizer'"):
        build_deepspeed_config(make_config(deepspeed_overrides={"optimizer": {"type": "Adam"}}))


@pytest.mark.slow
def test_autocast_learner_with_grad_accumulation_trains_and_clips_itself(make_config):
    config = make_config(bf16=True, zero_stage=0, grad_accum_steps=2, steps=8)
    config.speed.torch_autocast = True
    config.schedule.kind, config.schedule.warmup_steps = "constant", 0
    learner = lm_learner(config, size=4)  # two micro batches per step over the same four samples
    assert not learner.engine.enable_backward_allreduce  # one rank: nothing to all-reduce
    assert isinstance(learner.engine.optimizer, torch.optim.AdamW)  # no DeepSpeed bf16/ZeRO wrapper
    assert all(p.dtype == torch.float32 for p in learner.model.parameters())  # fp32 master weights
    losses = [learner.train_step()["loss"] for _ in range(8)]
    assert losses[-1] < losses[0] - 0.05, losses
    assert learner.engine.global_steps == 8 and learner.engine.micro_steps == 16
    scalars = learner.train_step()
    assert 0 < scalars["grad_norm"] < float("inf")  # the learner's foreach norm (DeepSpeed clips nothing)


def _left_padded(batch: dict) -> dict:
    """The same samples with their padding on the left."""
    out = dict(batch)
    for key, fill in (("input_ids", 0), ("labels", -100), ("attention_mask", 0)):
        rows = []
        for row, mask in zip(batch[key], batch["attention_mask"].bool()):
            kept = row[mask]
            rows.append(torch.cat([torch.full((row.numel() - kept.numel(),), fill, dtype=row.dtype), kept]))
        out[key] = torch.stack(rows)
    return out


@pytest.mark.parametrize("left", [False, True])
def test_insertion_and_packing_read_no_device_values_given_the_host_layout(monkeypatch, left):
    """With the layout measured on the CPU batch, insertion and packing never read a tensor back
    (no .tolist/.item/bool/int of a tensor, no size-reading nonzero): no GPU sync on CUDA."""
    per_frame, dim = 4, 8
    batch = slowfast_batch(SyntheticShape(3, 96, 0.3), 50, per_frame, 16, seed=3)
    batch = _left_padded(batch) if left else batch
    assert int(batch["num_memory"].sum()) > 0 and (batch["attention_mask"] == 0).any()
    frames = torch.randn(batch["images"].shape[0], per_frame, dim)
    text = torch.randn(*batch["input_ids"].shape, dim)
    args = (text, batch["input_ids"], batch["attention_mask"], batch["labels"], frames, batch["image_counts"],
            batch["num_memory"])
    reference = insert_multimodal(*args)
    reference_packed = pack_padded(reference.inputs_embeds, reference.attention_mask, reference.labels)
    layout = host_layout(batch["input_ids"], batch["attention_mask"], batch["image_counts"], batch["num_memory"],
                         frames.shape[0], per_frame)
    assert layout.left_padded == left and layout.total == reference.inputs_embeds.shape[1]

    def no_read_back(*_a, **_k):
        raise AssertionError("a device value was read back on the host")

    for name in ("tolist", "item", "__bool__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, no_read_back)
    monkeypatch.setattr(torch, "nonzero", no_read_back)
    monkeypatch.setattr(torch.Tensor, "nonzero", no_read_back)
    merged = insert_multimodal(*args, layout=layout)
    packed = pack_padded(merged.inputs_embeds, merged.attention_mask, merged.labels, lengths=layout.lengths)
    monkeypatch.undo()
    for got, want in ((merged.inputs_embeds, reference.inputs_embeds), (merged.labels, reference.labels),
                      (merged.position_ids, reference.position_ids), (packed.inputs_embeds, reference_packed.inputs_embeds),
                      (packed.labels, reference_packed.labels), (packed.position_ids, reference_packed.position_ids)):
        assert torch.equal(got, want)
    assert packed.bounds == reference_packed.bounds


def test_host_layout_keeps_the_clear_placeholder_errors():
    batch = slowfast_batch(SyntheticShape(2, 64, 0.5), 50, 4, 16, seed=1)
    counts = batch["image_counts"].clone()
    counts[1] += 1
    with pytest.raises(ValueError, match="image_counts sum to"):
        host_layout(batch["input_ids"], batch["attention_mask"], counts, batch["num_memory"],
                    batch["images"].shape[0], 4)
    memory = batch["num_memory"].clone()
    memory[0] = batch["image_counts"][0] + 1
    with pytest.raises(ValueError, match="sample 0: num_memory"):
        host_layout(batch["input_ids"], batch["attention_mask"], batch["image_counts"], memory,
                    batch["images"].shape[0], 4)


@pytest.mark.slow
def test_bench_grad_accumulation_counts_every_micro_batch(tmp_path):
    from streamvln.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", "learner", "--json", str(out), "--preset", "tiny", "--seq", "64", "--steps", "2",
                 "--warmup", "0", "--micro-batch", "2", "--no-baseline", "--no-slowfast", "--bf16",
                 "--variants", "aolog+varlen+ckpt0,aolog+varlen+ckpt0+ga2+autocast+zero0+foreach"]) == 0
    runs = json.loads(out.read_text())["runs"]
    one, accum = runs["learner_lm:aolog+varlen+ckpt0"], runs["learner_lm:aolog+varlen+ckpt0+ga2+autocast+zero0+foreach"]
    assert (one["grad_accum"], one["micro_batch"]) == (1, 2) and (accum["grad_accum"], accum["micro_batch"]) == (2, 2)
    # an optimizer step of two micro batches does twice the model FLOPs of one
    assert accum["model_tflop_per_step"] == pytest.approx(2 * one["model_tflop_per_step"], rel=0.35)
    assert accum["samples_per_s"] > 0 and "error" not in accum


def test_profile_runs_selects_variants_by_name():
    import argparse

    from streamvln.benchmarks.learner import _wants_profile

    args = argparse.Namespace(profile_runs="aolog+varlen+mb3,baseline_hf")
    assert _wants_profile("learner_slowfast_aolog+varlen+mb3", args) and _wants_profile("baseline_hf", args)
    assert not _wants_profile("learner_slowfast_aolog+varlen+mb3+ga4", args)
    assert _wants_profile("learner_lm_anything", argparse.Namespace(profile_runs=""))
