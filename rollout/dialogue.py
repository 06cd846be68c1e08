"""Structured dialogues: the contract between rollout/ (which frames and actions make a sample) and
the model's processor in agent/ (the one place where a dialogue becomes tokens).

Nothing here tokenizes or renders chat text. Navigation dialogues stay structured (instruction,
conjunction per turn, action chunk per turn) so the processor owns every character of the prompt;
QA dialogues carry free text with `<image>` / `<memory>` placeholders because their wording comes
from the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

IMAGE_PLACEHOLDER = "<image>"
MEMORY_PLACEHOLDER = "<memory>"

# Phrases that introduce each observation in a user turn (StreamVLN's list, DESIGN.md 3.5).
CONJUNCTIONS: tuple[str, ...] = (
    "you can see ",
    "in front of you is ",
    "there is ",
    "you can spot ",
    "you are toward the ",
    "ahead of you is ",
    "in your sight is ",
)


def validate_window_recipe(owner: str, num_frames: int, num_future_steps: int, num_history: int) -> None:
    """The SlowFast window recipe shared by training samples and the streaming agent (DESIGN.md 3.5):
    positive sizes, and windows made of whole turns so they start on a model call."""
    for name, value in (("num_frames", num_frames), ("num_future_steps", num_future_steps),
                        ("num_history", num_history)):
        if value < 1:
            raise ValueError(f"{owner}.{name} must be >= 1, got {value}")
    if num_frames % num_future_steps:
        raise ValueError(
            f"{owner}.num_frames ({num_frames}) must be a multiple of num_future_steps ({num_future_steps}) "
            "so every window is made of whole turns and starts on a model call"
        )


def history_steps(start: int, num_history: int) -> list[int]:
    """Trajectory steps of the slow memory for a window starting at `start` (DESIGN.md 3.5).

    arange(0, start, max(start // num_history, 1)); when that gives more than num_history steps,
    an evenly spaced subset keeping the first and the last. The sample builder (training) and the
    streaming agent (inference) both use this one rule.
    """
    if start <= 0:
        return []
    steps = list(range(0, start, max(start // num_history, 1)))
    if len(steps) > num_history:
        picks = np.round(np.linspace(0, len(steps) - 1, num_history)).astype(int)
        steps = [steps[i] for i in picks]
    return steps


class TaskType(str, Enum):
    NAV = "nav"
    VIDEO_QA = "video_qa"
    SCENE_QA = "scene_qa"
    INTERLEAVED = "interleaved"


@dataclass(frozen=True)
class NavTurn:
    """One user turn (an observation introduced by `conjunction`) and the assistant's action chunk.

    `actions` holds envs.actions.Action ints (0 STOP, 1 forward, 2 left, 3 right). It is empty only
    for the final, still unanswered turn of an inference prompt. `trained` False: the answer is
    history only (shown, no loss), e.g. a DAgger turn trained by another sample (rollout/samples.py).
    """

    conjunction: str
    actions: tuple[int, ...]
    trained: bool = True


@dataclass(frozen=True)
class NavDialogue:
    instruction: str
    turns: tuple[NavTurn, ...]
    has_memory: bool  # the first user turn carries the `<memory>` sentence


@dataclass(frozen=True)
class ChatTurn:
    role: str  # "user" or "assistant"
    text: str  # may contain IMAGE_PLACEHOLDER / MEMORY_PLACEHOLDER


@dataclass(frozen=True)
class ChatDialogue:
    turns: tuple[ChatTurn, ...]


@dataclass
class Sample:
    """One training sample before tokenization.

    images: uint8 (N, H, W, 3), the memory frames first (num_memory of them), then one frame per
    `<image>` placeholder in dialogue order. time_ids: int64 (N,), the trajectory step of each image
    (-1 where a frame has no step, e.g. a still image in QA data).
    """

    dialogue: NavDialogue | ChatDialogue
    images: np.ndarray
    num_memory: int
    time_ids: np.ndarray
    task_type: TaskType
    source: str = ""  # e.g. "store:dagger", "streamvln:r2r", "scene_qa"
