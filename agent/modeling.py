"""SlowFastForCausalLM: SigLIP tower + 2-layer GELU projector + 2D pooling + Qwen2 causal LM.

Frames (uint8, normalised on the device) go through the vision tower up to its penultimate layer,
the projector and a per-frame 2D pooling, giving `config.tokens_per_frame` tokens per frame. The
tokens of each sample's window frames replace its `<image>` placeholders (-200); the tokens of its
history frames, concatenated, replace its `<memory>` placeholder (-300). The loss is the causal LM
cross entropy over label != -100 positions (assistant tokens), computed from the gathered hidden
states of those positions only, so full logits are never needed for training.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    PreTrainedModel,
    Qwen2ForCausalLM,
    SiglipVisionConfig,
)
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.models.qwen2.modeling_qwen2 import Qwen2Model
from transformers.models.siglip.modeling_siglip import SiglipEncoder, SiglipVisionEmbeddings

from agent.config import IGNORE_INDEX, SlowFastConfig
from agent.multimodal import HostLayout, insert_multimodal
from agent.param_groups import parameter_groups, set_tunable_parts
from agent.pooling import pool_frame_tokens
from agent.processor import preprocess_on_device

# transformers renamed `past_key_values` to `cache` (5.2x); use whichever this release has, warning-free.
_CACHE_ARG = "cache" if "cache" in inspect.signature(Qwen2Model.forward).parameters else "past_key_values"
_CACHE_FIELD = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


class SiglipFeatureTower(nn.Module):
    """SigLIP patch embeddings + encoder layers up to the feature layer; no post-layernorm, no head.

    Built from transformers' SigLIP blocks so that parameter names (embeddings.*, encoder.layers.*)
    do not depend on how a transformers release nests SiglipVisionModel.
    """

    def __init__(self, config: SiglipVisionConfig, layers_kept: int):
        super().__init__()
        self.config = config
        self.embeddings = SiglipVisionEmbeddings(config)
        self.encoder = SiglipEncoder(config)
        # Drop the layers after the feature layer (never used). The blocks keep referring to the shared
        # config, so a later attention-implementation switch reaches them.
        self.encoder.layers = self.encoder.layers[:layers_kept]

    @property
    def dtype(self) -> torch.dtype:
        return self.embeddings.patch_embedding.weight.dtype

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) normalised pixels -> (N, patches, vision_hidden) features of the last kept layer."""
        hidden = self.embeddings(pixel_values.to(self.dtype))
        return self.encoder(inputs_embeds=hidden).last_hidden_state


class SlowFastPreTrainedModel(PreTrainedModel):
    config_class = SlowFastConfig
    base_model_prefix = ""
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _no_split_modules = ["SiglipEncoderLayer", "Qwen2DecoderLayer"]

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, SiglipVisionEmbeddings):
            # As SigLIP initialises them; position_ids is a non-persistent buffer rebuilt on load.
            width = module.position_embedding.weight.shape[-1]
            nn.init.normal_(module.position_embedding.weight, std=width**-0.5)
            if hasattr(module, "position_ids"):
                module.position_ids.copy_(torch.arange(module.position_ids.shape[-1]).expand((1, -1)))


