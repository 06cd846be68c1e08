"""Sample builders shared by the model / processor tests (rollout.dialogue samples with random frames)."""

from __future__ import annotations

import numpy as np

from rollout.dialogue import ChatDialogue, ChatTurn, NavDialogue, NavTurn, Sample, TaskType


def nav_sample(num_memory: int = 0, actions=((1, 1, 2, 1), (3, 0)), size: int = 112, seed: int = 0,
               instruction: str = "walk to the kitchen.", source: str = "test:nav") -> Sample:
    conjunctions = ("you can see ", "there is ", "in your sight is ", "ahead of you is ")
    turns = tuple(NavTurn(conjunctions[i % len(conjunctions)], tuple(a)) for i, a in enumerate(actions))
    dialogue = NavDialogue(instruction, turns, has_memory=num_memory > 0)
    frames = num_memory + len(turns)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
    return Sample(dialogue, images, num_memory, np.arange(frames, dtype=np.int64), TaskType.NAV, source)


def chat_sample(size: int = 112, seed: int = 0) -> Sample:
    turns = (
        ChatTurn("user", "<image>\nWhat colour is the sofa?"),
        ChatTurn("assistant", "The sofa is red."),
        ChatTurn("user", "And the <image> lamp?"),
        ChatTurn("assistant", "It is blue."),
    )
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    return Sample(ChatDialogue(turns), images, 0, np.full(2, -1, dtype=np.int64), TaskType.SCENE_QA, "test:qa")
