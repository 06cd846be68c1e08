"""Exact resume of the fp32-weights + torch.autocast(bf16) learner path (speed.torch_autocast, ZeRO 0):
the state it keeps outside DeepSpeed's bf16/ZeRO files (the torch AdamW state in the engine's model file,
the lr schedule, the data position with grad accumulation, the RNG) comes back; and a checkpoint of that
path is refused, with the mismatch named, by a learner on DeepSpeed's bf16 path (and the other way round)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from learner_fixtures import lm_learner, tiny_lm, token_stream

from training import checkpoint as ckpt
from training.learner import Learner


def autocast_config(make_config, out_dir, **overrides):
    config = make_config(bf16=True, zero_stage=0, out_dir=str(out_dir), **overrides)
    config.speed.torch_autocast = True
    return config


def with_dropout(learner, p: float = 0.1):
    """Attention dropout, so the losses depend on the torch RNG stream too (the tiny LM has none)."""
    for layer in learner.model.model.layers:
        layer.self_attn.attention_dropout = p
    return learner


def test_autocast_resume_with_grad_accumulation_reproduces_the_uninterrupted_run(make_config, tmp_path):
    # 16 samples in micro batches of 2: 8 micro batches per epoch, 4 optimizer steps of 2 micro batches;
    # the 6 steps cross an epoch, and the resume restarts the loader mid-epoch (epoch 0, position 6).
    total, split = 6, 3

    def config(out):
        return autocast_config(make_config, tmp_path / out, steps=total, grad_accum_steps=2, grad_clip=0.05)

    reference = with_dropout(lm_learner(config("a")))
    assert isinstance(reference.engine.optimizer, torch.optim.AdamW)  # no DeepSpeed wrapper: torch's state
    assert reference.engine.torch_autocast_z0_gradscaler is None  # bf16: no grad scaler to save
    expected = [reference.train_step() for _ in range(total)]
    assert all(s["grad_norm"] > 0.05 for s in expected)  # pre-clip norms: the learner clips every step
    # the warmup + cosine schedule changes the lr at every step, so a lost scheduler state shows
    assert len({s["lr/lm+lm_no_decay"] for s in expected[split:]}) == total - split

    first = with_dropout(lm_learner(config("b")))
    first.train(steps=split)
    saved = first.save_checkpoint()
    state = json.loads((saved / ckpt.STATE_FILE).read_text())
    assert state["data"] == {"epoch": 0, "position": split * 2}  # micro batches, not steps
    assert state["engine_layout"] == {"weights": "fp32", "zero": "0"}
    moments = first.engine.optimizer.state_dict()["state"]

    resumed = with_dropout(lm_learner(config("b"), seed=99))  # other initial weights: all must be loaded
    assert resumed.load_checkpoint() == saved and resumed.step == split
    assert all(p.dtype == torch.float32 for p in resumed.model.parameters())  # the fp32 weights themselves
    loaded = resumed.engine.optimizer.state_dict()["state"]
    assert loaded.keys() == moments.keys() and all(
        torch.equal(loaded[i][k], moments[i][k]) for i in moments for k in ("exp_avg", "exp_avg_sq", "step"))
    got = [resumed.train_step() for _ in range(total - split)]
    # Exact: the same fp32 weights, Adam moments, lr, batches and dropout masks in the same process give
    # bitwise-equal CPU kernels (pytest.approx only for its readable diff).
    assert [s["loss"] for s in got] == pytest.approx([s["loss"] for s in expected[split:]], rel=0, abs=0)
    assert [s["lr/lm+lm_no_decay"] for s in got] == [s["lr/lm+lm_no_decay"] for s in expected[split:]]
    assert resumed.engine.global_steps == total


@pytest.mark.parametrize("saved_autocast", [True, False], ids=["autocast_into_bf16", "bf16_into_autocast"])
def test_checkpoint_of_the_other_precision_path_is_refused_before_loading(make_config, tmp_path, saved_autocast):
    def config(out, autocast):
        config = make_config(bf16=True, zero_stage=0 if autocast else 2, out_dir=str(tmp_path / out))
        config.speed.torch_autocast = autocast
        return config

    source = lm_learner(config("a", saved_autocast))
    source.train(steps=1)
    saved = source.save_checkpoint()

    target = lm_learner(config("b", not saved_autocast), seed=99)
    before = {name: p.detach().clone() for name, p in target.model.named_parameters()}
    saved_weights, current_weights = ("fp32", "bf16") if saved_autocast else ("bf16", "fp32")
    with pytest.raises(ValueError, match=f"holds {saved_weights} weights .* this run has {current_weights} "
                                         f"weights .* cannot load one as the other"):
        target.load_checkpoint(saved)
    assert target.step == 0  # refused before DeepSpeed touched the engine
    assert all(torch.equal(before[name], p) for name, p in target.model.named_parameters())


def test_engine_layout_accepts_what_deepspeed_can_load():
    def layout(stage, bf16):
        return ckpt.engine_layout({"zero_optimization": {"stage": stage}, "bf16": {"enabled": bf16}})

    assert layout(1, True) == layout(2, True)  # ZeRO-1 and -2 partitions load into each other
    assert layout(0, False) == {"weights": "fp32", "zero": "0"}  # autocast or fp32: the same files
    ckpt.check_engine_layout(None, layout(0, False), Path("old"))  # from before the layout was saved
    with pytest.raises(ValueError, match="ZeRO stage 3 optimizer state; this run .* ZeRO stage 1/2"):
        ckpt.check_engine_layout(layout(3, True), layout(2, True), Path("ckpt"))


def test_autocast_refuses_bf16_trainable_weights(make_config, tmp_path):
    model = tiny_lm().to(torch.bfloat16)
    with pytest.raises(ValueError, match="torch_autocast trains fp32 weights .* torch.bfloat16"):
        Learner(autocast_config(make_config, tmp_path / "run"), model, token_stream())


def test_model_path_loads_fp32_weights_for_autocast(make_config, tmp_path):
    from training.run import build_model_and_processor

    config = make_config(bf16=True)
    model, processor = build_model_and_processor(config)  # the tiny preset, random init
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    config.model_path = str(tmp_path / "model")
    assert {p.dtype for p in build_model_and_processor(config)[0].parameters()} == {torch.bfloat16}
    config.speed.torch_autocast = True  # fp32 weights: the torch optimizer updates them directly
    assert {p.dtype for p in build_model_and_processor(config)[0].parameters()} == {torch.float32}
