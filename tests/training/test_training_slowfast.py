"""The learner with the real SlowFast tiny model, processor and an episode store; `streamvln train`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from training.config import DataSourceConfig, TrainConfig

sys.path.insert(0, str(Path(__file__).parents[1] / "rollout"))
from rollout_fixtures import make_trajectory  # noqa: E402


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    from rollout.store import EpisodeStore, StoreConfig

    root = tmp_path_factory.mktemp("store")
    store = EpisodeStore(root / "store", StoreConfig(fsync=False))
    for index in range(3):
        store.add(make_trajectory(num_steps=40, episode_id=f"ep{index}", size=32))
    return root / "store"


@pytest.fixture(scope="module")
def model_and_processor():
    from training.run import build_model_and_processor

    return build_model_and_processor(TrainConfig(model_preset="tiny"))


def slowfast_config(tmp_path, store_dir, **overrides) -> TrainConfig:
    values = dict(model_preset="tiny", steps=3, bf16=False, out_dir=str(tmp_path / "run"), micro_batch_size=2,
                  progress=False)
    config = TrainConfig(**(values | overrides))
    config.data.sources = [DataSourceConfig(kind="store", path=str(store_dir), name="nav")]
    config.data.num_frames = 16
    config.optim.lr, config.optim.vision_tower_lr, config.optim.projector_lr = 1e-3, 2e-4, 5e-4
    config.schedule.warmup_steps = 1
    config.speed.gradient_checkpointing = False
    return config


def test_frozen_parts_stay_and_group_lrs_keep_their_ratio(tmp_path, store_dir, model_and_processor):
    import copy

    from training.run import build_learner

    model, processor = model_and_processor
    model = copy.deepcopy(model)
    config = slowfast_config(tmp_path, store_dir, tunable_parts=("mm_mlp_adapter",), zero_stage=2)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    learner = build_learner(config, model=model, processor=processor)
    assert learner.group_names == ["projector"]  # no weight decay: decayed and plain weights share a group
    scalars = [learner.train_step() for _ in range(3)]
    assert scalars[0]["lr/projector"] == pytest.approx(5e-4 / 2)  # warmup step 0 of 1
    assert scalars[1]["lr/projector"] == pytest.approx(5e-4)
    after = dict(learner.engine.module.model.named_parameters())
    changed = {name for name, value in before.items() if not torch.equal(value, after[name].detach())}
    assert changed and all(name.startswith("projector.") for name in changed)
    assert scalars[-1]["samples_seen/nav"] == 6
    assert scalars[-1]["mfu"] > 0


def test_vision_tower_lr_ratio_with_all_parts(tmp_path, store_dir, model_and_processor):
    import copy

    from training.run import build_learner

    model, processor = model_and_processor
    config = slowfast_config(tmp_path, store_dir, zero_stage=3,
                             tunable_parts=("mm_vision_tower", "mm_mlp_adapter", "mm_language_model"))
    config.speed.packing, config.speed.attn_implementation = True, "sdpa_varlen"
    learner = build_learner(config, model=copy.deepcopy(model), processor=processor)
    assert learner.model.language_model.config._attn_implementation == "sdpa_varlen"
    for _ in range(2):
        scalars = learner.train_step()
        assert scalars["lr/vision_tower"] / scalars["lr/language_model"] == pytest.approx(0.2)
        assert scalars["lr/projector"] / scalars["lr/language_model"] == pytest.approx(0.5)
        assert scalars["loss/nav"] == pytest.approx(scalars["loss"], rel=1e-4)


def test_empty_store_is_a_clear_error_before_building_the_model(tmp_path):
    from rollout.store import EpisodeStore
    from training.run import build_learner

    EpisodeStore(tmp_path / "empty")
    config = slowfast_config(tmp_path, tmp_path / "empty")
    with pytest.raises(ValueError, match=r"data.sources\[0\] \(store .*empty\) holds no samples"):
        build_learner(config)  # fails before the model is built
    config.data.sources[0].path = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="data.sources\\[0\\].path does not exist"):
        build_learner(config)


@pytest.mark.slow
def test_streamvln_train_cli_trains_resumes_and_exports(tmp_path, store_dir, capsys):
    from streamvln.cli import main

    config = tmp_path / "train.yaml"
    config.write_text(f"""
