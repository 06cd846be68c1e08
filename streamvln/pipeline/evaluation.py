"""Evaluation runs: any policy spec over a split, several worker processes, resumable per-episode JSONL.

Policy specs are envs.policies' ("expert", "random", "forward", "replay:FILE") plus
"checkpoint:PATH": the streaming agent with a save_pretrained folder (composed here, since envs/
must not import agent/). Each finished episode is appended to `<out>.jsonl` as one JSON line (flushed),
so a killed run resumes where it stopped: episodes already in the file are skipped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from envs.metrics import aggregate
from envs.sensors import SensorConfig

log = logging.getLogger(__name__)

SCHEMES = ("streaming", "original")  # agent.streaming.CacheScheme values an evaluation may pick


@dataclass(frozen=True)
class EvalSettings:
    data: str
    split: str = "val_unseen"
    sensors: SensorConfig = SensorConfig()
    max_steps: int = 500
    seed: int = 0
    workers: int = 1
    max_episodes: int | None = None
    # checkpoint policies only (issue 8's inference rows): the agent's cache scheme ("streaming" ours,
    # "original" StreamVLN's window scheme), voxel pruning of memory tokens (depth + pose passed), and
    # the instruction-blind ablation (every episode's instruction is blanked).
    scheme: str = "streaming"
    voxel_pruning: bool = False
    blank_instruction: bool = False
    stop_bias: float = 0.0  # StreamingConfig.stop_bias (STOP calibration)

    def validate(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"eval scheme must be one of {SCHEMES}, got {self.scheme!r}")
        self.sensors.validate(where="eval.sensors")
        if self.workers < 1:
            raise ValueError(f"eval workers must be >= 1, got {self.workers}")
        if self.max_steps < 1:
            raise ValueError(f"eval max_steps must be >= 1, got {self.max_steps}")
        if self.max_episodes is not None and self.max_episodes < 1:
            raise ValueError(f"eval max_episodes must be >= 1 or None, got {self.max_episodes}")
        if not math.isfinite(self.stop_bias):  # before any worker process loads a model
            raise ValueError(f"eval stop_bias must be a finite number, got {self.stop_bias}")


def checkpoint_policy(path: str, use_depth_pose: bool = False, scheme: str = "streaming",
                      voxel_pruning: bool = False, hfov_deg: float = 90.0, stop_bias: float = 0.0):
    """The streaming agent over a save_pretrained folder, with the window it was trained with."""
    from agent.streaming import StreamingAgent, StreamingConfig
    from agent.streaming.engine import checkpoint_window, load_checkpoint
    from agent.streaming.loop import StreamingPolicy

    folder = Path(path)
    window = checkpoint_window(folder)
    model, processor = load_checkpoint(folder)
    config = StreamingConfig(**window, scheme=scheme, voxel_pruning=voxel_pruning, hfov_deg=hfov_deg,
                             stop_bias=stop_bias)
    agent = StreamingAgent(model, processor, config.validate())
    # Voxel pruning needs each frame's depth and pose.
    policy = StreamingPolicy(agent, use_depth_pose=use_depth_pose or voxel_pruning)
    policy.name = f"checkpoint:{path}"
    return policy


def make_policy(spec: str, seed: int = 0, settings: EvalSettings | None = None):
    """envs.policies.make_policy plus "checkpoint:PATH" (scheme and pruning from `settings`)."""
    from envs.policies import make_policy as make_env_policy

    name, _, argument = spec.partition(":")
    if name == "checkpoint":
        if not argument:
            raise ValueError("policy 'checkpoint' needs a folder: 'checkpoint:PATH'")
        if settings is None:
            return checkpoint_policy(argument)
        return checkpoint_policy(argument, scheme=settings.scheme, voxel_pruning=settings.voxel_pruning,
                                 hfov_deg=settings.sensors.hfov_deg, stop_bias=settings.stop_bias)
    return make_env_policy(spec, seed=seed)


def blank_instruction(episode):
    """The episode with the instruction-blind placeholder for its instruction (as in training)."""
    from rollout.samples import BLANK_INSTRUCTION

    blank = dataclasses.replace(episode.instruction, instruction_text=BLANK_INSTRUCTION, instruction_tokens=None)
    return dataclasses.replace(episode, instruction=blank)


# ---------------------------------------------------------------------- worker side
_WORKER: dict = {}  # per worker process: the task and the policy, built once by _init_worker


def _init_worker(spec: str, settings: EvalSettings) -> None:
    import torch

    from envs.embedded import EmbeddedBackend, EmbeddedConfig

    if settings.workers > 1:  # workers run side by side: one torch thread each, no oversubscription
        torch.set_num_threads(1)
    from envs.episodes.io import load_split
    from envs.task import TaskConfig, VLNTask

    policy = make_policy(spec, settings.seed, settings)
    uses_sensors = getattr(policy, "uses_sensors", True)
    backend = EmbeddedBackend(EmbeddedConfig(**settings.sensors.as_kwargs(), rgb=uses_sensors, depth=uses_sensors))
    episodes, gt = load_split(settings.data, settings.split)
    if settings.blank_instruction:
        episodes = [blank_instruction(e) for e in episodes]
    _WORKER.update(task=VLNTask(backend, TaskConfig(max_steps=settings.max_steps)), policy=policy,
                   episodes={e.key: e for e in episodes}, gt=gt)


def _run_one(key: str) -> dict:
    from envs.evaluation import run_episode

    episode = _WORKER["episodes"][key]
    run = run_episode(_WORKER["task"], _WORKER["policy"], episode, _WORKER["gt"].get(key))
    return run.as_dict()


# ---------------------------------------------------------------------- driver
def read_results(path: Path) -> dict[str, dict]:
    """Finished episodes of a results file; a torn last line (killed mid-write) is ignored."""
    done: dict[str, dict] = {}
    if not path.is_file():
        return done
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            row = json.loads(line)
            done[str(row["episode_id"])] = row
        except (json.JSONDecodeError, KeyError, TypeError):
            log.warning("%s:%d: skipping an unreadable line", path, number)
    return done


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line without its newline (a run killed mid-write) so appends start on a fresh line."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def evaluate_policy(spec: str, settings: EvalSettings, results: str | Path,
                    progress: Callable[[int, int], None] | None = None) -> dict:
    """Run `spec` over the split (skipping episodes already in `results`); returns the summary."""
    from envs.episodes.io import load_split

    settings.validate()
    results = Path(results)
    results.parent.mkdir(parents=True, exist_ok=True)
    episodes, _ = load_split(settings.data, settings.split)
    if settings.max_episodes is not None:
        episodes = episodes[: settings.max_episodes]
    done = read_results(results)
    todo = [e.key for e in episodes if e.key not in done]
    if todo:
        _run_missing(spec, settings, results, todo, done, progress, len(episodes))
    rows = [done[e.key] for e in episodes if e.key in done]
    return {"policy": spec, "split": settings.split, "num_episodes": len(rows), "aggregate": aggregate(rows)}


def _run_missing(spec: str, settings: EvalSettings, results: Path, todo: list[str], done: dict,
                 progress, total: int) -> None:
    _drop_torn_tail(results)
    with open(results, "a") as sink:
        def record(row: dict) -> None:
            sink.write(json.dumps(row) + "\n")
            sink.flush()
            done[str(row["episode_id"])] = row
            if progress is not None:
                progress(len(done), total)

        if settings.workers == 1 or len(todo) == 1:
            _init_worker(spec, settings)
            for key in todo:
                record(_run_one(key))
            _WORKER.clear()
            return
        context = multiprocessing.get_context("spawn")  # never fork a process that holds torch threads
        with ProcessPoolExecutor(settings.workers, mp_context=context, initializer=_init_worker,
                                 initargs=(spec, settings)) as pool:
            for row in pool.map(_run_one, todo):
                record(row)
