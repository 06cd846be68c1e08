"""Correctness check: the logits of a streaming call against one uncached forward of the same context.

The reference rebuilds the whole window context from the processor parts and the stored features
([prefix, memory?, turn, answer, ..., last turn, its canonical answer]), runs it once with no cache,
and reads the logits at the positions where the streaming call decoded.
"""

from __future__ import annotations

import torch

from agent.streaming.prompt import embed_segments
from agent.streaming.session import ActOutput, AgentSession


@torch.no_grad()
def recompute_hidden(agent, session: AgentSession) -> torch.Tensor:
    """(T, hidden) final hidden states of the session's current context, computed without a cache."""
    embeds = embed_segments(agent.text_model, [session.prefix, *session.window])
    positions = torch.arange(embeds.shape[0], device=embeds.device).unsqueeze(0)
    return agent.text_model.run(embeds.unsqueeze(0), None, positions)[0]


@torch.no_grad()
def max_abs_logit_diff(agent, session: AgentSession, output: ActOutput) -> dict[str, float]:
    """Max |streaming - recompute| over the call's decode steps (allowed ids) and over the whole
    vocabulary at the first step. Call it right after `act`, before the next call on the session."""
    hidden = recompute_hidden(agent, session)
    canonical = session.window[-1].ids
    tokens = output.decoded.tokens
    # Step k saw the generated tokens[:k]; the reference saw canonical[:k]: compare where they agree.
    steps = [k for k in range(len(output.decoded.logits)) if tokens[:k] == canonical[:k]]
    rows = torch.tensor([session.turn_end - 1 + k for k in steps], device=hidden.device)
    reference = agent.text_model.allowed_logits(hidden.index_select(0, rows))
    streamed = torch.stack([output.decoded.logits[k] for k in steps])
    full_ref = agent.text_model.full_logits(hidden[session.turn_end - 1])
    full_stream = agent.text_model.full_logits(output.first_hidden)
    return {
        "allowed": float((streamed - reference).abs().max()),
        "full_vocab_first_step": float((full_stream - full_ref).abs().max()),
        "steps_compared": len(steps),
    }