model_preset: tiny
bf16: false
steps: 2
micro_batch_size: 2
progress: false
optim: {{lr: 1.0e-3}}
data: {{num_frames: 16, sources: [{{kind: store, path: {store_dir}, name: nav}}]}}
speed: {{gradient_checkpointing: false, packing: true}}
""")
    out = tmp_path / "out"
    assert main(["train", "--config", str(config), "--out", str(out)]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["steps"] == 2 and first["checkpoint"].endswith("step_00000002")
    assert (out / "model" / "model.safetensors").is_file() and (out / "model" / "tokenizer.json").is_file()
    assert main(["train", "--config", str(config), "--out", str(out), "--resume", "--steps", "3"]) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert second["steps"] == 3 and second["checkpoint"].endswith("step_00000003")

    straight = tmp_path / "straight"
    assert main(["train", "--config", str(config), "--out", str(straight), "--steps", "3", "--no-export"]) == 0
    capsys.readouterr()

    def losses(folder):
        return [json.loads(line)["loss"] for line in (folder / "metrics.jsonl").read_text().splitlines()]

    assert losses(out) == pytest.approx(losses(straight), rel=1e-5)  # resume through the store sampler is exact

    from agent.modeling import SlowFastForCausalLM

    reloaded = SlowFastForCausalLM.from_pretrained(out / "model")
    assert sum(p.numel() for p in reloaded.parameters()) > 0


def test_cli_reports_a_bad_deepspeed_config(tmp_path, capsys):
    from streamvln.cli import main

    ds = tmp_path / "ds.json"
    ds.write_text('{"zero_optimization": {"stage": 2}, "optimizer": {"type": "Adam"}}')
    config = tmp_path / "train.yaml"
    config.write_text(f"deepspeed_config: {ds}\n")
    assert main(["train", "--config", str(config)]) == 2
    assert "remove 'optimizer'" in capsys.readouterr().err


def test_online_mode_sees_new_episodes_and_publishes_every_k_steps(tmp_path, model_and_processor):
    import copy

    from rollout.store import EpisodeStore, StoreConfig
    from training.run import build_learner

    store = EpisodeStore(tmp_path / "growing", StoreConfig(fsync=False))
    store.add(make_trajectory(num_steps=40, episode_id="first", size=32))
    config = slowfast_config(tmp_path, tmp_path / "growing", steps=4, publish_every=2)
    config.data.refresh_every = 1
    published = []
    model, processor = model_and_processor
    learner = build_learner(config, on_publish=lambda step, m: published.append((step, type(m).__name__)),
                            model=copy.deepcopy(model), processor=processor)
    source = learner.batches.sources["nav"]
    before = len(source)
    learner.train(steps=1)
    store.add(make_trajectory(num_steps=40, episode_id="second", size=32))
    learner.train(steps=3)
    assert len(source) == 2 * before  # the view picked up the new episode while training
    assert published == [(2, "SlowFastForCausalLM"), (4, "SlowFastForCausalLM")]


def test_checkpointing_is_selective_in_the_lm_and_skips_a_frozen_tower(model_and_processor):
    import copy

    from training.model_setup import apply_tunable_parts, decoder_layers, enable_activation_checkpointing

    model = copy.deepcopy(model_and_processor[0])
    apply_tunable_parts(model, ["mm_mlp_adapter", "mm_language_model"])
    assert enable_activation_checkpointing(model, every_n_layers=1) == 2  # both LM layers, no tower block
    apply_tunable_parts(model, ["mm_vision_tower", "mm_language_model"])
    assert enable_activation_checkpointing(model, every_n_layers=2) == 3  # LM layer 0 + both tower blocks
    flags = {type(layer).__name__: [] for layer in decoder_layers(model)}
    for layer in decoder_layers(model):
        flags[type(layer).__name__].append(layer.gradient_checkpointing)
    assert flags["Qwen2DecoderLayer"] == [True, False]


@pytest.mark.slow
def test_two_cpu_ranks_match_one_rank_with_the_same_global_batch(tmp_path, store_dir):
    """torchrun, 2 gloo ranks x micro batch 1 == 1 rank x micro batch 2 == 1 rank x 2 accumulated micro
    batches of 1 (ZeRO-2, the same samples per step: one global batch per optimizer step)."""
    import os
    import subprocess

    def write_config(micro_batch: int, accumulation: int = 1) -> Path:
        path = tmp_path / f"mb{micro_batch}_ga{accumulation}.yaml"
        path.write_text(f"""
model_preset: tiny
bf16: false
steps: 3
micro_batch_size: {micro_batch}
grad_accum_steps: {accumulation}
progress: false
optim: {{lr: 1.0e-3}}
data: {{num_frames: 16, sources: [{{kind: store, path: {store_dir}, name: nav}}]}}
speed: {{gradient_checkpointing: false, packing: true, attn_implementation: sdpa_varlen}}
""")
        return path

    rendezvous = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}
    env = {k: v for k, v in os.environ.items() if k not in rendezvous} | {"PYTHONWARNINGS": "ignore"}
    repo = Path(__file__).parents[2]
    two_ranks = ["-m", "torch.distributed.run", "--nproc_per_node", "2"]
    for out, micro_batch, accumulation, launcher in (("one", 2, 1, []), ("two", 1, 1, two_ranks),
                                                     ("accumulated", 1, 2, [])):
        command = [sys.executable, *launcher, "-m", "streamvln.cli", "train", "--config",
                   str(write_config(micro_batch, accumulation)), "--out", str(tmp_path / out), "--no-export"]
        subprocess.run(command, check=True, cwd=repo, env=env, capture_output=True, timeout=300)

    def losses(name):
        return [json.loads(line)["loss"] for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]

    assert len(losses("two")) == 3
    assert losses("two") == pytest.approx(losses("one"), abs=1e-5)
    assert losses("accumulated") == pytest.approx(losses("one"), abs=1e-5)
    saved = tmp_path / "two" / "checkpoints" / "step_00000003"
    assert (saved / "rng_rank0.json").is_file() and (saved / "rng_rank1.json").is_file()


@pytest.mark.slow
def test_compiled_vision_tower_gives_the_eager_features(model_and_processor):
    import copy

    from training.config import SpeedConfig
    from training.model_setup import prepare_model

    eager = copy.deepcopy(model_and_processor[0]).eval()
    compiled = copy.deepcopy(eager)
    speed = SpeedConfig(gradient_checkpointing=False, compile_vision_tower=True)
    info = prepare_model(compiled, ["mm_mlp_adapter", "mm_language_model"], speed)
    assert info["compiled_layers"] == len(eager.vision_tower.encoder.layers) == 2  # LM blocks stay eager
    size = eager.config.image_size
    frames = torch.randint(0, 256, (3, size, size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = eager.encode_frames(frames)
        assert torch.allclose(compiled.encode_frames(frames), expected, atol=1e-4)
        assert compiled.encode_frames(frames[:2]).shape == expected[:2].shape  # another frame count: no error
