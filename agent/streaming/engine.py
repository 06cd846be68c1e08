"""`StreamingEngine`: the server's SessionEngine (agent/serving/engine.py) over a StreamingAgent.

One AgentSession (own KV cache) per session id; `act` advances all requested sessions in one batched
forward (chunks of at most `max_batch`). Timings per result: encode, prefill, generate (greedy decode),
total, in ms of the batched call.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from agent.serving.engine import ActRequest, ActResult, OpenInfo
from agent.streaming.agent import StreamingAgent, check_executed
from agent.streaming.config import Decoding, StreamingConfig
from agent.streaming.session import AgentSession, Observation

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


def random_model(preset: str, device: str = "cpu", dtype: str = "fp32", seed: int = 0):
    """(model, processor) of a preset with random weights, built directly on `device`."""
    from agent.config import SlowFastConfig
    from agent.modeling import SlowFastForCausalLM
    from agent.processor import SlowFastProcessor

    config = SlowFastConfig.preset(preset)
    torch.manual_seed(seed)
    with torch.device(device):
        model = SlowFastForCausalLM(config)
    return model.to(resolve_dtype(dtype)).eval(), SlowFastProcessor.from_config(config)


def load_checkpoint(path: str | Path, device: str = "cpu", dtype: str = "fp32"):
    """(model, processor) saved with save_pretrained (safetensors + processor settings + tokenizer)."""
    from agent.modeling import SlowFastForCausalLM
    from agent.processor import SlowFastProcessor

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory {path} not found")
    model = SlowFastForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype)).to(device).eval()
    return model, SlowFastProcessor.from_pretrained(path)


WINDOW_FILE = "sample_window.json"  # the training window, saved next to trained weights (training/online.py)


def checkpoint_window(folder: str | Path) -> dict[str, int]:
    """The sample window (num_frames, num_future_steps, num_history) a checkpoint was trained with,
    from the sample_window.json next to its weights; {} when it has none."""
    path = Path(folder) / WINDOW_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def default_config(device: str, checkpoint: str | Path | None = None) -> StreamingConfig:
    """Defaults for serving: decode steps as CUDA graphs on a GPU (latency), eager on the CPU; the
    window a checkpoint was trained with when its folder has sample_window.json (a model trained with
    num_frames=16 must not be served with the default 32-step window). Tree decoding on a GPU, where a
    forward is bound by reading the weights and its ~40 extra tokens are nearly free (7b on the H100:
    p99 42-51 ms against 58 for speculative, median the same); speculative on the CPU, where they are
    compute."""
    on_cuda = str(device).startswith("cuda")
    window = checkpoint_window(checkpoint) if checkpoint is not None else {}
    decoding = Decoding.TREE if on_cuda else Decoding.SPECULATIVE
    return StreamingConfig(**window, decode_graph=on_cuda, encode_graph=on_cuda, decoding=decoding)


class StreamingEngine:
    """SessionEngine: sessions keyed by id, each with its own cache; one batched call per act()."""

    def __init__(self, agent: StreamingAgent, model_version: int = 0, max_sessions: int = 64,
                 max_batch: int = 16):
        if max_sessions < 1 or max_batch < 1:
            raise ValueError(f"max_sessions and max_batch must be >= 1, got {max_sessions}, {max_batch}")
        self.agent = agent
        self.model_version = model_version
        self.max_sessions = max_sessions
        self.max_batch = max_batch
        self.sessions: dict[str, AgentSession] = {}

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", dtype: str = "fp32",
                        config: StreamingConfig | None = None, **kwargs) -> StreamingEngine:
        model, processor = load_checkpoint(path, device, dtype)
        return cls(StreamingAgent(model, processor, config or default_config(device, path)), **kwargs)

    @classmethod
    def from_preset(cls, preset: str = "tiny", device: str = "cpu", dtype: str = "fp32",
                    config: StreamingConfig | None = None, seed: int = 0, **kwargs) -> StreamingEngine:
        model, processor = random_model(preset, device, dtype, seed)
        return cls(StreamingAgent(model, processor, config or default_config(device)), **kwargs)

    def open(self, session_id: str, instruction: str) -> OpenInfo:
        """Open (or reset) a session: a fresh cache with the instruction prefix."""
        if session_id not in self.sessions and len(self.sessions) >= self.max_sessions:
            raise ValueError(f"cannot open session {session_id!r}: {self.max_sessions} sessions are open")
        self.sessions.pop(session_id, None)
        session = self.agent.open(instruction, name=session_id)
        self.sessions[session_id] = session
        return OpenInfo(warnings=list(session.open_notes))

    def act(self, requests: list[ActRequest]) -> list[ActResult]:
        ids = [r.session_id for r in requests]
        missing = [i for i in ids if i not in self.sessions]
        if missing:
            raise KeyError(f"unknown session(s) {missing}: open them with an instruction first")
        if len(set(ids)) != len(ids):
            raise ValueError(f"one act() call names a session twice: {ids}")
        results: list[ActResult] = []
        for begin in range(0, len(requests), self.max_batch):
            chunk = requests[begin:begin + self.max_batch]
            sessions = [self.sessions[r.session_id] for r in chunk]
            executed = [self._usable_executed(s, r.executed) for s, r in zip(sessions, chunk)]
            outputs = self.agent.act_batch(sessions, [Observation(r.rgb, r.depth, r.pose, ex)
                                                      for r, (ex, _) in zip(chunk, executed)])
            results += [ActResult(out.actions, out.timings_ms, notes + out.notes)
                        for out, (_, notes) in zip(outputs, executed)]
        return results

    @staticmethod
    def _usable_executed(session: AgentSession, executed: list[int] | None) -> tuple[list[int] | None, list[str]]:
        """A client's `executed` that does not fit the session's previous reply is dropped with a note, so
        one bad request cannot fail the batch it shares with other sessions."""
        if executed is None:
            return None, []
        try:
            return check_executed(session, executed), []
        except ValueError as error:
            return None, [f"executed ignored: {error}"]

    def close(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)

    def stats(self, session_id: str) -> dict:
        return self.sessions[session_id].stats.as_dict()
