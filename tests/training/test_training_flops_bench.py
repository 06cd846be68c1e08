"""FLOP counting and the `streamvln bench learner` benchmark on the CPU (tiny shapes)."""

from __future__ import annotations

import json

import pytest

from training.flops import FlopCounter, LMShape, VisionShape, mfu

LM = LMShape(layers=2, hidden=64, intermediate=128, heads=4, kv_heads=2, vocab=100)


def test_lm_flops_by_hand():
    # per layer: q,o 2*64*64 + k,v 2*64*2*16 + mlp 3*64*128 = 8192 + 4096 + 24576 = 36864 weights
    assert LM.matmul_params_per_layer == 36864
    forward = 2 * 2 * 36864 * 10 + 2 * 2 * 64 * 10**2 + 2 * 64 * 100 * 3
    assert FlopCounter(LM).lm_flops([10], labelled_tokens=3) == pytest.approx(3 * forward)
    # a frozen LM below a trainable projector: forward + activation gradients only
    frozen = FlopCounter(LM, VisionShape(1, 8, 16, 4, 2, 4), train_projector=True, train_lm=False)
    assert frozen.lm_flops([10], 3) == pytest.approx(2 * forward)


def test_vision_flops_count_every_frame_and_freeze_rules():
    vision = VisionShape(layers=1, hidden=8, intermediate=16, patches_per_frame=4, patch_size=2,
                         projected_tokens_per_frame=4)
    tower = 2 * 4 * 3 * 4 * 8 + 2 * (4 * 64 + 2 * 8 * 16) * 4 + 4 * 16 * 8
    projector = 2 * (8 * 64 + 64 * 64) * 4
    counter = FlopCounter(LM, vision, train_vision=False, train_projector=True)
    assert counter.vision_flops(frames=5) == pytest.approx(5 * (1 * tower + 3 * projector))
    assert FlopCounter(LM, vision, train_vision=True, train_projector=True).vision_flops(1) == pytest.approx(
        3 * tower + 3 * projector)
    assert mfu(989e12, 2.0, world_size=1) == pytest.approx(0.5)


@pytest.mark.slow
def test_bench_learner_tiny_on_the_cpu(tmp_path, capsys):
    from streamvln.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", "learner", "--json", str(out), "--preset", "tiny", "--seq", "128", "--steps", "1",
                 "--warmup", "0", "--micro-batch", "2", "--variants", "aolog+pack"]) == 0
    result = json.loads(out.read_text())
    assert set(result["runs"]) == {"baseline_hf", "learner_lm:aolog+pack", "learner_slowfast:aolog+pack"}
    for run in result["runs"].values():
        assert run["tokens_per_s"] > 0 and run["mfu"] > 0 and run["peak_memory_gib"] > 0
    lm = result["runs"]["learner_lm:aolog+pack"]
    assert lm["model_tflop_per_step"] == pytest.approx(result["runs"]["baseline_hf"]["model_tflop_per_step"])
    assert result["runs"]["learner_slowfast:aolog+pack"]["model_tflop_per_step"] > lm["model_tflop_per_step"]
    assert "speedup_vs_baseline" in lm


def test_bench_rejects_unknown_levers():
    from streamvln.benchmarks.learner import parse_levers

    assert parse_levers("aolog+pack+ckpt2", grad_ckpt=True).checkpoint_every_n_layers == 2
    assert parse_levers("ckpt0", grad_ckpt=True).gradient_checkpointing is False
    with pytest.raises(ValueError, match="unknown lever 'fast'"):
        parse_levers("aolog+fast", grad_ckpt=True)
