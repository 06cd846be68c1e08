"""Typed config of the main job `streamvln run` (configs/quickstart.yaml, configs/smoke.yaml)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class DataStage:
    train_episodes: int = 150
    val_episodes: int = 30
    episodes_per_house: int = 10
    min_geodesic_m: float = 3.5
    max_geodesic_m: float = 7.0
    seed: int = 0

    def validate(self) -> None:
        for name in ("train_episodes", "val_episodes", "episodes_per_house"):
            if getattr(self, name) < 1:
                raise ValueError(f"data.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.min_geodesic_m < self.max_geodesic_m:
            raise ValueError(f"data needs 0 < min_geodesic_m < max_geodesic_m, got "
                             f"{self.min_geodesic_m}, {self.max_geodesic_m}")


@dataclass
class SensorStage:
    width: int = 112
    height: int = 112
    hfov_deg: float = 90.0

    def validate(self) -> None:
        if self.width < 8 or self.height < 8:
            raise ValueError(f"sensors must be at least 8x8 px, got {self.width}x{self.height}")


@dataclass
class OnlineStage:
    enabled: bool = True
    steps: int = 200  # learner optimizer steps of the online phase
    publish_every: int = 50
    actors: int = 1  # actor processes
    envs_per_actor: int = 4
    dagger_p: float = 0.75
    intervene_after: int | None = 6
    max_policy_lag: int = 2
    actor_max_steps: int = 300  # step limit of an actor episode (a truncated one is discarded)
    min_new_episodes: int = 2  # DAgger episodes the learner waits for before its first online step
    wait_timeout_s: float = 600.0  # for those episodes (actor start-up included)

    def validate(self) -> None:
        for name in ("steps", "publish_every", "actors", "envs_per_actor", "actor_max_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"online.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.dagger_p <= 1:
            raise ValueError(f"online.dagger_p must be in [0, 1], got {self.dagger_p}")


@dataclass
class EvalStage:
    policies: list[str] = field(default_factory=lambda: ["random", "forward", "trained"])
    episodes: int | None = None  # first N val_unseen episodes (None: all)
    max_steps: int = 500
    workers: int = 1
    gif: bool = True

    def validate(self) -> None:
        if not self.policies:
            raise ValueError("eval.policies is empty")
        if self.workers < 1 or self.max_steps < 1:
            raise ValueError("eval.workers and eval.max_steps must be >= 1")


@dataclass
class RunConfig:
    name: str = "quickstart"
    out_root: str = "runs"
    seed: int = 0
    data: DataStage = field(default_factory=DataStage)
    sensors: SensorStage = field(default_factory=SensorStage)
    train: dict[str, Any] = field(default_factory=dict)  # a TrainConfig (as in configs/train_*.yaml)
    online: OnlineStage = field(default_factory=OnlineStage)
    eval: EvalStage = field(default_factory=EvalStage)

    def validate(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"name must be a non-empty folder name, got {self.name!r}")
        for section in (self.data, self.sensors, self.online, self.eval):
            section.validate()

    @property
    def run_dir(self) -> Path:
        return Path(self.out_root) / self.name


_SECTIONS = {"data": DataStage, "sensors": SensorStage, "online": OnlineStage, "eval": EvalStage}


def _section(cls: type, values: Any, where: str):
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a mapping, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    return cls(**values)


def load_run_config(path: str | Path | None, name: str | None = None) -> RunConfig:
    """RunConfig from YAML (None: the defaults); `name` overrides the run's folder name."""
    values: dict[str, Any] = {}
    where = "run config"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"run config not found: {path}")
        values = yaml.safe_load(path.read_text()) or {}
        where = str(path)
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
