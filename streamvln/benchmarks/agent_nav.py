"""Speculative and tree decoding on real navigation: a trained checkpoint in the embedded simulator.

Random weights say little about how often drafts are right; a trained policy walking through houses
does. `navigation_acceptance` runs the same generated val_unseen episodes with greedy decoding, with
speculative decoding under each draft policy and with tree decoding (natural decoding: the model may
STOP or end a chunk early), and reports per decoding the acceptance rate, weight passes per call, the
wall time of the episodes (this machine, one after the other) and whether every episode's actions are
identical to greedy's. Used by `streamvln bench agent --checkpoint PATH
--nav-episodes N`.
"""

from __future__ import annotations

import time
from pathlib import Path

# The checkpoint's evaluation settings (checkpoints/benchmark_tiny_bc/README.md).
FRAME_SIDE, HFOV_DEG, MAX_STEPS = 112, 90.0, 500
MIN_GEODESIC_M, MAX_GEODESIC_M = 3.5, 6.0


def navigation_acceptance(checkpoint: str, episodes: int, seed: int = 0, draft: str | None = None) -> dict:
    """Greedy vs speculative (each draft policy, or only `draft`) vs tree over `episodes` simulated episodes."""

    from agent.streaming import Decoding, DraftPolicy, StreamingAgent, StreamingConfig
    from agent.streaming.engine import checkpoint_window, load_checkpoint
    from agent.streaming.loop import run_episode
    from envs.embedded import EmbeddedBackend, EmbeddedConfig
    from envs.episodes.generator import GeneratorConfig, generate_split
    from envs.task import TaskConfig, VLNTask

    folder = Path(checkpoint)
    window = checkpoint_window(folder)
    model, processor = load_checkpoint(folder)
    generator = GeneratorConfig(min_geodesic_m=MIN_GEODESIC_M, max_geodesic_m=MAX_GEODESIC_M)
    split, _ = generate_split("val_unseen", episodes, seed=seed, config=generator)
    task = VLNTask(EmbeddedBackend(EmbeddedConfig(width=FRAME_SIDE, height=FRAME_SIDE, hfov_deg=HFOV_DEG)),
                   TaskConfig(max_steps=MAX_STEPS))
    drafts = [DraftPolicy(draft)] if draft else list(DraftPolicy)
    variants = [("greedy", Decoding.GREEDY, DraftPolicy.REPEAT_LAST)]
    variants += [(f"speculative_{policy.value}", Decoding.SPECULATIVE, policy) for policy in drafts]
    variants += [("tree", Decoding.TREE, DraftPolicy.REPEAT_LAST)]
    report, reference = {"episodes": len(split), "checkpoint": str(checkpoint)}, None
    for name, decoding, policy in variants:
        agent = StreamingAgent(model, processor, StreamingConfig(**window, decoding=decoding, draft=policy))
        actions, calls, passes, drafted, accepted = [], 0, 0, 0, 0
        start = time.perf_counter()
        for episode in split:
            _, episode_policy = run_episode(agent, task, episode)
            actions.append([a for out in episode_policy.calls for a in out.actions])
            stats = episode_policy.session.stats
            calls, passes = calls + stats.calls, passes + stats.passes
            drafted, accepted = drafted + stats.drafted, accepted + stats.accepted
        reference = reference or actions
        report[name] = {
            "calls": calls, "passes_per_call": passes / max(calls, 1),
            "acceptance_rate": accepted / drafted if drafted else None,
            "actions_per_call": sum(len(a) for a in actions) / max(calls, 1),
            "seconds": round(time.perf_counter() - start, 2),
            "episodes_identical_to_greedy": sum(a == b for a, b in zip(actions, reference)),
        }
    return report
