"""Typed config of the main job `streamvln run` (configs/quickstart.yaml, configs/smoke.yaml)."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from envs.sensors import SensorConfig
from streamvln.cli_defaults import SUCCESS_DISTANCE_M

MAX_AUTO_WORKERS = 8  # data.workers: null: this machine's cores, at most this many


@dataclass
class DataStage:
    train_episodes: int = 150
    val_episodes: int = 30  # val_unseen: houses never used for training
    val_seen_episodes: int = 0  # val_seen: new episodes in the training houses (0: no such split)
    episodes_per_house: int = 10
    min_geodesic_m: float = 3.5
    max_geodesic_m: float = 7.0
    seed: int = 0
    # Processes for the CPU stages (episode generation, expert collection); None: this machine's cores,
    # at most 8. Same episodes and store as one process.
    workers: int | None = None

    def validate(self) -> None:
        for name in ("train_episodes", "val_episodes", "episodes_per_house"):
            if getattr(self, name) < 1:
                raise ValueError(f"data.{name} must be >= 1, got {getattr(self, name)}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"data.workers must be >= 1 or null (this machine's cores), got {self.workers}")
        if self.val_seen_episodes < 0:
            raise ValueError(f"data.val_seen_episodes must be >= 0, got {self.val_seen_episodes}")
        if not 0 < self.min_geodesic_m < self.max_geodesic_m:
            raise ValueError(f"data needs 0 < min_geodesic_m < max_geodesic_m, got "
                             f"{self.min_geodesic_m}, {self.max_geodesic_m}")

    @property
    def processes(self) -> int:
        """data.workers, or this machine's cores (at most MAX_AUTO_WORKERS)."""
        return self.workers if self.workers is not None else max(1, min(os.cpu_count() or 1, MAX_AUTO_WORKERS))


# What a model folder (an exported run model or a shipped checkpoint) must hold to start a run from it.
START_MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "sample_window.json")

MIN_SENSOR_SIDE = 8  # px: the smallest frame side a run config accepts (stricter than SensorConfig's 1)


@dataclass
class OnlineStage:
    enabled: bool = True
    steps: int = 200  # learner optimizer steps of the online phase
    publish_every: int = 50
    actors: int = 1  # actor processes
    envs_per_actor: int = 4
    dagger_p: float = 0.75
    intervene_after: int | None = 6
    # beta picks who drives a whole label chunk (rollout.actors.DaggerConfig.chunk_mixing); false: the
    # per-step draw of the runs before session 3 (the "+DAgger (before the fix)" row: variant dagger_v1)
    chunk_mixing: bool = True
    # A policy STOP within this geodesic distance of the goal ends a DAgger episode as a success instead of
    # being replaced by the expert's "go on" (rollout.actors.DaggerConfig.accept_stop_m; 0: always replaced).
    accept_stop_m: float = 0.0
    # How often the online learner draws a DAgger episode's windows relative to an expert episode's
    # (rollout.view.ViewConfig.source_weights; 1: as often). Issue 8: DAgger labels are ~60% turns
    # (expert data ~40%), and every DAgger row so far scored under the expert-only control.
    dagger_weight: float = 1.0
    # The DAgger policy's context shows the chunk really executed, not its own answer
    # (rollout.actors.DaggerConfig.executed_in_context).
    executed_in_context: bool = False
    max_policy_lag: int = 2
    actor_max_steps: int = 300  # step limit of an actor episode (a truncated one is discarded)
    min_new_episodes: int = 2  # DAgger episodes the learner waits for before its first online step
    wait_timeout_s: float = 600.0  # for those episodes (actor start-up included)
    # Peak lr of every parameter group in the online phase (None: train.optim's). The online learner
    # starts its own warmup + cosine; re-warming to the offline peak undid behaviour cloning in the
    # quick start (DAgger agreement fell from 0.62 to 0.41 over 4 weight versions).
    lr: float | None = None

    def validate(self) -> None:
        for name in ("steps", "publish_every", "actors", "envs_per_actor", "actor_max_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"online.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"online.lr must be > 0, got {self.lr}")
        if not 0 <= self.dagger_p <= 1:
            raise ValueError(f"online.dagger_p must be in [0, 1], got {self.dagger_p}")
        for name in ("chunk_mixing", "executed_in_context"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"online.{name} must be true or false, got {getattr(self, name)!r}")
        if not (_is_number(self.dagger_weight) and 0 < self.dagger_weight < float("inf")):
            raise ValueError(f"online.dagger_weight must be a finite number > 0, got {self.dagger_weight!r}")
        if not (_is_number(self.accept_stop_m) and 0 <= self.accept_stop_m <= SUCCESS_DISTANCE_M):
            raise ValueError(f"online.accept_stop_m must be a distance in [0, {SUCCESS_DISTANCE_M}] m (the success "
                             f"distance), got {self.accept_stop_m!r}")


