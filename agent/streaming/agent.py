"""StreamingAgent: one frame per model call, a KV cache that lives across turns, windows with memory.

Per episode `open(instruction)` prefills the system/instruction prefix. Each `act` encodes ONE frame,
splices its pooled tokens into the new user turn at the image placeholder, prefills only that turn on
top of the cache, decodes greedily over the action symbols + end marker, and returns up to
num_future_steps actions (the caller executes them one per env step). The canonical answer of the
executed actions is what stays in context, as in training; its tail after the decoded symbols (the
end marker + newline) is prefilled together with the next turn, saving one forward per call.

Every num_frames steps a new window starts: the cache is cut back to the prefix and the memory
sentence carries the stored pooled features of the history frames (no pixel re-encoding), optionally
voxel-pruned. `scheme` selects the original StreamVLN behaviour or a full recompute for comparison.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import torch

from agent.streaming.attention import use_gqa_attention
from agent.streaming.batching import Decoded, DecodeRules, greedy_decode, make_stepper
from agent.streaming.cache import SessionCache, TextModel
from agent.streaming.config import CacheScheme, Decoding, StreamingConfig
from agent.streaming.graph import EncoderGraphs, GraphedDecoder, GraphStepper, scratch_need
from agent.streaming.memory import FrameBank
from agent.streaming.prompt import ProcessorView, Segment, embed_segments
from agent.streaming.session import ActOutput, AgentSession, Observation, PreparedWindow, check_observation
from agent.streaming.speculative import draft_actions, speculative_decode, tree_decode
from agent.streaming.tree import DraftTree
from agent.streaming.voxel import CameraModel
from envs.actions import Action, validate_action
from rollout.dialogue import CONJUNCTIONS

log = logging.getLogger(__name__)


class StreamingAgent:
    """Drives a SlowFastForCausalLM (encode_frames + language_model) with the processor's prompt parts."""

    def __init__(self, model, processor, config: StreamingConfig | None = None):
        self.model = model
        self.config = (config or StreamingConfig()).validate()
        self.prompt = ProcessorView(processor)
        # Batched rows attend under a mask: fold GQA heads instead of copying K/V (same results).
        self.gqa_attention = self.config.gqa_attention and use_gqa_attention(model.language_model)
        self.text_model = TextModel(model.language_model, self.prompt.allowed_ids)
        self.tokens_per_frame = int(model.config.tokens_per_frame)
        self.rules = DecodeRules(self.prompt.allowed_ids, self.prompt.end_id, self.prompt.stop_id,
                                 self.config.num_future_steps, self.config.full_chunks, self.config.stop_bias)
        self.tree = self._draft_tree()
        self.camera = CameraModel(self.config.hfov_deg, self.config.camera_height_m, self.config.max_depth_m)
        self.graphs: dict[int, GraphedDecoder] = {}  # decode graphs by batch size (decode_graph=True)
        self._graph_errors: list[str] = []
        on_cuda = self.text_model.device.type == "cuda"
        self.encoder_graphs = EncoderGraphs(model) if self.config.encode_graph and on_cuda else None
        self.frames_encoded = 0  # vision-tower runs, all sessions (tests check no pixel re-encoding)
        self._sessions_opened = 0

    def graph_decoder(self, rows: int) -> GraphedDecoder:
        """The static-scratch decoder for `rows` sessions (a CUDA graph on CUDA), built on first use."""
        if rows not in self.graphs:
            max_len = self.config.graph_max_len or -(-(self.window_need() + 512) // 256) * 256
            on_cuda = self.text_model.device.type == "cuda"
            max_prefill = self.turn_tokens()  # a turn (+ answer tail), not a memory segment
            sizes = (max_prefill, self.long_segment_tokens())
            try:
                self.graphs[rows] = GraphedDecoder(self.text_model, max_len, rows, on_cuda, *sizes)
            except RuntimeError as error:  # capture failed: keep the static path, eagerly
                log.warning("CUDA graph capture for %d rows failed (%s); decoding eagerly", rows, error)
                self._graph_errors.append(f"{rows} rows: {error}")
                self.graphs[rows] = GraphedDecoder(self.text_model, max_len, rows, False, *sizes)
        return self.graphs[rows]

    @property
    def graph_errors(self) -> list[str]:
        """CUDA graph captures that failed (those paths run eagerly instead)."""
        return self._graph_errors + [e for decoder in self.graphs.values() for e in decoder.errors]

    def _stepper(self, sessions: list[AgentSession], new_tokens: list[int]):
        if self.config.decode_graph:
            max_len = self.graph_decoder(len(sessions)).max_len
            turn_tokens = self.turn_tokens()
            needed = scratch_need([s.cache.length for s in sessions], new_tokens, turn_tokens)
            if needed + self.config.num_future_steps <= max_len:
                head = self.graph_decoder(1) if len(sessions) > 1 else None  # memory heads, one row each
                return GraphStepper([s.cache for s in sessions], self.graphs[len(sessions)], turn_tokens, head)
        return make_stepper([s.cache for s in sessions])

    # ---- episode start --------------------------------------------------------------------------

    def open(self, instruction: str, name: str | None = None) -> AgentSession:
        """Start an episode: fit the instruction to the context budget and prefill the prefix."""
        name = name if name is not None else f"session-{self._sessions_opened}"
        self._sessions_opened += 1
        instruction, notes = self._fit_instruction(instruction, name)
        prefix = self.prompt.prefix(instruction)
        seed = self.config.conjunction_seed
        rng = None if seed is None else np.random.default_rng([seed, self._sessions_opened])
        session = AgentSession(name, instruction, SessionCache(self.text_model),
                               FrameBank(self.camera, keep_pixels=self.config.scheme is CacheScheme.ORIGINAL),
                               prefix, rng, frame_size=self.config.frame_size, open_notes=notes)
        if self.config.scheme is not CacheScheme.RECOMPUTE:
            session.cache.prefill(embed_segments(self.text_model, [prefix]))
            session.cache.mark_prefix()
        return session

    def context_budget(self) -> int:
        return int(self.config.max_context_tokens or self.text_model.config.max_position_embeddings)

    def long_segment_tokens(self) -> int:
        """Longest segment one row prefills at a window start: the memory sentence + the first turn
        (+ the previous answer's tail, the drafts and slack)."""
        p = self.tokens_per_frame
        memory = len(self.prompt.processor.nav_memory_ids()) - 1 + self.config.num_history * p
        turn = len(self.prompt.processor.nav_turn_ids(max(CONJUNCTIONS, key=len), first=True)) - 1 + p
        return memory + turn + 64 + self._tree_nodes()

    def turn_tokens(self) -> int:
        """Most new tokens of a call that is not a window start: a turn, the previous answer's tail,
        the drafts and slack."""
        return self.tokens_per_frame + 64 + self._tree_nodes()

    def _tree_nodes(self) -> int:
        return 0 if self.tree is None else self.tree.size

    def _draft_tree(self) -> DraftTree | None:
        """decoding="tree": every chunk of the symbols that can continue one (STOP ends it)."""
        depth = self.config.num_future_steps - 1  # the last symbol's pick needs no node after it
        if self.config.decoding is not Decoding.TREE or depth < 1:
            return None
        symbols = [self.prompt.symbol_ids[int(a)] for a in Action if a is not Action.STOP]
        return DraftTree.full(symbols, depth, self.config.tree_max_nodes)

    def window_need(self) -> int:
        """Tokens one window needs after the prefix: memory + every turn with its longest answer."""
        p = self.tokens_per_frame
        conj = max(CONJUNCTIONS, key=len)
        memory = len(self.prompt.processor.nav_memory_ids()) - 1 + self.config.num_history * p
        turn = len(self.prompt.processor.nav_turn_ids(conj, first=False)) - 1 + p
        answer = len(self.prompt.answer_ids([1] * self.config.num_future_steps))
        return memory + self.config.calls_per_window * (turn + answer)

    def _fit_instruction(self, instruction: str, name: str) -> tuple[str, list[str]]:
        budget = self.context_budget() - self.window_need()
        if len(self.prompt.prefix(instruction).ids) <= budget:
            return instruction, []
        words = instruction.split()
        if budget < len(self.prompt.prefix(words[0]).ids):
            raise ValueError(f"session {name!r}: context budget {self.context_budget()} tokens cannot hold "
                             f"a window ({self.window_need()} tokens) and the prompt prefix")
        low, high = 1, len(words)  # most words that fit: binary search on the word count
        while low < high:
            mid = (low + high + 1) // 2
            if len(self.prompt.prefix(" ".join(words[:mid])).ids) <= budget:
                low = mid
            else:
                high = mid - 1
        note = (f"instruction truncated from {len(words)} to {low} words to fit the context budget "
                f"({budget} prefix tokens of {self.context_budget()})")
        return " ".join(words[:low]), [note]

    # ---- acting ---------------------------------------------------------------------------------

    def act(self, session: AgentSession, rgb: np.ndarray, depth: np.ndarray | None = None,
            pose: np.ndarray | None = None, executed: list[int] | None = None) -> ActOutput:
        return self.act_batch([session], [Observation(rgb, depth, pose, executed)])[0]

    @torch.no_grad()
    def act_batch(self, sessions: Sequence[AgentSession], observations: Sequence[Observation]) -> list[ActOutput]:
        """One model call for several sessions (streaming: one batched forward; other schemes: in turn)."""
        if len({id(s) for s in sessions}) != len(sessions):
            raise ValueError("act_batch got the same session twice")
        start = self.now_ms()
        checked = [check_observation(s, o) for s, o in zip(sessions, observations)]
        executed = [None if obs.executed is None else check_executed(s, obs.executed)  # all checked first
                    for s, (obs, _) in zip(sessions, checked)]
        for session, actions in zip(sessions, executed):
            if actions is not None and actions != session.last_actions:
                self._replace_answer(session, actions)
        features = self._encode([obs.rgb for obs, _ in checked])
        encoded = self.now_ms()
        plans = [self._plan(s, feats, obs, notes) for s, feats, (obs, notes) in zip(sessions, features, checked)]
        if self.config.scheme is CacheScheme.STREAMING:
            groups = [list(range(len(sessions)))]
        else:
            groups = [[i] for i in range(len(sessions))]
        decoded: list[Decoded | None] = [None] * len(sessions)
        hidden: list[torch.Tensor | None] = [None] * len(sessions)
        prefill_ms = decode_ms = 0.0
        for group in groups:
            t0 = self.now_ms()
            results, first, t1 = self._decode_group([sessions[i] for i in group], [plans[i][0] for i in group])
            for i, result, h in zip(group, results, first):
                decoded[i], hidden[i] = result, h
            prefill_ms, decode_ms = prefill_ms + t1 - t0, decode_ms + self.now_ms() - t1
        timings = {"encode": encoded - start, "prefill": prefill_ms, "generate": decode_ms}
        outputs = [self._finish(s, plan, d, h, timings) for s, plan, d, h in zip(sessions, plans, decoded, hidden)]
        total = self.now_ms() - start
        for out in outputs:
            out.timings_ms["total"] = total
        return outputs

    def _decode_group(self, sessions: list[AgentSession], segments: list[list[Segment]]):
        """Prefill each session's new segments (speculative: + its drafted actions; tree: + the draft
        tree) in one forward, then decode its chunk. Returns (Decoded per session, hidden at each
        generation prompt, the time the prefill ended)."""
        if self.tree is not None:
            segments = [[*segs, Segment(list(self.tree.tokens))] for segs in segments]
        drafts = self._drafts(sessions)
        if drafts is not None:
            segments = [[*segs, Segment(ids)] for segs, ids in zip(segments, drafts)]
        counts = [sum(seg.length for seg in segs) for segs in segments]
        for session, count in zip(sessions, counts):
            session.stats.prefilled_tokens += count
        stepper = self._stepper(sessions, counts)
        embeds = [embed_segments(self.text_model, segs) for segs in segments]
        if self.tree is not None:
            tail = stepper.prefill(embeds, tail=self.tree.size + 1, tree=self.tree)
            prefilled = self.now_ms()
            return tree_decode(stepper, tail, self.tree, self.rules), tail[:, 0], prefilled
        if drafts is None:
            first = stepper.prefill(embeds)
            prefilled = self.now_ms()
            return greedy_decode(stepper, first, self.rules), first, prefilled
        tail = stepper.prefill(embeds, tail=len(drafts[0]) + 1)
        prefilled = self.now_ms()
        return speculative_decode(stepper, tail, drafts, self.rules), tail[:, 0], prefilled

    def _drafts(self, sessions: list[AgentSession]) -> list[list[int]] | None:
        """Token ids of each session's drafted actions (None: greedy decoding, or nothing to draft)."""
        count = self.config.num_future_steps - 1
        if self.config.decoding is not Decoding.SPECULATIVE or count < 1:
            return None
        symbols = self.prompt.symbol_ids
        return [[symbols[a] for a in draft_actions(self.config.draft, s.last_actions, count)] for s in sessions]

    def _encode(self, frames: list[np.ndarray]) -> list[torch.Tensor]:
        """Pooled tokens (P, hidden) per frame; frames of one size go through the tower together."""
        out: list[torch.Tensor | None] = [None] * len(frames)
        by_shape: dict[tuple, list[int]] = {}
        for index, frame in enumerate(frames):
            by_shape.setdefault(frame.shape, []).append(index)
        for indices in by_shape.values():
            feats = self.encode_pixels(np.stack([frames[i] for i in indices]))
            for row, index in enumerate(indices):
                out[index] = feats[row]
        return out

    def encode_pixels(self, frames: np.ndarray) -> torch.Tensor:
        pixels = torch.from_numpy(np.ascontiguousarray(frames)).to(self.text_model.device)
        self.frames_encoded += len(frames)
        if self.encoder_graphs is not None:
            try:
                return self.encoder_graphs(pixels)
            except RuntimeError as error:  # capture failed: encode eagerly from now on
                log.warning("CUDA graph capture of the vision tower failed (%s); encoding eagerly", error)
                self._graph_errors.append(f"encoder: {error}")
                self.encoder_graphs = None
        return self.model.encode_frames(pixels)

    def _conjunction(self, session: AgentSession) -> str:
        if session.rng is None:
            return self.config.conjunction
        return CONJUNCTIONS[int(session.rng.integers(len(CONJUNCTIONS)))]

    def _plan(self, session: AgentSession, feats: torch.Tensor, obs: Observation,
              notes: list[str]) -> tuple[list[Segment], list[str], bool]:
        """The segments to prefill for this call, updating the session's window bookkeeping."""
        notes = list(session.open_notes if session.stats.calls == 0 else []) + notes
        boundary = session.stats.calls > 0 and session.step - session.window_start >= self.config.num_frames
        if session.stats.calls == 0:
            session.stats.windows = 1
        prepared = session.prepared if boundary and session.prepared and session.prepared.start == session.step else None
        session.prepared = None
        if prepared is not None:  # prefix + memory were prefilled by prefetch(): only the turn is new
            session.window_start, session.pending, session.cache = session.step, [], prepared.cache
            session.window, new = [prepared.memory], []
            notes += prepared.notes
            self._count_window(session, prepared.memory, prepared.pruned)
        elif boundary:  # old turns (and the unsent answer tail) are dropped with the window
            session.window_start, session.pending = session.step, []
            memory, pruned = self._memory_segment(session, notes)
            session.window, new = [memory], [memory]
            self._count_window(session, memory, pruned)
        else:  # the previous answer's tail is already in session.window; only the cache lacks it
            new = [Segment(session.pending)] if session.pending else []
        depth, pose = (obs.depth, obs.pose) if self.config.voxel_pruning else (None, None)
        notes += session.bank.add(session.step, feats, obs.rgb, depth, pose)
        first_turn = session.stats.calls == 0 or boundary
        turn = self.prompt.turn(self._conjunction(session), first_turn, feats)
        session.window.append(turn)
        new.append(turn)
        session.stats.frames_encoded += 1
        segments = self._scheme_segments(session, new, boundary and prepared is None)
        return segments, notes, boundary

    @torch.no_grad()
    def prefetch(self, session: AgentSession) -> bool:
        """STREAMING: if the next call starts a window, prefill prefix + memory into a second cache
        now (e.g. while the chunk's actions execute), so the boundary call prefills only its turn.
        Returns whether a prepared window is waiting."""
        if self.config.scheme is not CacheScheme.STREAMING or session.stats.calls == 0:
            return False
        if session.step - session.window_start < self.config.num_frames:
            return False
        if session.prepared is not None and session.prepared.start == session.step:
            return True
        notes: list[str] = []
        memory, pruned = self._memory_segment(session, notes)
        cache = SessionCache(self.text_model)
        prefix = session.cache.prefix_length
        cache.replace([(k[..., :prefix, :], v[..., :prefix, :]) for k, v in session.cache.layer_tensors()])
        cache.mark_prefix()
        self._prefill_alone(cache, embed_segments(self.text_model, [memory]))
        session.prepared = PreparedWindow(session.step, cache, memory, pruned, notes)
        return True

    def _prefill_alone(self, cache: SessionCache, embeds: torch.Tensor) -> None:
        """Prefill one cache outside a call: on the one-row graph when decode graphs are on, else eagerly."""
        if self.config.decode_graph:
            decoder = self.graph_decoder(1)
            if decoder.prefill_one(cache, embeds) is not None:
                decoder.store([cache])
                return
        cache.prefill(embeds)

    def _memory_segment(self, session: AgentSession, notes: list[str]) -> tuple[Segment, float | None]:
        """The memory sentence for a window starting now, and the fraction pruned (None: pruning off)."""
        cfg = self.config
        if cfg.scheme is CacheScheme.ORIGINAL:  # the public code: re-encode the history from pixels
            frames = session.bank.history_frames(session.step, cfg.num_history)
            tokens = self.encode_pixels(np.stack([f.pixels for f in frames])).flatten(0, 1)
            session.stats.frames_encoded += len(frames)
            return self.prompt.memory(tokens), None
        memory = session.bank.memory_tokens(session.step, cfg.num_history,
                                            cfg.voxel_size_m if cfg.voxel_pruning else None)
        notes += memory.notes
        if not cfg.voxel_pruning:
            return self.prompt.memory(memory.features), None
        notes.append(f"memory voxel pruning dropped {memory.pruned_fraction:.1%} of tokens")
        return self.prompt.memory(memory.features), memory.pruned_fraction

    @staticmethod
    def _count_window(session: AgentSession, memory: Segment, pruned: float | None) -> None:
        session.stats.windows += 1
        session.stats.memory_tokens.append(memory.visual.shape[0])
        if pruned is not None:
            session.stats.pruned_fractions.append(pruned)

    def _scheme_segments(self, session: AgentSession, new: list[Segment], boundary: bool) -> list[Segment]:
        """Adjust the cache for the scheme and return what to prefill on top of it."""
        scheme = self.config.scheme
        if scheme is CacheScheme.RECOMPUTE:
            session.cache.reset()
            return [session.prefix, *session.window]
        if boundary and scheme is CacheScheme.ORIGINAL:
            session.cache.reset()
            return [session.prefix, *new]
        if boundary:
            session.cache.truncate_to(session.cache.prefix_length)
        return new

    def _finish(self, session: AgentSession, plan, decoded: Decoded, hidden: torch.Tensor,
                timings: dict[str, float]) -> ActOutput:
        _, notes, boundary = plan
        session.turn_end = session.cache.length - decoded.fed
        actions, ok = self.prompt.parse(decoded.tokens)
        fallback = not ok or not actions
        if fallback:
            notes.append(f"fallback: malformed output {decoded.tokens} -> action {self.config.fallback_action}")
            actions = [self.config.fallback_action]
            session.stats.fallbacks += 1
        actions = actions[: self.config.num_future_steps]
        canonical = self.prompt.answer_ids(actions)
        fed = decoded.tokens[: decoded.fed]
        if canonical[: len(fed)] == fed:
            session.pending = canonical[len(fed):]
        else:  # the context must hold the executed actions' canonical answer, as in training
            session.cache.truncate_to(session.turn_end)
            session.pending = canonical
        session.window.append(Segment(canonical))
        session.last_actions = list(actions)
        session.stats.count_decoding(decoded)
        session.step += len(actions)
        session.stats.calls += 1
        return ActOutput(actions, dict(timings), notes, fallback, boundary, decoded, hidden)

    def _replace_answer(self, session: AgentSession, actions: list[int]) -> None:
        """The env executed `actions` instead of the previous call's answer: the context must show what
        was executed (as the training samples do), not what the model said. The answer's fed tokens are
        cut from the cache; the canonical answer of the executed actions is prefilled with the next turn."""
        canonical = self.prompt.answer_ids(actions)
        session.cache.truncate_to(session.turn_end)
        session.pending = canonical
        session.window[-1] = Segment(canonical)  # _finish appended the answer last
        session.last_actions = actions

    def now_ms(self) -> float:
        """Milliseconds, after the device's queued work (so timings are real on CUDA)."""
        if self.text_model.device.type == "cuda":
            torch.cuda.synchronize(self.text_model.device)
        return time.perf_counter() * 1000.0


def check_executed(session: AgentSession, executed: Sequence[int]) -> list[int]:
    """`executed` checked against the session's previous answer: one valid action per answered one."""
    if session.stats.calls == 0:
        raise ValueError(f"session {session.name!r}: executed actions given before its first call")
    actions = [int(validate_action(a)) for a in executed]
    if len(actions) != len(session.last_actions):
        raise ValueError(f"session {session.name!r}: {len(actions)} executed actions for a previous answer "
                         f"of {len(session.last_actions)} (one executed action per answered one)")
    return actions
