"""Load LLaVA-Video-7B-Qwen2 / StreamVLN checkpoint directories (LLaVA state-dict layout) into our model.

LLaVA layout -> ours:
  model.vision_tower.vision_tower.vision_model.{embeddings,encoder}.*  -> vision_tower.{embeddings,encoder}.*
  model.vision_tower.vision_tower.vision_model.{post_layernorm,head}.*  -> dropped (features are pre-norm)
  model.mm_projector.{0,2}.*                                           -> projector.{0,2}.*
  model.{embed_tokens,layers,norm}.*                                   -> language_model.model.*
  lm_head.*                                                            -> language_model.lm_head.*
Anything else (e.g. LLaVA's image_newline) is reported as unexpected. A directory whose keys lack any
of the three parts is another architecture: a ValueError names the missing part and sample keys.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from agent.config import SlowFastConfig

_TOWER = r"^model\.vision_tower\.vision_tower\.vision_model\."
# (pattern, replacement); replacement None = a known key we deliberately drop.
LLAVA_RULES: tuple[tuple[re.Pattern, str | None], ...] = (
    (re.compile(_TOWER + r"(embeddings|encoder)\."), r"vision_tower.\1."),
    (re.compile(_TOWER + r"(post_layernorm|head)\."), None),
    (re.compile(r"^model\.mm_projector\.([02])\."), r"projector.\1."),
    (re.compile(r"^model\.(embed_tokens|layers|norm)\."), r"language_model.model.\1."),
    (re.compile(r"^lm_head\."), "language_model.lm_head."),
)
_PART_PREFIXES = {"vision tower": "vision_tower.", "projector": "projector.", "language model": "language_model."}


@dataclass
class LoadReport:
    missing: list[str] = field(default_factory=list)  # our keys the checkpoint did not provide
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys with no place in our model
    dropped: list[str] = field(default_factory=list)  # known checkpoint keys we do not use

    def summary(self) -> str:
        return f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, {len(self.dropped)} dropped keys"


def map_llava_key(key: str) -> tuple[bool, str | None]:
    """(matched, new_key): new_key None for a matched key that is dropped."""
    for pattern, replacement in LLAVA_RULES:
        if pattern.search(key):
            return True, None if replacement is None else pattern.sub(replacement, key, count=1)
    return False, None


def convert_llava_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """Rename LLaVA-layout tensors to ours; unknown keys go to report.unexpected."""
    mapped: dict[str, torch.Tensor] = {}
    report = LoadReport()
    for key, tensor in state.items():
        matched, new_key = map_llava_key(key)
        if not matched:
            report.unexpected.append(key)
        elif new_key is None:
            report.dropped.append(key)
        else:
            mapped[new_key] = tensor
    for part, prefix in _PART_PREFIXES.items():
        if not any(k.startswith(prefix) for k in mapped):
            sample = sorted(state)[:5]
            raise ValueError(
                f"not a LLaVA/StreamVLN checkpoint: no {part} weights (expected keys like "
                f"{_example_key(part)}); the checkpoint has keys like {sample}"
            )
    return mapped, report


def _example_key(part: str) -> str:
    return {
        "vision tower": "model.vision_tower.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight",
        "projector": "model.mm_projector.0.weight",
        "language model": "model.layers.0.self_attn.q_proj.weight",
    }[part]


def to_llava_state_dict(model) -> dict[str, torch.Tensor]:
    """Our state dict in LLaVA names (the inverse mapping; used to write LLaVA-layout test checkpoints)."""
    inverse = (
        (re.compile(r"^vision_tower\."), "model.vision_tower.vision_tower.vision_model."),
        (re.compile(r"^projector\."), "model.mm_projector."),
        (re.compile(r"^language_model\.model\."), "model."),
        (re.compile(r"^language_model\.lm_head\."), "lm_head."),
    )
    out = {}
    for key, tensor in model.state_dict().items():
        for pattern, replacement in inverse:
            if pattern.search(key):
                out[pattern.sub(replacement, key, count=1)] = tensor.detach().clone().contiguous()
                break
    return out


def read_safetensors_dir(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of the *.safetensors files of a checkpoint directory (sharded or not)."""
    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors files in {path}")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open handles are not dicts
                state[key] = handle.get_tensor(key)
    return state


