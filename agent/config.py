"""SlowFastConfig: the Hugging Face config of the SlowFast Qwen2 model, and its presets.

The config nests a SigLIP vision config and a Qwen2 text config (transformers classes) and adds what
the multimodal glue needs: projector type, 2D pooling of each frame's patch grid, image
normalisation, the placeholder ids the processor writes into input_ids, and the tunable parts.

Presets are a registry of factory functions (`PRESETS`), looked up by exact name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from transformers import PretrainedConfig, Qwen2Config, SiglipVisionConfig

# Placeholder ids written into input_ids by the processor and expanded by the model (LLaVA values).
IMAGE_TOKEN_INDEX = -200
MEMORY_TOKEN_INDEX = -300
IGNORE_INDEX = -100

POOLING_MODES = ("bilinear", "avg", "max")
PROJECTOR_TYPES = ("mlp2x_gelu",)
TUNABLE_PARTS = ("mm_vision_tower", "mm_mlp_adapter", "mm_language_model")
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)

# The vocabulary size of the locally trained tokenizer (agent/tokenizer.py) used by the small presets.
LOCAL_VOCAB_SIZE = 1024


class SlowFastConfig(PretrainedConfig):
    """Config of `agent.modeling.SlowFastForCausalLM`.

    vision_config describes the full SigLIP tower; the model keeps only the layers up to
    `vision_feature_layer` (default -2, the penultimate layer, as LLaVA-Video does), so the unused
    last layer costs neither memory nor time.
    """

    model_type = "streamvln_slowfast"
    sub_configs = {"vision_config": SiglipVisionConfig, "text_config": Qwen2Config}

    def __init__(
        self,
        vision_config: SiglipVisionConfig | dict | None = None,
        text_config: Qwen2Config | dict | None = None,
        projector: str = "mlp2x_gelu",
        pooling: str = "bilinear",
        pooled_grid_size: int | None = None,
        vision_feature_layer: int = -2,
        image_mean: Iterable[float] = SIGLIP_MEAN,
        image_std: Iterable[float] = SIGLIP_STD,
        mm_tunable_parts: Iterable[str] = TUNABLE_PARTS,
        image_token_index: int = IMAGE_TOKEN_INDEX,
        memory_token_index: int = MEMORY_TOKEN_INDEX,
        **kwargs,
    ):
        if isinstance(vision_config, dict):
            vision_config = SiglipVisionConfig(**vision_config)
        if isinstance(text_config, dict):
            text_config = Qwen2Config(**text_config)
        self.vision_config = vision_config if vision_config is not None else SiglipVisionConfig()
        self.text_config = text_config if text_config is not None else Qwen2Config()
        self.projector = projector
        self.pooling = pooling
        self.pooled_grid_size = pooled_grid_size
        self.vision_feature_layer = int(vision_feature_layer)
        self.image_mean = [float(v) for v in image_mean]
        self.image_std = [float(v) for v in image_std]
        self.mm_tunable_parts = list(mm_tunable_parts)
        self.image_token_index = int(image_token_index)
        self.memory_token_index = int(memory_token_index)
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)

    # ---- derived sizes -------------------------------------------------------------------------

    @property
    def image_size(self) -> int:
        return int(self.vision_config.image_size)

    @property
    def patches_per_side(self) -> int:
        return self.image_size // int(self.vision_config.patch_size)

    @property
    def pooled_grid(self) -> int:
        """Side of the pooled patch grid: configured, or ceil(n / 2) (27 -> 14 for SigLIP-384)."""
        if self.pooled_grid_size is not None:
            return int(self.pooled_grid_size)
        return math.ceil(self.patches_per_side / 2)

    @property
    def tokens_per_frame(self) -> int:
        return self.pooled_grid**2

    @property
    def vision_layers_kept(self) -> int:
        """How many SigLIP encoder layers the model builds (those up to vision_feature_layer)."""
        return int(self.vision_config.num_hidden_layers) + self.vision_feature_layer + 1

    @property
    def hidden_size(self) -> int:
        return int(self.text_config.hidden_size)

    @property
    def vocab_size(self) -> int:
        return int(self.text_config.vocab_size)

    def get_text_config(self, *args, **kwargs) -> Qwen2Config:
        return self.text_config

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent field."""
        if self.projector not in PROJECTOR_TYPES:
            raise ValueError(f"projector {self.projector!r} is not one of {PROJECTOR_TYPES}")
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"pooling {self.pooling!r} is not one of {POOLING_MODES}")
        # SigLIP's patch conv floors: 384 px / patch 14 -> 27 x 27 patches (the last 6 pixels unused).
        if self.patches_per_side < 1:
            raise ValueError(f"image_size {self.image_size} is smaller than patch_size {self.vision_config.patch_size}")
        if not 1 <= self.pooled_grid <= self.patches_per_side:
            raise ValueError(
                f"pooled_grid_size {self.pooled_grid} must be in [1, {self.patches_per_side}] (patches per side)"
            )
        if not 1 <= self.vision_layers_kept <= int(self.vision_config.num_hidden_layers):
            raise ValueError(
                f"vision_feature_layer {self.vision_feature_layer} selects no layer of a "
                f"{self.vision_config.num_hidden_layers}-layer vision tower"
            )
        for name in ("image_mean", "image_std"):
            values = getattr(self, name)
            if len(values) != 3:
                raise ValueError(f"{name} must have 3 values (RGB), got {values}")
        if any(v <= 0 for v in self.image_std):
            raise ValueError(f"image_std must be positive, got {self.image_std}")
        unknown = sorted(set(self.mm_tunable_parts) - set(TUNABLE_PARTS))
        if unknown:
            raise ValueError(f"mm_tunable_parts has unknown parts {unknown}; known: {TUNABLE_PARTS}")
        if self.image_token_index >= 0 or self.memory_token_index >= 0:
            raise ValueError("image_token_index and memory_token_index must be negative placeholder ids")

    @classmethod
    def preset(cls, name: str, **overrides) -> SlowFastConfig:
        """Build a preset config by exact name ("tiny", "mini", "small", "1.5b", "7b"); overrides set fields."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known presets: {sorted(PRESETS)}")
        config = PRESETS[name]()
        for key, value in overrides.items():
            if not hasattr(config, key):
                raise ValueError(f"preset override {key!r} is not a SlowFastConfig field")
            setattr(config, key, value)
        config.validate()
        return config


# ---- presets -----------------------------------------------------------------------------------


def _siglip_so400m_384() -> SiglipVisionConfig:
    return SiglipVisionConfig(
        hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
        image_size=384, patch_size=14, vision_use_head=False,
    )


def _qwen2(hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int, vocab: int,
           **extra) -> Qwen2Config:
    return Qwen2Config(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv_heads, intermediate_size=intermediate, vocab_size=vocab,
        max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1000000.0,
        tie_word_embeddings=False, **extra,
    )


def _tiny() -> SlowFastConfig:
    # 112 px / patch 16 -> 7x7 patches -> 4x4 = 16 pooled tokens per frame; trains on a 2-core CPU.
    vision = SiglipVisionConfig(
        hidden_size=96, intermediate_size=192, num_hidden_layers=3, num_attention_heads=4,
        image_size=112, patch_size=16, vision_use_head=False,
    )
    text = _qwen2(hidden=128, layers=2, heads=4, kv_heads=2, intermediate=256, vocab=LOCAL_VOCAB_SIZE,
                  max_window_layers=2)
    text.max_position_embeddings = 8192
    return SlowFastConfig(vision_config=vision, text_config=text)


def _mini() -> SlowFastConfig:
    # Between tiny and small, for GPU training from scratch in minutes: 112 px / patch 8 -> 14x14
    # patches -> 7x7 = 49 pooled tokens per frame (colours and objects the tiny 4x4 grid blurs).
    vision = SiglipVisionConfig(
        hidden_size=192, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
        image_size=112, patch_size=8, vision_use_head=False,
    )
    text = _qwen2(hidden=256, layers=4, heads=8, kv_heads=4, intermediate=768, vocab=LOCAL_VOCAB_SIZE,
                  max_window_layers=4)
    text.max_position_embeddings = 8192
    return SlowFastConfig(vision_config=vision, text_config=text)


def _small() -> SlowFastConfig:
    # SigLIP-base-like 224 px tower (14x14 patches -> 7x7 = 49 tokens) + Qwen2-0.5B shapes.
    vision = SiglipVisionConfig(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        image_size=224, patch_size=16, vision_use_head=False,
    )
    text = _qwen2(hidden=896, layers=24, heads=14, kv_heads=2, intermediate=4864, vocab=LOCAL_VOCAB_SIZE,
                  max_window_layers=24)
    return SlowFastConfig(vision_config=vision, text_config=text)


def _qwen2_1p5b() -> SlowFastConfig:
    text = _qwen2(hidden=1536, layers=28, heads=12, kv_heads=2, intermediate=8960, vocab=151936,
                  max_window_layers=28)
    return SlowFastConfig(vision_config=_siglip_so400m_384(), text_config=text)


def _qwen2_7b() -> SlowFastConfig:
    # LLaVA-Video-7B-Qwen2 shapes: 27x27 SigLIP patches -> 14x14 = 196 tokens per frame.
    text = _qwen2(hidden=3584, layers=28, heads=28, kv_heads=4, intermediate=18944, vocab=152064,
                  max_window_layers=28)
    return SlowFastConfig(vision_config=_siglip_so400m_384(), text_config=text)


PRESETS: dict[str, Callable[[], SlowFastConfig]] = {
    "tiny": _tiny,
    "mini": _mini,
    "small": _small,
    "1.5b": _qwen2_1p5b,
    "7b": _qwen2_7b,
}

# Presets whose tokenizer is trained locally (agent/tokenizer.py); the others read it from a checkpoint.
LOCAL_TOKENIZER_PRESETS = frozenset({"tiny", "mini", "small"})
