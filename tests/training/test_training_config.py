"""Config validation, DeepSpeed JSON checks and the lr schedule (no DeepSpeed engine needed)."""

from __future__ import annotations

import json

import pytest
import torch

from training.config import ScheduleConfig, TrainConfig, load_train_config
from training.deepspeed_config import build_deepspeed_config, load_deepspeed_json, merge_deepspeed_config
from training.schedule import build_scheduler, lr_multiplier


def write_yaml(tmp_path, text: str):
    path = tmp_path / "train.yaml"
    path.write_text(text)
    return path


def test_yaml_loads_nested_sections_and_overrides(tmp_path):
    path = write_yaml(tmp_path, """
model_preset: tiny
steps: 7
tunable_parts: mm_mlp_adapter,mm_language_model
optim: {lr: 1.0e-4, vision_tower_lr: 2.0e-5}
schedule: {warmup_steps: 2, min_lr_ratio: 0.1}
data:
  sources:
    - {kind: store, path: /data/store, weight: 3}
    - {kind: llava_qa, path: /data/qa.json, weight: 1, name: qa}
speed: {packing: true}
""")
    config = load_train_config(path, overrides={"steps": 9, "out_dir": None})
    assert config.steps == 9  # CLI override wins; None overrides are ignored
    assert config.tunable_parts == ("mm_mlp_adapter", "mm_language_model")
    assert config.optim.lr == 1e-4 and config.schedule.min_lr_ratio == 0.1
    assert [s.label for s in config.data.sources] == ["store:store", "qa"]
    assert config.speed.packing is True


@pytest.mark.parametrize("text, message", [
    ("stepz: 3\n", "unknown keys ['stepz']"),
    ("optim: {lrr: 1}\n", "optim: unknown keys ['lrr']"),
    ("zero_stage: 5\n", "zero_stage must be 0-3"),
    ("tunable_parts: [mm_vision]\n", "unknown parts ['mm_vision']"),
    ("micro_batch_size: 0\n", "micro_batch_size must be >= 1"),
    ("schedule: {min_lr_ratio: 2}\n", "schedule.min_lr_ratio"),
    ("data: {sources: [{kind: ftp, path: x}]}\n", "data.sources[0].kind"),
    ("data: {sources: [{kind: store}]}\n", "data.sources[0]"),
    ("speed: {attn_implementation: flash}\n", "speed.attn_implementation"),
])
def test_bad_config_names_the_field(tmp_path, text, message):
    with pytest.raises(ValueError) as error:
        load_train_config(write_yaml(tmp_path, text))
    assert message in str(error.value)


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="train config not found"):
        load_train_config(tmp_path / "nope.yaml")


def write_json(tmp_path, data) -> str:
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


@pytest.mark.parametrize("data, message", [
    ("{not json", "not valid JSON"),
    ({"bf16": {"enabled": True}}, "missing object 'zero_optimization'"),
    ({"zero_optimization": {"stage": 4}}, "zero_optimization.stage must be"),
    ({"zero_optimization": {"stage": 2}, "optimizer": {"type": "AdamW"}}, "remove 'optimizer'"),
    ({"zero_optimization": {"stage": 2}, "scheduler": {}}, "remove 'scheduler'"),
    ({"zero_optimization": {"stage": 2}, "gradient_clipping": "big"}, "'gradient_clipping' must be a number"),
    ({"zero_optimization": {"stage": 2}, "fp16": {"enabled": True}}, "fp16 is not supported"),
])
def test_bad_deepspeed_json_is_rejected_before_training(tmp_path, data, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("'", "'")):
        load_deepspeed_json(write_json(tmp_path, data))


def test_deepspeed_auto_values_come_from_the_train_config():
    config = TrainConfig(micro_batch_size=3, grad_accum_steps=4, grad_clip=0.5, bf16=False, zero_stage=3)
    merged = build_deepspeed_config(config)
    assert merged["train_micro_batch_size_per_gpu"] == 3
    assert merged["gradient_accumulation_steps"] == 4
    assert merged["gradient_clipping"] == 0.5
    assert merged["bf16"]["enabled"] is False
    assert merged["zero_optimization"]["stage"] == 3


def test_deepspeed_explicit_value_must_agree():
    base = {"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": 8}
    with pytest.raises(ValueError, match="train_micro_batch_size_per_gpu=8 but the train config says 2"):
        merge_deepspeed_config(base, TrainConfig(micro_batch_size=2))


def test_warmup_then_cosine_to_min_ratio():
    multiplier = lr_multiplier(ScheduleConfig(warmup_steps=4, min_lr_ratio=0.1), total_steps=14)
    values = [multiplier(step) for step in range(16)]
    assert values[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])  # linear warmup
    assert values[4] == pytest.approx(1.0)  # peak right after warmup
    assert values[9] == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the cosine
    assert values[14] == pytest.approx(0.1) and values[15] == pytest.approx(0.1)  # floor at min ratio
    assert all(a >= b for a, b in zip(values[4:], values[5:]))  # monotone decay


def test_scheduler_keeps_the_ratio_between_groups():
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
    optimizer = torch.optim.AdamW([{"params": [params[0]], "lr": 2e-5}, {"params": [params[1]], "lr": 5e-6}])
    scheduler = build_scheduler(optimizer, ScheduleConfig(warmup_steps=2, min_lr_ratio=0.0), total_steps=10)
    for _ in range(6):
        lm, vision = (group["lr"] for group in optimizer.param_groups)
        assert vision / lm == pytest.approx(0.25)
        optimizer.step()
        scheduler.step()
    state = scheduler.state_dict()  # the multiplier is a dataclass: the state round-trips
    assert state["last_epoch"] == 6
