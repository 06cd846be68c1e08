"""Exact speculative (draft-and-verify) decoding of a call's action chunk.

A call's answer is a few action symbols; greedy decoding spends one full weight pass per symbol after
the turn's prefill. Here the drafted symbols d1..dk (a guess, e.g. the last action repeated) are fed
right after the new turn in the SAME forward, so that forward yields the logits at the generation
prompt and after each draft. Walking them in order, the pick at position j is exactly greedy's pick
as long as every earlier draft equalled greedy's pick: accept that prefix, and the first pick that
differs from its draft is still correct (it comes free). Rejected drafts are rolled back (the
stepper shortens the row: a static scratch closes their columns and the next token overwrites them,
so they never reach later attention). A row that is not done then feeds that pick plus a re-draft of
its remaining symbols (the pick repeated: actions come in runs) in one more forward, verified the same
way, until the chunk ends. Right drafts make a call ONE weight pass instead of num_future_steps;
wrong ones cost nothing but a few extra tokens per forward (every forward still yields at least one
correct token, as a greedy step does). The actions are the same as greedy decoding's (up to
floating-point differences between a multi-token and a one-token forward of the same context; fp32
logits agree within 1e-4). With the trained benchmark_tiny_bc checkpoint on simulated val_unseen
episodes: 1.41 weight passes per call instead of 3.82, identical actions (bench agent --nav-episodes).

`tree_decode` drafts every possible chunk at once instead of one guess (tree.py): always one pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from agent.streaming.batching import Decoded, DecodeRules, pick_tokens, record_pick
from agent.streaming.config import DraftPolicy
from agent.streaming.tree import DraftTree
from envs.actions import Action


def draft_actions(policy: DraftPolicy, previous: Sequence[int], count: int) -> list[int]:
    """`count` guessed actions for the next chunk from the previous call's actions. STOP is never
    drafted (it ends the chunk, so nothing after it is verified): it is left out, and with nothing
    left (first call) the guess is MOVE_FORWARD."""
    history = [a for a in previous if a != int(Action.STOP)] or [int(Action.MOVE_FORWARD)]
    if policy is DraftPolicy.PREVIOUS:
        guess = history[:count]
        return guess + [guess[-1]] * (count - len(guess))
    if policy is DraftPolicy.REPEAT_LAST:
        return [history[-1]] * count
    raise ValueError(f"unknown draft policy {policy!r}")


def redraft_tokens(pick: int, count: int) -> list[int]:
    """Drafts after a rejected one: the pick that replaced it, repeated (actions come in runs)."""
    return [pick] * count


def verify_row(result: Decoded, picks: Sequence[int], logits: torch.Tensor, drafts: Sequence[int],
               rules: DecodeRules) -> tuple[bool, int]:
    """Walk one row's picks after a forward that fed [pending, *drafts]: picks[i] is greedy's pick as
    long as every earlier draft equalled greedy's pick. Records the picks, counts accepted drafts
    (their K/V stay) and returns (done, the last pick: the next token to feed when not done)."""
    for position, token in enumerate(picks[: len(drafts) + 1]):
        done = record_pick(result, token, logits[position], rules)
        if done or position == len(drafts) or token != drafts[position]:
            return done, token
        result.accepted += 1
        result.fed += 1
    raise AssertionError("unreachable: the loop returns at its last position")


def speculative_decode(stepper, tail_hidden: torch.Tensor, drafts: Sequence[Sequence[int]],
                       rules: DecodeRules) -> list[Decoded]:
    """Verify each row's drafts, roll rejected ones back, then continue in rounds (decode_rounds)
    until every row is done.

    tail_hidden (B, k + 1, hidden): the hidden states at the generation prompt and after each of the
    row's k drafted tokens (all rows draft k tokens), from the prefill that fed them after the turn.
    Returns what greedy_decode would (same tokens, `fed`, logits per step) plus passes / drafted /
    accepted per row. Calls stepper.finish()."""
    count = tail_hidden.shape[1] - 1
    if any(len(row) != count for row in drafts):
        raise ValueError(f"every row must draft {count} tokens, got {[len(row) for row in drafts]}")
    results = [Decoded(drafted=count) for _ in drafts]
    pending = verify_rows(stepper, results, range(len(results)), tail_hidden, drafts, rules)
    decode_rounds(stepper, results, pending, rules)
    stepper.finish()
    return results


def verify_rows(stepper, results: list[Decoded], rows, hidden: torch.Tensor, feeds: Sequence[Sequence[int]],
                rules: DecodeRules) -> dict[int, int]:
    """Verify `rows` after a forward that fed each [pending, *feeds[row]], roll their rejected drafts
    back; returns {row: its last pick} for the rows that are not done."""
    logits = stepper.text_model.allowed_logits(hidden)  # (B, T, A)
    picks = pick_tokens(logits, rules)
    drops = [0] * len(results)
    pending: dict[int, int] = {}
    for row in rows:
        before = results[row].accepted
        done, last = verify_row(results[row], picks[row], logits[row], feeds[row], rules)
        drops[row] = len(feeds[row]) - (results[row].accepted - before)
        if not done:
            pending[row] = last
    stepper.rollback(drops)
    return pending


def decode_rounds(stepper, results: list[Decoded], pending: dict[int, int], rules: DecodeRules) -> None:
    """Rounds until every row is done: a pending row feeds its last pick plus a re-draft of the chunk's
    remaining symbols (that pick repeated) in one forward, verified as the first drafts were."""
    while pending:
        feeds: list[list[int]] = [[] for _ in results]
        for row, token in pending.items():
            remaining = max(rules.max_actions - 1 - len(results[row].tokens), 0)  # symbols still to feed
            feeds[row] = redraft_tokens(token, remaining)
            results[row].drafted += remaining
            results[row].fed += 1  # the pending pick itself
            results[row].passes += 1
        hidden = stepper.extend([[pending[row], *feeds[row]] if row in pending else [] for row in range(len(results))])
        pending = verify_rows(stepper, results, list(pending), hidden, feeds, rules)


def walk_tree(result: Decoded, tree: DraftTree, picks: Sequence[int], logits: torch.Tensor,
              rules: DecodeRules) -> tuple[bool, int, list[int]]:
    """Greedy's walk through one row's tree: picks[0] / logits[0] at the generation prompt, picks[i + 1] /
    logits[i + 1] after node i. Returns (done, the last pick, the nodes on the path: their K/V stay)."""
    node, path = -1, []
    while True:
        token = picks[node + 1]
        done = record_pick(result, token, logits[node + 1], rules)
        child = tree.children.get((node, token))
        if done or child is None:
            return done, token, path
        path.append(child)
        result.accepted += 1
        result.fed += 1
        node = child


def tree_decode(stepper, tail_hidden: torch.Tensor, tree: DraftTree, rules: DecodeRules) -> list[Decoded]:
    """Decode every row from the hidden states of its generation prompt and its tree nodes
    (tail_hidden: (B, tree.size + 1, hidden)). Keeps each row's path in the cache; a row the tree
    could not finish continues with speculative rounds. Calls stepper.finish()."""
    logits = stepper.text_model.allowed_logits(tail_hidden)  # (B, N + 1, A)
    picks = pick_tokens(logits, rules)
    results = [Decoded(drafted=tree.size) for _ in picks]
    paths, pending = [], {}
    for row, result in enumerate(results):
        done, last, path = walk_tree(result, tree, picks[row], logits[row], rules)
        paths.append(path)
        if not done:
            pending[row] = last
    stepper.keep_tree(paths, tree.size)
    decode_rounds(stepper, results, pending, rules)
    stepper.finish()
    return results
