"""Prompt pieces for the agent, taken ONLY from the model's processor (identical to training).

`ProcessorView` adapts the processor's segmented rendering (nav_prefix_ids, nav_memory_ids,
nav_turn_ids, nav_answer_ids, parse_actions, action_token_ids) and derives what decoding needs: the end
marker id and the id of each action symbol. `Segment` is a run of token ids with at most one visual
placeholder, and `embed_segments` turns segments into input embeddings with the visual tokens spliced
in at the placeholder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from agent.streaming.cache import TextModel
from envs.actions import Action

IMAGE_TOKEN_INDEX = -200  # DESIGN.md 3.5
MEMORY_TOKEN_INDEX = -300
END_MARKER = "<|im_end|>"


@dataclass
class Segment:
    ids: list[int]  # text ids, with at most one IMAGE_TOKEN_INDEX or MEMORY_TOKEN_INDEX
    visual: torch.Tensor | None = None  # (n, hidden) tokens that replace the placeholder

    def __post_init__(self):
        placeholders = [i for i in self.ids if i in (IMAGE_TOKEN_INDEX, MEMORY_TOKEN_INDEX)]
        if len(placeholders) != (0 if self.visual is None else 1):
            raise ValueError(f"segment has {len(placeholders)} placeholders but visual={self.visual is not None}")

    @property
    def length(self) -> int:
        """Tokens this segment occupies in the LM context."""
        if self.visual is None:
            return len(self.ids)
        return len(self.ids) - 1 + self.visual.shape[0]


def embed_segments(text_model: TextModel, segments: Sequence[Segment]) -> torch.Tensor:
    """(T, hidden) input embeddings of the segments in order (one embedding lookup for all text)."""
    text_ids = [i for seg in segments for i in seg.ids if i >= 0]
    text = text_model.embed(text_ids) if text_ids else None
    pieces: list[torch.Tensor] = []
    cursor = 0
    for seg in segments:
        run = 0
        for token in seg.ids:
            if token >= 0:
                run += 1
                continue
            if run:
                pieces.append(text[cursor:cursor + run])
                cursor += run
                run = 0
            pieces.append(seg.visual.to(text_model.dtype))
        if run:
            pieces.append(text[cursor:cursor + run])
            cursor += run
    return torch.cat(pieces)


class ProcessorView:
    """What the agent needs from agent.processor.SlowFastProcessor, checked once."""

    def __init__(self, processor):
        self.processor = processor
        self.allowed_ids = [int(i) for i in processor.action_token_ids]
        self.end_id = self._end_marker_id()
        self.symbol_ids = {int(a): self._symbol_id(a) for a in Action}
        self.stop_id = self.symbol_ids[int(Action.STOP)]
        known = set(self.symbol_ids.values()) | {self.end_id}
        if known != set(self.allowed_ids):
            raise ValueError(
                f"processor.action_token_ids {self.allowed_ids} should be the 4 action symbols "
                f"{self.symbol_ids} + the end marker {self.end_id}"
            )

    def _end_marker_id(self) -> int:
        explicit = getattr(self.processor, "im_end_id", getattr(self.processor, "end_token_id", None))
        if explicit is not None:
            return int(explicit)
        return int(self.processor.tokenizer.convert_tokens_to_ids(END_MARKER))

    def _symbol_id(self, action: Action) -> int:
        ids = list(self.processor.nav_answer_ids([int(action)]))
        if not ids or ids[0] not in self.allowed_ids:
            raise ValueError(f"processor.nav_answer_ids([{action.name}]) does not start with an action token: {ids}")
        return int(ids[0])

    def prefix(self, instruction: str) -> Segment:
        return Segment(list(self.processor.nav_prefix_ids(instruction)))

    def memory(self, tokens: torch.Tensor) -> Segment:
        return Segment(list(self.processor.nav_memory_ids()), tokens)

    def turn(self, conjunction: str, first: bool, frame_tokens: torch.Tensor) -> Segment:
        return Segment(list(self.processor.nav_turn_ids(conjunction, first=first)), frame_tokens)

    def answer_ids(self, actions: Sequence[int]) -> list[int]:
        return [int(i) for i in self.processor.nav_answer_ids(list(actions))]

    def parse(self, token_ids: Sequence[int]) -> tuple[list[int], bool]:
        actions, ok = self.processor.parse_actions(list(token_ids))
        return [int(a) for a in actions], bool(ok)
