"""The DeepSpeed config dict: the JSON file (configs/deepspeed/*.json) merged with the TrainConfig.

The JSON may leave the batch/clipping/precision keys as "auto"; the learner fills them from the typed
config so one value has one source. The learner owns the optimiser (parameter groups from the model)
and the lr schedule (one lambda per group), so the JSON must not define `optimizer` or `scheduler`.
Everything is checked before DeepSpeed (and any GPU) is touched.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from training.config import TrainConfig

# Keys the learner fills in; the JSON may give them as "auto" or omit them.
FILLED_KEYS = ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping")
OWNED_BY_LEARNER = ("optimizer", "scheduler", "train_batch_size")


# A relative path that does not exist from the working directory is looked up in the repository
# (configs/deepspeed/*.json ship with it), so `streamvln train` works from any folder.
REPO_ROOT = Path(__file__).resolve().parents[1]


def resolve_config_path(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file() and not path.is_absolute() and (REPO_ROOT / path).is_file():
        return REPO_ROOT / path
    return path


def load_deepspeed_json(path: str | Path) -> dict[str, Any]:
    path = resolve_config_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DeepSpeed config not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"DeepSpeed config {path} is not valid JSON: {error}") from error
    validate_deepspeed_dict(data, str(path))
    return data


def validate_deepspeed_dict(data: Any, where: str = "DeepSpeed config") -> None:
    """Check the keys the learner relies on; raise ValueError naming the key."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: top level must be an object")
    for key in OWNED_BY_LEARNER:
        if key in data:
            raise ValueError(f"{where}: remove '{key}': the learner sets it (optimizer groups, lr schedule,"
                             " batch = micro batch x grad accumulation x world size)")
    zero = data.get("zero_optimization")
    if not isinstance(zero, dict):
        raise ValueError(f"{where}: missing object 'zero_optimization' (with 'stage': 0-3)")
    if zero.get("stage") not in (0, 1, 2, 3):
        raise ValueError(f"{where}: zero_optimization.stage must be 0, 1, 2 or 3, got {zero.get('stage')!r}")
    for key in FILLED_KEYS:
        value = data.get(key, "auto")
        if value != "auto" and not isinstance(value, (int, float)):
            raise ValueError(f"{where}: '{key}' must be a number or \"auto\", got {value!r}")
    for precision in ("bf16", "fp16"):
        section = data.get(precision, {})
        if not isinstance(section, dict) or section.get("enabled", "auto") not in ("auto", True, False):
            raise ValueError(f"{where}: '{precision}' must be an object with enabled: true|false|\"auto\"")
    if data.get("fp16", {}).get("enabled") is True:
        raise ValueError(f"{where}: fp16 is not supported by the learner; use bf16")


def merge_deepspeed_config(base: dict[str, Any], config: TrainConfig) -> dict[str, Any]:
    """Fill "auto" keys from `config`; explicit JSON numbers must agree with it (one source of truth)."""
    merged = copy.deepcopy(base)
    wanted = {
        "train_micro_batch_size_per_gpu": config.micro_batch_size,
        "gradient_accumulation_steps": config.grad_accum_steps,
        "gradient_clipping": config.grad_clip,
    }
    for key, value in wanted.items():
        given = merged.get(key, "auto")
        if given != "auto" and given != value:
            raise ValueError(f"DeepSpeed config sets {key}={given} but the train config says {value};"
                             " set it to \"auto\" in the JSON")
        merged[key] = value
    merged["bf16"] = {**merged.get("bf16", {}), "enabled": bool(config.bf16)}
    merged.pop("fp16", None)
    if config.zero_stage is not None:
        merged["zero_optimization"]["stage"] = config.zero_stage
    merged.setdefault("steps_per_print", 10**9)
    deep_update(merged, config.deepspeed_overrides)
    if config.speed.torch_autocast:
        # fp32 weights and grads (no DeepSpeed bf16 wrapper), bf16 compute under torch.autocast
        merged["bf16"] = {"enabled": False}
        merged["torch_autocast"] = {"enabled": True, "dtype": "bfloat16"}
        if learner_clips_gradients(merged):
            merged["gradient_clipping"] = 0.0  # the learner clips with one multi-tensor norm instead
    validate_deepspeed_dict(merged, "DeepSpeed config after train-config overrides")
    return merged


def learner_clips_gradients(ds_config: dict[str, Any]) -> bool:
    """Without ZeRO and DeepSpeed's bf16 wrapper the grads are the fp32 params' .grad: the learner clips
    them with torch's foreach norm (DeepSpeed's own clip takes one norm kernel per tensor)."""
    return (ds_config.get("torch_autocast", {}).get("enabled") is True
            and ds_config["zero_optimization"]["stage"] == 0)


def deep_update(target: dict[str, Any], updates: dict[str, Any]) -> None:
    """Merge `updates` into `target` in place, recursing into nested dicts (values are copied)."""
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            deep_update(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def build_deepspeed_config(config: TrainConfig) -> dict[str, Any]:
    return merge_deepspeed_config(load_deepspeed_json(config.deepspeed_config), config)
