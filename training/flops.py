"""Model FLOPs per training step and MFU = achieved model FLOP/s / peak FLOP/s.

What is counted (model FLOPs, not hardware FLOPs: activation-checkpoint recomputation is NOT counted):

* A dense matmul with P weights costs 2*P FLOPs per token forward. Per part the step costs
  forward x m, with m = 3 for a trainable part (forward, activation gradients, weight gradients),
  m = 2 for a frozen part that gradients must flow through (a trainable part lies upstream of it),
  m = 1 for a frozen part with nothing trainable upstream (no backward at all).
  Upstream order: vision tower -> projector -> LM.
* LM (Qwen2): per layer q/o (2*h*h), k/v (2*h*kv_heads*head_dim), MLP (3*h*i) weights, for every
  token of the real sequence (text + inserted visual tokens, no padding). Causal self-attention:
  QK^T and AV cost 2*2*s^2*h per layer forward for a length-s sample, halved for the causal mask:
  2*s^2*h per layer per sample (PaLM's 12*L*h*s^2 per sample counts fwd+bwd without the causal half;
  ours is 6*L*h*s^2 for a trainable LM).
* lm_head (2*h*vocab per token) only for tokens that carry a label: logits elsewhere are not needed
  by the loss, so a learner that computes them spends FLOPs that are not counted (the HF baseline
  does; ours does not).
* Vision tower (SigLIP), per frame: patch embedding 2*p*(3*patch^2)*hv, per kept layer matmuls
  2*(4*hv^2 + 2*hv*iv) per patch and non-causal attention 4*p^2*hv, with p patches per frame.
* Projector (2-layer MLP) 2*(hv*h + h*h) per projected token.
Embedding lookups, norms, activations and the optimizer are not counted (< 1%).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

H100_BF16_DENSE_FLOPS = 989e12


@dataclass(frozen=True)
class LMShape:
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int

    @property
    def matmul_params_per_layer(self) -> int:
        head_dim = self.hidden // self.heads
        attn = 2 * self.hidden * self.hidden + 2 * self.hidden * self.kv_heads * head_dim
        return attn + 3 * self.hidden * self.intermediate

    @classmethod
    def from_qwen2_config(cls, config) -> LMShape:
        return cls(int(config.num_hidden_layers), int(config.hidden_size), int(config.intermediate_size),
                   int(config.num_attention_heads), int(config.num_key_value_heads), int(config.vocab_size))


@dataclass(frozen=True)
class VisionShape:
    layers: int  # layers kept (up to the feature layer)
    hidden: int
    intermediate: int
    patches_per_frame: int
    patch_size: int
    projected_tokens_per_frame: int  # tokens that go through the projector


def _multiplier(trainable: bool, upstream_trainable: bool) -> int:
    if trainable:
        return 3
    return 2 if upstream_trainable else 1


@dataclass(frozen=True)
class FlopCounter:
    lm: LMShape
    vision: VisionShape | None = None
    train_vision: bool = False
    train_projector: bool = False
    train_lm: bool = True

    def lm_flops(self, sample_lengths: Sequence[int], labelled_tokens: int) -> float:
        m = _multiplier(self.train_lm, self.train_vision or self.train_projector)
        tokens = float(sum(sample_lengths))
        dense = 2.0 * self.lm.layers * self.lm.matmul_params_per_layer * tokens
        attention = sum(2.0 * self.lm.layers * self.lm.hidden * float(s) ** 2 for s in sample_lengths)
        head = 2.0 * self.lm.hidden * self.lm.vocab * labelled_tokens
        return m * (dense + attention + head)

    def vision_flops(self, frames: int) -> float:
        if self.vision is None or frames == 0:
            return 0.0
        v = self.vision
        p = v.patches_per_frame
        embed = 2.0 * p * 3 * v.patch_size**2 * v.hidden
        layer = 2.0 * (4 * v.hidden**2 + 2 * v.hidden * v.intermediate) * p + 4.0 * p**2 * v.hidden
        tower = (embed + v.layers * layer) * _multiplier(self.train_vision, False)
        projector = (2.0 * (v.hidden * self.lm.hidden + self.lm.hidden**2) * v.projected_tokens_per_frame
                     * _multiplier(self.train_projector, self.train_vision))
        return frames * (tower + projector)

    def step_flops(self, sample_lengths: Sequence[int], labelled_tokens: int, frames: int) -> float:
        return self.lm_flops(sample_lengths, labelled_tokens) + self.vision_flops(frames)


def mfu(flops: float, seconds: float, world_size: int = 1, peak_flops: float = H100_BF16_DENSE_FLOPS) -> float:
    """Fraction of the peak reached: flops done by all ranks in `seconds` / (world_size x peak)."""
    if seconds <= 0:
        return 0.0
    return flops / seconds / (world_size * peak_flops)