def _is_number(value) -> bool:
    """An int or float from YAML, not a bool (YAML's true is an int to isinstance)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class QAStage:
    """Scene QA co-training (issue 8's "+QA" row): generated in the training houses, mixed by weight."""

    enabled: bool = False
    weight: float = 0.25  # mixing weight next to the navigation store's 1.0
    scenes: int = 10  # training houses the questions are asked in
    paths_per_scene: int = 5
    frames_per_path: int = 8
    questions_per_path: int = 3

    def validate(self) -> None:
        if self.weight <= 0:
            raise ValueError(f"qa.weight must be > 0, got {self.weight}")
        for name in ("scenes", "paths_per_scene", "frames_per_path", "questions_per_path"):
            if getattr(self, name) < 1:
                raise ValueError(f"qa.{name} must be >= 1, got {getattr(self, name)}")


SPLITS = ("val_unseen", "val_seen")


@dataclass
class EvalVariant:
    """One more evaluation of the trained model under other inference settings (its own table row)."""

    label: str
    scheme: str = "streaming"  # "streaming" (ours) or "original" (StreamVLN's window scheme)
    voxel_pruning: bool = False
    stop_bias: float = 0.0  # StreamingConfig.stop_bias: STOP calibration (tune on val_seen)

    def validate(self) -> None:
        if not self.label or self.label in ("random", "forward", "expert", "trained", "offline"):
            raise ValueError(f"eval.variants label must be a new non-empty name, got {self.label!r}")
        if self.scheme not in ("streaming", "original"):
            raise ValueError(f"eval.variants[{self.label}].scheme must be streaming|original, got {self.scheme!r}")
        if not _is_number(self.stop_bias) or not math.isfinite(self.stop_bias):
            raise ValueError(f"eval.variants[{self.label}].stop_bias must be a finite number, got {self.stop_bias!r}")


@dataclass
class EvalStage:
    # envs policy specs, "trained" (the final model) and "offline" (the behaviour-cloning model
    # before the online DAgger phase: the BC row of the same run)
    policies: list[str] = field(default_factory=lambda: ["random", "forward", "trained"])
    episodes: int | None = None  # first N episodes of each split (None: all)
    max_steps: int = 500
    workers: int = 1
    gif: bool = True
    splits: list[str] = field(default_factory=lambda: ["val_unseen"])  # val_unseen first: metrics.json's table
    variants: list[EvalVariant] = field(default_factory=list)  # "trained" again with other inference settings
    voxel_pruning: bool = False  # for the "trained" row itself
    maps: bool = True  # top-down map PNGs of one successful and one failed episode of the trained agent

    def __post_init__(self) -> None:
        self.variants = [v if isinstance(v, EvalVariant) else _section(EvalVariant, v, "eval.variants[]")
                         for v in self.variants]

    def validate(self) -> None:
        if not self.policies:
            raise ValueError("eval.policies is empty")
        if self.workers < 1 or self.max_steps < 1:
            raise ValueError("eval.workers and eval.max_steps must be >= 1")
        if not self.splits or self.splits[0] != "val_unseen" or not set(self.splits) <= set(SPLITS):
            raise ValueError(f"eval.splits must start with val_unseen and hold only {SPLITS}, got {self.splits}")
        labels = [v.label for v in self.variants]
        if len(set(labels)) != len(labels):
            raise ValueError(f"eval.variants labels repeat: {labels}")
        for variant in self.variants:
            variant.validate()


@dataclass
class RunConfig:
    name: str = "quickstart"
    out_root: str = "runs"
    seed: int = 0
    data: DataStage = field(default_factory=DataStage)
    sensors: SensorConfig = field(default_factory=SensorConfig)  # `sensors: {width, height, hfov_deg}`
    train: dict[str, Any] = field(default_factory=dict)  # a TrainConfig (as in configs/train_*.yaml)
    online: OnlineStage = field(default_factory=OnlineStage)
    qa: QAStage = field(default_factory=QAStage)
    eval: EvalStage = field(default_factory=EvalStage)
    # Named overrides (deep-merged over this file) that make one table row each: `--variant NAME`.
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    # A model folder (e.g. a shipped checkpoint) that stands in for the offline stage's behaviour-cloning
    # model: the online stage then runs a further DAgger round on an earlier run's result ("" : train BC).
    start_model: str = ""
    command: str = ""  # the command line that made this run (filled in by `streamvln run`)

    def validate(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"name must be a non-empty folder name, got {self.name!r}")
        self.sensors.validate(min_side=MIN_SENSOR_SIDE)
        for section in (self.data, self.online, self.qa, self.eval):
            section.validate()
        if self.instruction_blind and self.online.enabled:
            raise ValueError("train.data.blank_instructions (instruction-blind) needs online.enabled: false: "
                             "DAgger actors prompt the model with the instruction")
        if "val_seen" in self.eval.splits and self.data.val_seen_episodes < 1:
            raise ValueError("eval.splits has val_seen but data.val_seen_episodes is 0")
        self._validate_train_data()
        self._validate_start_model()

    def _validate_start_model(self) -> None:
        if not self.start_model:
            return
        folder = Path(self.start_model)
        missing = [name for name in START_MODEL_FILES if not (folder / name).is_file()]
        if missing:
            raise ValueError(f"start_model {self.start_model!r} is not a saved model folder: missing {missing}")

    def _validate_train_data(self) -> None:
        """train.data (e.g. a variant's consistent_history) fails at load, not after data generation."""
        from training.config import DataConfig, config_from_dict

        config_from_dict(self.train.get("data") or {}, DataConfig, "train.data").validate()

    @property
    def instruction_blind(self) -> bool:
        return bool((self.train.get("data") or {}).get("blank_instructions", False))

    @property
    def run_dir(self) -> Path:
        return Path(self.out_root) / self.name


_SECTIONS = {"data": DataStage, "sensors": SensorConfig, "online": OnlineStage, "qa": QAStage, "eval": EvalStage}


def _section(cls: type, values: Any, where: str):
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a mapping, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    return cls(**values)


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """base with overrides applied: mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_run_config(path: str | Path | None, name: str | None = None, variant: str | None = None) -> RunConfig:
    """RunConfig from YAML (None: the defaults); `name` overrides the run's folder name; `variant`
    applies the file's `variants[variant]` overrides and names the run `<name>_<variant>`."""
    values: dict[str, Any] = {}
    where = "run config"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"run config not found: {path}")
        values = yaml.safe_load(path.read_text()) or {}
        where = str(path)
    if variant is not None:
        variants = values.get("variants") or {}
        if variant not in variants:
            raise ValueError(f"{where}: unknown variant {variant!r}; known: {sorted(variants)}")
        values = deep_merge(values, variants[variant] or {})
        values["name"] = f"{values.get('name', RunConfig.name)}_{variant}"
    top = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(values) - top)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(top)}")
    kwargs = {key: _section(_SECTIONS[key], value or {}, f"{where}.{key}") if key in _SECTIONS else value
              for key, value in values.items()}
    config = RunConfig(**kwargs)
    if name:
        config.name = name
    config.validate()
    return config
