"""The learner on the CPU (DeepSpeed accelerator "cpu") with a tiny Qwen2 LM: ZeRO-2/3 steps, exact
resume, divergence, checkpoint checks, export, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from learner_fixtures import lm_learner, tiny_lm

from training import checkpoint as ckpt
from training.learner import TrainingDiverged


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_stage_steps_reduce_the_loss_on_a_fixed_batch(make_config, stage):
    config = make_config(zero_stage=stage, steps=8)
    config.schedule.kind, config.schedule.warmup_steps = "constant", 0
    learner = lm_learner(config, size=2)  # the same two samples every step
    losses = [learner.train_step()["loss"] for _ in range(8)]
    assert learner.zero_stage == stage
    assert losses[-1] < losses[0] - 0.05, losses
    scalars = learner.train_step()
    for key in ("loss", "loss/nav", "grad_norm", "tokens_per_s", "samples_per_s", "samples_seen/nav"):
        assert key in scalars and scalars[key] == scalars[key]  # present and not NaN


@pytest.mark.parametrize(("stage", "parts"), [(2, True), (3, True), (2, False)])
def test_deepspeed_runs_its_backward_prologue(make_config, stage, parts):
    """DeepSpeed hooks the loss it finds in the module's output to run its backward prologue (timers,
    the ZeRO optimizer's accumulation boundary). With `wall_clock_breakdown` an unpaired backward timer
    fails the step, as it did while the loss sat in a plain dataclass."""
    config = make_config(zero_stage=stage, steps=2, grad_accum_steps=2,
                         deepspeed_overrides={"wall_clock_breakdown": True})
    if not parts:  # the plain Hugging Face path: model(**batch).loss
        config.speed.assistant_only_logits = config.speed.packing = False
    learner = lm_learner(config, parts=parts)
    optimizer, seen = learner.engine.optimizer, []  # the boundary ZeRO-2 reads as each gradient arrives
    if stage == 2:
        process = optimizer.process_gradients
        optimizer.process_gradients = lambda *a: seen.append(optimizer.is_gradient_accumulation_boundary()) or process(*a)
    for _ in range(2):
        assert learner.train_step()["loss"] > 0
    if stage == 2:  # per step: the first micro batch accumulates, the second is the boundary (not one late)
        per_micro_batch = len(seen) // 4
        assert seen == ([False] * per_micro_batch + [True] * per_micro_batch) * 2


def test_lr_follows_warmup_cosine(make_config):
    config = make_config(steps=6)
    config.schedule.warmup_steps, config.schedule.min_lr_ratio = 2, 0.2
    learner = lm_learner(config)
    from training.schedule import lr_multiplier

    multiplier = lr_multiplier(config.schedule, 6)
    assert learner.group_names == ["lm+lm_no_decay"]  # no weight decay: one group with the same lr
    for step in range(6):
        scalars = learner.train_step()
        assert scalars["lr/lm+lm_no_decay"] == pytest.approx(1e-3 * multiplier(step))


def test_groups_with_other_settings_stay_apart(make_config):
    config = make_config(steps=2)
    config.optim.weight_decay = 0.1  # decayed weights and biases / norms now differ: two groups
    learner = lm_learner(config)
    assert learner.group_names == ["lm", "lm_no_decay"]
    assert [g["weight_decay"] for g in learner.engine.optimizer.param_groups] == [0.1, 0.0]
    assert learner.train_step()["loss"] > 0


@pytest.mark.parametrize("stage", [2, 3])
def test_resume_reproduces_the_uninterrupted_run(make_config, tmp_path, stage):
    total, split = 6, 3
    reference = lm_learner(make_config(steps=total, out_dir=str(tmp_path / "a"), zero_stage=stage))
    expected = [reference.train_step()["loss"] for _ in range(total)]

    first = lm_learner(make_config(steps=total, out_dir=str(tmp_path / "b"), zero_stage=stage))
    first.train(steps=split)
    saved = first.save_checkpoint()
    assert json.loads((saved / ckpt.STATE_FILE).read_text())["data"] == {"epoch": 0, "position": split}

    resumed = lm_learner(make_config(steps=total, out_dir=str(tmp_path / "b"), zero_stage=stage), seed=99)
    assert resumed.load_checkpoint() == saved and resumed.step == split
    losses = [resumed.train_step()["loss"] for _ in range(total - split)]
    assert losses == pytest.approx(expected[split:], rel=1e-6)


def test_nan_loss_saves_the_last_good_state_and_stops(make_config):
    config = make_config(steps=10)
    learner = lm_learner(config)
    learner.train(steps=2)
    with torch.no_grad():
        learner.engine.module.model.lm_head.weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="at step 3") as error:
        learner.train()
    saved = ckpt.latest_checkpoint(Path(config.out_dir) / "checkpoints")
    assert saved is not None and str(saved) in str(error.value)
    assert ckpt.read_learner_state(saved)["step"] == 2
    assert ckpt.read_learner_state(saved)["data"]["position"] == 2  # the failing batch is not skipped


def test_checkpoint_of_another_model_is_refused_before_loading(make_config, tmp_path):
    learner = lm_learner(make_config(out_dir=str(tmp_path / "a")))
    saved = learner.save_checkpoint()
    from learner_fixtures import token_stream

    from training.learner import Learner

    other_model = tiny_lm()
    other_model.lm_head = torch.nn.Linear(32, 97, bias=True)  # another parameter set
    from training.modules import CausalLMParts

    other = Learner(make_config(out_dir=str(tmp_path / "b")), other_model, token_stream(),
                    parts=CausalLMParts(other_model))
    with pytest.raises(ValueError, match="saved from a different model"):
        other.load_checkpoint(saved)
    with pytest.raises(FileNotFoundError, match="no checkpoint under"):
        other.load_checkpoint()


def test_periodic_checkpoints_are_pruned(make_config):
    config = make_config(steps=5, checkpoint_every=2, keep_checkpoints=2)
    lm_learner(config).train()
    names = sorted(p.name for p in (Path(config.out_dir) / "checkpoints").glob("step_*"))
    assert names == ["step_00000004", "step_00000005"]  # 2 pruned; the final one added
    assert (Path(config.out_dir) / "tensorboard").is_dir()


def test_zero3_export_gathers_full_weights(make_config, tmp_path):
    learner = lm_learner(make_config(zero_stage=3, steps=2))
    learner.train()
    exported = learner.export(tmp_path / "model")
    from transformers import Qwen2ForCausalLM

    reloaded = Qwen2ForCausalLM.from_pretrained(exported)
    trained = {k: v for k, v in learner.engine._zero3_consolidated_16bit_state_dict().items()}
    weight = reloaded.lm_head.weight
    assert weight.shape == (97, 32)
    assert torch.allclose(weight, trained["model.lm_head.weight"].to(weight.dtype))
    assert not torch.allclose(weight, tiny_lm().lm_head.weight)  # trained, not the initial weights


SIGTERM_CHILD = """
import os, sys, signal
sys.path.insert(0, {fixtures!r})
from learner_fixtures import lm_learner, tiny_config
from pathlib import Path
config = tiny_config(Path({tmp!r}), steps=10000)
learner = lm_learner(config)
learner.on_publish = lambda step, model: print("STEP", step, flush=True)
config.publish_every = 1
learner.train()
print("STOPPED", learner.stopped_by_signal, learner.step, flush=True)
"""


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    code = SIGTERM_CHILD.format(fixtures=str(Path(__file__).parent), tmp=str(tmp_path))
    # Not the rendezvous variables of this process's own (single-rank) group: the child picks a free port.
    rendezvous = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}
    env = {k: v for k, v in os.environ.items() if k not in rendezvous} | {"PYTHONWARNINGS": "ignore"}
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, env=env, cwd=Path(__file__).parents[2])
    for line in child.stdout:
        if line.startswith("STEP 3"):
            child.send_signal(signal.SIGTERM)
            break
    rest = child.stdout.read()
    assert child.wait(timeout=60) == 0
    stopped = [line for line in rest.splitlines() if line.startswith("STOPPED")]
    assert stopped and stopped[0].split()[1] == str(int(signal.SIGTERM))
    step = int(stopped[0].split()[2])
    saved = ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert saved is not None and ckpt.read_learner_state(saved)["step"] == step >= 3


def test_scalars_are_averaged_over_the_logging_window(make_config, tmp_path):
    every_step = lm_learner(make_config(steps=4, log_every=1, out_dir=str(tmp_path / "a")))
    per_step = [every_step.train_step()["loss"] for _ in range(2)]
    windowed = lm_learner(make_config(steps=4, log_every=2, out_dir=str(tmp_path / "b")))
    first, second = windowed.train_step(), windowed.train_step()
    assert "grad_norm" not in first and "tokens_per_s" not in first  # no sync-heavy scalars between logs
    assert first["loss"] == pytest.approx(per_step[0], rel=1e-6)
    from learner_fixtures import token_stream

    from training.stats import labelled_count

    stream = token_stream()  # the same batches the learners saw
    counts = [labelled_count(next(stream)) for _ in range(2)]
    window_mean = (per_step[0] * counts[0] + per_step[1] * counts[1]) / sum(counts)
    assert second["loss"] == pytest.approx(window_mean, rel=1e-6)  # the mean over the window's tokens
    assert "grad_norm" in second and second["samples_seen/nav"] + second["samples_seen/video_qa"] == 4


def test_grad_accumulation_matches_the_larger_micro_batch(make_config, tmp_path):
    """Token-weighted objective: 2 micro batches of 1 == 1 micro batch of 2 (samples differ in length)."""
    one = lm_learner(make_config(micro_batch_size=2, steps=4, out_dir=str(tmp_path / "a")), batch_size=2)
    expected = [one.train_step()["loss"] for _ in range(4)]
    accumulated = lm_learner(make_config(micro_batch_size=1, grad_accum_steps=2, steps=4,
                                         out_dir=str(tmp_path / "b")), batch_size=1)
    assert [accumulated.train_step()["loss"] for _ in range(4)] == pytest.approx(expected, rel=1e-5)
    per_micro = lm_learner(make_config(micro_batch_size=1, grad_accum_steps=2, steps=4, out_dir=str(tmp_path / "c"),
                                       loss_normalization="micro_batch"), batch_size=1)
    other = [per_micro.train_step()["loss"] for _ in range(4)]
    assert other[0] == pytest.approx(expected[0], rel=1e-5)  # same weights, same logged token mean...
    assert other[1:] != pytest.approx(expected[1:], rel=1e-5)  # ...but the mean of means is another gradient


def test_losses_are_read_before_the_update_is_queued(make_config, monkeypatch):
    # The host reads the micro batch's loss while the finite check has drained the GPU; a read after
    # engine.step() would wait for the optimizer's kernels instead of letting them overlap the next batch.
    from training.stats import StepStats

    config = make_config(steps=2, grad_accum_steps=2)
    learner = lm_learner(config)
    events = []
    step, add_loss = learner.engine.step, StepStats.add_loss
    monkeypatch.setattr(learner.engine, "step", lambda *a, **k: events.append("step") or step(*a, **k))
    monkeypatch.setattr(StepStats, "add_loss", lambda self, *a: events.append("loss") or add_loss(self, *a))
    scalars = learner.train_step()
    assert events == ["loss", "step", "loss", "step"]
    assert scalars["loss"] > 0


def test_objective_takes_the_rank_sum_as_a_device_tensor_or_an_int(make_config):
    # With several ranks the step's token count stays on the device (no host read before the forward).
    from types import SimpleNamespace

    from training.learner import Learner

    fake = SimpleNamespace(config=make_config(steps=1, grad_accum_steps=2), world_size=2)
    loss = torch.tensor(1.5)
    as_int = Learner._objective(fake, loss, 3, 24)
    as_tensor = Learner._objective(fake, loss, 3, torch.tensor(24.0))
    assert as_int.item() == pytest.approx(1.5 * 3 * 2 * 2 / 24) and as_tensor.item() == pytest.approx(as_int.item())
    assert Learner._objective(fake, loss, 0, torch.tensor(0.0)).item() == 1.5  # no labelled token anywhere
    assert Learner._objective(fake, loss, 0, 0).item() == 1.5