def config_from_llava(path: str | Path) -> SlowFastConfig:
    """The 7b preset with the Qwen2 shapes from a LLaVA checkpoint's config.json (top-level fields)."""
    config_path = Path(path) / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found")
    raw = json.loads(config_path.read_text())
    projector = raw.get("mm_projector_type", "mlp2x_gelu")
    if projector != "mlp2x_gelu":
        raise ValueError(f"{config_path}: mm_projector_type {projector!r} is not supported (only mlp2x_gelu)")
    config = SlowFastConfig.preset("7b")
    for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                 "intermediate_size", "vocab_size", "rms_norm_eps", "max_position_embeddings"):
        if name in raw:
            setattr(config.text_config, name, raw[name])
    if "mm_spatial_pool_mode" in raw and raw["mm_spatial_pool_mode"] in ("bilinear", "average", "max"):
        config.pooling = {"average": "avg"}.get(raw["mm_spatial_pool_mode"], raw["mm_spatial_pool_mode"])
    config.validate()
    return config


def expected_shapes(config: SlowFastConfig) -> dict[str, tuple[int, ...]]:
    """Parameter/buffer names and shapes of our model for `config`, computed on the meta device."""
    from agent.modeling import SlowFastForCausalLM

    with torch.device("meta"):
        model = SlowFastForCausalLM(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def load_llava_checkpoint(path: str | Path, config: SlowFastConfig | None = None,
                          dtype: torch.dtype | None = None):
    """Build SlowFastForCausalLM from a LLaVA-layout directory -> (model, LoadReport).

    config defaults to `config_from_llava(path)`. Shape mismatches raise ValueError naming the key.
    """
    from agent.modeling import SlowFastForCausalLM

    if _model_type(path) == SlowFastConfig.model_type:
        raise ValueError(f"{path} is a {SlowFastConfig.model_type} checkpoint, not a LLaVA one: "
                         "load it with SlowFastForCausalLM.from_pretrained (or load_model_and_processor)")
    config = config if config is not None else config_from_llava(path)
    mapped, report = convert_llava_state_dict(read_safetensors_dir(path))
    shapes = expected_shapes(config)
    for key, tensor in mapped.items():
        if key in shapes and tuple(tensor.shape) != shapes[key]:
            raise ValueError(f"checkpoint tensor {key} has shape {tuple(tensor.shape)}, the config expects "
                             f"{shapes[key]}")
    report.unexpected += sorted(k for k in mapped if k not in shapes)
    report.missing = sorted(k for k in shapes if k not in mapped)
    usable = {k: v for k, v in mapped.items() if k in shapes}
    kwargs = {"dtype": dtype} if dtype is not None else {}
    model = SlowFastForCausalLM.from_pretrained(None, config=config, state_dict=usable, **kwargs)
    return model, report



def _model_type(path: str | Path) -> str | None:
    config_path = Path(path) / "config.json"
    return json.loads(config_path.read_text()).get("model_type") if config_path.is_file() else None


def load_model_and_processor(path: str | Path, dtype: torch.dtype | None = None):
    """Our checkpoint (save_pretrained of model + processor) or a LLaVA-layout one, by config.json
    model_type -> (model, processor, LoadReport or None). A LLaVA directory's tokenizer is the Qwen2
    tokenizer stored beside its weights."""
    from transformers import AutoTokenizer

    from agent.modeling import SlowFastForCausalLM
    from agent.processor import SlowFastProcessor

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory {path} does not exist")
    if _model_type(path) == SlowFastConfig.model_type:
        kwargs = {"dtype": dtype} if dtype is not None else {}
        return SlowFastForCausalLM.from_pretrained(path, **kwargs), SlowFastProcessor.from_pretrained(path), None
    model, report = load_llava_checkpoint(path, dtype=dtype)
    processor = SlowFastProcessor.from_config(model.config, AutoTokenizer.from_pretrained(path))
    return model, processor, report