class SlowFastForCausalLM(SlowFastPreTrainedModel):
    def __init__(self, config: SlowFastConfig):
        config.validate()
        super().__init__(config)
        for sub_config in (config.vision_config, config.text_config):
            if sub_config._attn_implementation is None:  # releases that do not propagate it themselves
                sub_config._attn_implementation = config._attn_implementation
        self.vision_tower = SiglipFeatureTower(config.vision_config, config.vision_layers_kept)
        self.projector = nn.Sequential(
            nn.Linear(config.vision_config.hidden_size, config.hidden_size),
            nn.GELU(),
            nn.Linear(config.hidden_size, config.hidden_size),
        )
        self.language_model = Qwen2ForCausalLM(config.text_config)
        self.post_init()

    # ---- embeddings ------------------------------------------------------------------------------

    def get_input_embeddings(self) -> nn.Embedding:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.language_model.set_input_embeddings(value)

    def encode_frames(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) frames on the model device -> (N, tokens_per_frame, hidden) pooled tokens."""
        config = self.config
        if images.shape[0] == 0:
            return self._no_frame_features()
        pixels = preprocess_on_device(images, config.image_size, config.image_mean, config.image_std,
                                      dtype=self.vision_tower.dtype)
        patches = self.vision_tower(pixels)
        return pool_frame_tokens(self.projector(patches), config.pooling, config.pooled_grid)

    def _no_frame_features(self) -> torch.Tensor:
        return self.projector[2].weight.new_zeros((0, self.config.tokens_per_frame, self.config.hidden_size))

    def embed_multimodal(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        labels: torch.Tensor | None,
        frame_features: torch.Tensor,
        num_memory: torch.Tensor | None,
        image_counts: torch.Tensor | None = None,
        layout: HostLayout | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Expand placeholders: -> (inputs_embeds, attention_mask, labels, position_ids).

        frame_features: (F, P, hidden) from encode_frames for all frames of the batch, sample after
        sample, each sample's num_memory history frames first. image_counts (frames per sample)
        defaults to the sample's `<image>` count + num_memory. layout: agent.multimodal.host_layout of
        the CPU batch (the learner's; validated there): no device->host sync here.
        """
        batch = input_ids.shape[0]
        device = input_ids.device
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        num_memory = (torch.zeros(batch, dtype=torch.long, device=device) if num_memory is None
                      else torch.as_tensor(num_memory, dtype=torch.long, device=device).reshape(batch))
        if image_counts is None:
            placeholders = ((input_ids == self.config.image_token_index) & attention_mask.bool()).sum(1)
            image_counts = placeholders + num_memory
        text_embeds = self.get_input_embeddings()(input_ids.clamp(min=0))
        merged = insert_multimodal(text_embeds, input_ids, attention_mask, labels,
                                   frame_features.to(text_embeds.dtype), image_counts, num_memory, layout)
        return merged.inputs_embeds, merged.attention_mask, merged.labels, merged.position_ids

    # ---- forward ---------------------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        images: torch.Tensor | None = None,
        image_counts: torch.Tensor | None = None,
        num_memory: torch.Tensor | None = None,
        time_ids: torch.Tensor | None = None,
        task_type: list[str] | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values=None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool = False,
        return_logits: bool = True,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Takes the processor's collate output (`model(**batch)`).

        time_ids / task_type ride along with the batch; the model itself does not use them (the
        streaming agent uses time ids to choose memory frames). With `return_logits=False` and labels,
        logits are skipped and only the loss is computed (from assistant positions only). With a
        `past_key_values` cache, pass unpadded new tokens; their positions continue after the cache.
        """
        past_key_values = kwargs.pop("cache", past_key_values)
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("forward needs input_ids or inputs_embeds")
            frames = self.encode_frames(images) if images is not None else self._no_frame_features()
            inputs_embeds, attention_mask, labels, merged_positions = self.embed_multimodal(
                input_ids, attention_mask, labels, frames, num_memory, image_counts)
            if past_key_values is not None:
                # Cached call: unpadded new tokens whose positions continue after the cache.
                attention_mask = None
                merged_positions = merged_positions + past_key_values.get_seq_length()
            if position_ids is None:
                position_ids = merged_positions
        if past_key_values is not None:
            kwargs[_CACHE_ARG] = past_key_values
        outputs = self.language_model.model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
            use_cache=use_cache, **kwargs,
        )
        hidden = outputs.last_hidden_state
        loss = assistant_token_loss(hidden, labels, self.language_model.lm_head) if labels is not None else None
        logits = self.language_model.lm_head(hidden) if return_logits else None
        cache = getattr(outputs, _CACHE_FIELD, None)
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{_CACHE_FIELD: cache})

    # ---- training helpers ------------------------------------------------------------------------

    def set_tunable_parts(self, parts) -> list[str]:
        """Train exactly these parts ("mm_vision_tower", "mm_mlp_adapter", "mm_language_model")."""
        chosen = set_tunable_parts(self, parts)
        self.config.mm_tunable_parts = chosen
        return chosen

    def parameter_groups(self, lr: float, vision_tower_lr: float | None = None,
                         projector_lr: float | None = None, weight_decay: float = 0.0) -> list[dict]:
        return parameter_groups(self, lr, vision_tower_lr, projector_lr, weight_decay)


def assistant_token_loss(hidden: torch.Tensor, labels: torch.Tensor, lm_head: nn.Linear) -> torch.Tensor:
    """Mean next-token cross entropy over positions whose (shifted) label is not -100.

    Gathers the hidden states of those positions first, so the lm_head runs on assistant tokens only
    (a few percent of the sequence) instead of materialising (B, T, vocab) logits.
    """
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    if not bool(keep.any()):
        return hidden.sum() * 0.0  # no supervised token: zero loss that still reaches the graph
    logits = lm_head(hidden[:, :-1][keep]).float()
    return F.cross_entropy(logits, targets[keep])


AutoConfig.register(SlowFastConfig.model_type, SlowFastConfig, exist_ok=True)
AutoModelForCausalLM.register(SlowFastConfig, SlowFastForCausalLM, exist_ok=True)
