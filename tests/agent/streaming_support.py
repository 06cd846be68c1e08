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


def staggered_batch_vs_single(batched, single, calls: int = 5) -> list[list]:
    """Three sessions advanced by `batched.act_batch`, session i joining at call i (ragged caches), and
    the same sessions alone on `single`; checks every batched call against a full recompute and the
    whole run against the single-session run. Returns each call's batched outputs (list of lists)."""
    from agent.streaming import Observation
    from agent.streaming.check import max_abs_logit_diff

    instructions = ["go to the kitchen", "walk past the red sofa and stop at the fridge", "find the bathroom"]
    rng = np.random.default_rng(1)
    frames = [[random_frame(rng) for _ in range(calls)] for _ in instructions]
    singles = [single.open(text) for text in instructions]
    batch = [batched.open(text) for text in instructions]
    single_out = [[single.act(s, f) for f in fs[i:]] for i, (s, fs) in enumerate(zip(singles, frames))]
    batched_out, per_call = [[] for _ in instructions], []
    for call in range(calls):
        active = [i for i in range(len(instructions)) if call >= i]
        outs = batched.act_batch([batch[i] for i in active], [Observation(frames[i][call]) for i in active])
        per_call.append(outs)
        for i, out in zip(active, outs):
            batched_out[i].append(out)
            assert max_abs_logit_diff(batched, batch[i], out)["allowed"] < 1e-4
    assert_batched_matches_single(batched_out, single_out, batch, singles)
    return per_call
