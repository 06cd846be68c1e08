"""Shared helpers for the streaming-agent tests: the real processor and the real tiny model (fp32, CPU)."""

from __future__ import annotations

import functools

import numpy as np
import torch

from agent.config import SlowFastConfig
from agent.modeling import SlowFastForCausalLM
from agent.processor import SlowFastProcessor

# Random-init seeds of the tiny model, by what they decode: 4 actions per call (a window every two
# calls with num_frames=8) or a mix of chunk lengths.
FOUR_ACTIONS_SEED = 2
MIXED_SEED = 1


@functools.lru_cache(maxsize=1)
def tiny_processor() -> SlowFastProcessor:
    return SlowFastProcessor.from_config(SlowFastConfig.preset("tiny"))


class CountingEncoder:
    """Wraps model.encode_frames to count the frames that go through the vision tower."""

    def __init__(self, model):
        self.inner = model.encode_frames
        self.frames = 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.frames += images.shape[0]
        return self.inner(images)


def tiny_model(seed: int = FOUR_ACTIONS_SEED) -> SlowFastForCausalLM:
    torch.manual_seed(seed)
    model = SlowFastForCausalLM(SlowFastConfig.preset("tiny")).eval()
    model.encode_frames = CountingEncoder(model)
    return model


def random_frame(rng: np.random.Generator, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    return rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)


def always_forward(agent, monkeypatch) -> None:
    """Make the agent decode 4 MOVE_FORWARD symbols every call (the rules then force the end marker).

    Only the sliced action head is patched; full-vocabulary logits stay real for checks."""
    forward_col = agent.prompt.allowed_ids.index(agent.prompt.symbol_ids[1])

    def prefer_forward(hidden: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(*hidden.shape[:-1], len(agent.prompt.allowed_ids))
        logits[..., forward_col] = 10.0
        return logits

    monkeypatch.setattr(agent.text_model, "allowed_logits", prefer_forward)


def assert_batched_matches_single(batched_out, single_out, batch, singles) -> None:
    """Batched sessions gave each session's single-session actions, logits and cache length."""
    import torch

    for ours, ref in zip(batched_out, single_out):
        assert [o.actions for o in ours] == [o.actions for o in ref]
        for a, b in zip(ours, ref):
            torch.testing.assert_close(torch.stack(a.decoded.logits), torch.stack(b.decoded.logits),
                                       atol=1e-4, rtol=0)
    for a, b in zip(batch, singles):
        assert a.cache.length == b.cache.length
