"""Typed configuration of the streaming agent (window sizes, cache scheme, pruning, fallbacks)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from envs.actions import Action
from rollout.dialogue import CONJUNCTIONS, validate_window_recipe


class Decoding(str, Enum):
    """How a call's action chunk is decoded (both give the same greedy actions).

    GREEDY: the turn's prefill gives the first action, then one forward (a full weight pass) per
        further action.
    SPECULATIVE: draft-and-verify (agent/streaming/speculative.py): the drafted actions are fed with
        the turn in the same forward; the longest prefix of drafts that greedy decoding agrees with
        is kept (plus the first disagreeing action, which comes free), rejected drafts are rolled back
        and the rest is decoded greedily. A call whose drafts are right costs one weight pass.
    TREE: every chunk the greedy walk could take is drafted at once as a tree of nodes (tree.py; 39
        nodes for 4 actions), fed with the turn under a tree attention mask: every call is one weight
        pass. ~40 more tokens per call: nearly free where a forward is bound by reading the weights
        (a GPU), real compute on a CPU.
    """

    GREEDY = "greedy"
    SPECULATIVE = "speculative"
    TREE = "tree"


class DraftPolicy(str, Enum):
    """What the speculative drafts guess for the next chunk (the first call drafts MOVE_FORWARD).

    PREVIOUS: the previous call's actions in order (padded with its last one).
    REPEAT_LAST: the last executed action, repeated.
    """

    PREVIOUS = "previous"
    REPEAT_LAST = "repeat_last"


class CacheScheme(str, Enum):
    """How the KV cache is kept between model calls.

    STREAMING: ours. The cache lives across turns; at a window boundary it is truncated back to the
        system/instruction prefix and the memory tokens come from stored pooled features.
    ORIGINAL: StreamVLN's public code. The cache is thrown away at every window boundary and the
        history frames are re-encoded from pixels (kept for comparison).
    RECOMPUTE: no cache kept between calls; the whole window context is run again at each call.
    """

    STREAMING = "streaming"
    ORIGINAL = "original"
    RECOMPUTE = "recompute"


@dataclass
class StreamingConfig:
    scheme: CacheScheme = CacheScheme.STREAMING
    num_frames: int = 32  # steps per window (DESIGN.md 3.5)
    num_future_steps: int = 4  # actions per model call
    num_history: int = 8  # memory frames at a window start
    # Inference uses one fixed conjunction unless a seed is given; then each turn draws one from
    # CONJUNCTIONS with a per-session generator (training draws them at random too).
    conjunction: str = CONJUNCTIONS[0]
    conjunction_seed: int | None = None
    # Empty or malformed output: one TURN_LEFT. It never collides, never ends the episode by mistake,
    # and shows the model a new view for the next call.
    fallback_action: int = int(Action.TURN_LEFT)
    # Voxel pruning of memory tokens (needs depth + pose with each frame).
    voxel_pruning: bool = False
    voxel_size_m: float = 0.5
    hfov_deg: float = 90.0
    camera_height_m: float = 1.25
    max_depth_m: float = 10.0
    # Token budget of one window's context; None = the language model's max_position_embeddings.
    max_context_tokens: int | None = None
    # Expected frame size (H, W); None = the first frame of each session fixes it.
    frame_size: tuple[int, int] | None = None
    # Benchmarks only: decode exactly num_future_steps non-STOP symbols per call (the end marker and
    # STOP are masked until then), so random weights do the same work per call as a trained model.
    full_chunks: bool = False
    # Decode steps (and the batched / turn prefills) on a static K/V scratch, replayed as a CUDA graph on
    # CUDA (eager on the CPU). graph_max_len: scratch tokens; None = one window + 512 prefix tokens. A call whose
    # context does not fit runs eagerly.
    decode_graph: bool = False
    graph_max_len: int | None = None
    # The vision tower + projector + pooling as a CUDA graph per frame-batch shape (CUDA only).
    encode_graph: bool = False
    # Masked attention with GQA heads folded into the query axis instead of K/V copied per head
    # (agent/streaming/attention.py; same results). Switches the language model's SDPA attention.
    gqa_attention: bool = True
    # Decoding of the action chunk (same actions either way; speculative needs fewer weight passes).
    decoding: Decoding = Decoding.SPECULATIVE
    draft: DraftPolicy = DraftPolicy.REPEAT_LAST
    # decoding="tree": the most nodes the draft tree may have (its deepest whole level that fits; a
    # chunk longer than the tree continues speculatively). 39 = every 4-action chunk.
    tree_max_nodes: int = 39
    # Post-hoc calibration of STOP (logit adjustment): added to STOP's logit before the greedy choice,
    # > 0 stops more readily. STOP is one label in ~40 steps of training, so a model unsure near the goal
    # keeps walking; tune on val_seen, never on the split you report.
    stop_bias: float = 0.0

    def validate(self) -> StreamingConfig:
        self.scheme = CacheScheme(self.scheme)
        for name, kind in (("decoding", Decoding), ("draft", DraftPolicy)):
            try:
                setattr(self, name, kind(getattr(self, name)))
            except ValueError:
                raise ValueError(f"StreamingConfig.{name} {getattr(self, name)!r} is not one of "
                                 f"{[item.value for item in kind]}") from None
        validate_window_recipe("StreamingConfig", self.num_frames, self.num_future_steps, self.num_history)
        if self.conjunction not in CONJUNCTIONS:
            raise ValueError(f"StreamingConfig.conjunction {self.conjunction!r} is not one of {CONJUNCTIONS}")
        if self.fallback_action not in (int(a) for a in Action):
            raise ValueError(f"StreamingConfig.fallback_action {self.fallback_action} is not an action 0-3")
        if self.voxel_size_m <= 0 or not 0 < self.hfov_deg < 180 or self.max_depth_m <= 0:
            raise ValueError(
                "StreamingConfig: voxel_size_m and max_depth_m must be > 0 and hfov_deg in (0, 180), got "
                f"{self.voxel_size_m}, {self.max_depth_m}, {self.hfov_deg}"
            )
        if self.max_context_tokens is not None and self.max_context_tokens < 64:
            raise ValueError(f"StreamingConfig.max_context_tokens must be >= 64, got {self.max_context_tokens}")
        if not math.isfinite(self.stop_bias):
            raise ValueError(f"StreamingConfig.stop_bias must be a finite number, got {self.stop_bias}")
        if self.tree_max_nodes < 3:
            raise ValueError(f"StreamingConfig.tree_max_nodes must be >= 3 (one level), got {self.tree_max_nodes}")
        if self.graph_max_len is not None and self.graph_max_len < 64:
            raise ValueError(f"StreamingConfig.graph_max_len must be >= 64, got {self.graph_max_len}")
        if self.frame_size is not None and (len(self.frame_size) != 2 or min(self.frame_size) < 1):
            raise ValueError(f"StreamingConfig.frame_size must be (H, W) > 0, got {self.frame_size}")
        return self

    @property
    def calls_per_window(self) -> int:
        return self.num_frames // self.num_future_steps
