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
                 "--warmup", "0", "--micro-batch", "2", "--variants", "aolog+pack",
                 "--profile-dir", str(tmp_path / "profiles")]) == 0
    result = json.loads(out.read_text())
    assert set(result["runs"]) == {"baseline_hf", "learner_lm:aolog+pack", "learner_slowfast:aolog+pack"}
    for run in result["runs"].values():
        assert run["tokens_per_s"] > 0 and run["mfu"] > 0 and run["peak_memory_gib"] > 0
        assert run["gpu_busy_fraction"] is None  # no device timeline on the CPU
    tables = sorted((tmp_path / "profiles").glob("*.txt"))
    assert len(tables) == 3 and all("2 steps, wall" in t.read_text() and "aten::" in t.read_text() for t in tables)
    lm = result["runs"]["learner_lm:aolog+pack"]
    assert lm["model_tflop_per_step"] == pytest.approx(result["runs"]["baseline_hf"]["model_tflop_per_step"])
    assert result["runs"]["learner_slowfast:aolog+pack"]["model_tflop_per_step"] > lm["model_tflop_per_step"]
    assert "speedup_vs_baseline" in lm


def test_bench_rejects_unknown_levers():
    from streamvln.benchmarks.learner import parse_levers, split_micro_batch

    assert parse_levers("aolog+pack+ckpt2", grad_ckpt=True).checkpoint_every_n_layers == 2
    assert parse_levers("ckpt0", grad_ckpt=True).gradient_checkpointing is False
    with pytest.raises(ValueError, match="unknown lever 'fast'"):
        parse_levers("aolog+fast", grad_ckpt=True)
    assert split_micro_batch("aolog+mb4+ckpt2", default=2) == ("aolog+ckpt2", 4)
    assert split_micro_batch("aolog", default=2) == ("aolog", 2)
    with pytest.raises(ValueError, match="unknown lever 'mb0'"):
        parse_levers(split_micro_batch("aolog+mb0", default=2)[0], grad_ckpt=True)


def test_hf_flattened_baseline_batch_gives_the_padded_loss():
    """The padding-free baseline (DataCollatorWithFlattening layout) computes the same loss."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from streamvln.benchmarks.learner import flatten_like_hf
    from training.synthetic import SyntheticShape, slowfast_batch, token_batch_like

    torch.manual_seed(0)
    config = Qwen2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=64, vocab_size=100, attn_implementation="sdpa")
    model = Qwen2ForCausalLM(config).eval()
    batch = token_batch_like(slowfast_batch(SyntheticShape(3, 96, 0.3), 100, 4, 16, seed=1), 4, 100)
    assert (batch["attention_mask"] == 0).any()  # the padded layout really has padding
    flat = flatten_like_hf(batch)
    assert flat["input_ids"].shape == (1, int(batch["attention_mask"].sum()))
    assert "attention_mask" not in flat and flat["position_ids"][0, 0] == 0
    with torch.no_grad():
        padded = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        packed = model(**flat, use_cache=False).loss
    assert packed.item() == pytest.approx(padded.item(), rel=1e-5)


def test_bench_run_survives_out_of_memory_and_profiles(tmp_path):
    import argparse

    import torch

    from streamvln.benchmarks import learner as bench
    from training.flops import FlopCounter

    class Runner:
        counter = FlopCounter(LM)
        tokens_per_frame = 0
        closed = False

        def __init__(self, fail: bool):
            self.fail = fail

        def step(self, batch):
            if self.fail:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
            return (torch.randn(64, 64) @ torch.randn(64, 64)).sum()

        def close(self):
            Runner.closed = True

    batch = {"input_ids": torch.zeros(2, 10, dtype=torch.long), "attention_mask": torch.ones(2, 10, dtype=torch.long),
             "labels": torch.zeros(2, 10, dtype=torch.long)}
    args = argparse.Namespace(warmup=1, steps=2, peak_flops=1e12, profile_dir=str(tmp_path / "prof"))
    failed = bench._guarded(lambda: Runner(fail=True), [batch], args, 1, "oom run")
    assert failed["error"].startswith("out of memory") and Runner.closed
    ok = bench._guarded(lambda: Runner(fail=False), [batch], args, 1, "ok run")
    assert ok["tokens_per_s"] > 0 and ok["mfu_lm_head_all_tokens"] > ok["mfu"]
    table = (tmp_path / "prof" / "ok_run.txt").read_text()
    assert table.startswith("ok run: 2 steps") and "aten::mm" in table


def test_bench_writes_each_run_as_it_finishes_and_honours_the_run_budget(tmp_path, monkeypatch, capsys):
    """A timeout later in the benchmark still leaves the finished runs' numbers in the JSON file."""
    import argparse

    from streamvln.benchmarks import learner as bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    out = tmp_path / "partial.json"
    args = parser.parse_args(["--preset", "tiny", "--seq", "64", "--steps", "3", "--warmup", "0", "--no-baseline",
                              "--no-slowfast", "--run-budget-s", "1e-9",
                              "--variants", "aolog+varlen+bucket32+zero0,aolog+varlen"])
    args.json = str(out)
    real_guarded, calls = bench._guarded, []

    def guarded_then_killed(*a, **k):
        calls.append(a[-1])
        if len(calls) == 2:
            raise KeyboardInterrupt  # what `timeout` does to the second run
        return real_guarded(*a, **k)

    monkeypatch.setattr(bench, "_guarded", guarded_then_killed)
    with pytest.raises(KeyboardInterrupt):
        bench.run(args)
    result = json.loads(out.read_text())
    assert result["partial"] is True and list(result["runs"]) == ["learner_lm:aolog+varlen+bucket32+zero0"]
    first = result["runs"]["learner_lm:aolog+varlen+bucket32+zero0"]
    assert first["steps_timed"] == 1 and first["budget_hit"] is True and first["tokens_per_s"] > 0
    assert first["compiled_graphs"] == 0 and first["graph_breaks"] == 0
    assert "[bench learner] learner_lm:aolog+varlen+bucket32+zero0: {'tokens_per_s'" in capsys.readouterr().err


def test_variant_levers_for_buckets_compile_shapes_and_zero_stage():
    from streamvln.benchmarks.learner import parse_levers, split_zero_stage

    levers, stage = split_zero_stage("aolog+varlen+zero0+bucket256+static", 2)
    assert (levers, stage) == ("aolog+varlen+bucket256+static", 0)
    speed = parse_levers(levers, grad_ckpt=True)
    assert speed.pack_multiple == 256 and speed.compile_shapes == "static" and speed.packing
    assert split_zero_stage("aolog", 2) == ("aolog", 2)
