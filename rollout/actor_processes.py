"""Actor processes on this machine: the `streamvln actor` command line for each, spawn and stop.

One way to start actors: `streamvln train --online` (training/online_job.py) and the pipeline's
online stage build the same command (`python -m streamvln.commands.actor ...`, the fast-start entry
of the `streamvln actor` command). The run token travels in the environment, never on the command
line (visible in `ps`); OMP_NUM_THREADS=1 because actors share the CPU with the learner.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from envs.sensors import SensorConfig


@dataclass(frozen=True)
class ActorProcessConfig:
    data: str  # folder with {split}.json.gz
    split: str = "train"
    envs: int = 1
    sensors: SensorConfig = SensorConfig()  # travels as --width/--height/--hfov
    max_steps: int = 500
    dagger_p: float = 0.75
    intervene_after: int | None = None
    chunk_mixing: bool = True  # DaggerConfig.chunk_mixing (False: per-step beta draws)
    accept_stop_m: float = 0.0  # DaggerConfig.accept_stop_m
    executed_in_context: bool = False  # DaggerConfig.executed_in_context
    max_policy_lag: int = 2
    wait_weights_s: float = 600.0  # wait for the learner's v0 before collecting (0: start with the expert)
    seed: int = 0
    curve_keys: str | None = None  # actor i uses key pair clients/actor-i (streamvln serve keygen)

    def validate(self) -> None:
        if not Path(self.data, f"{self.split}.json.gz").is_file():
            raise FileNotFoundError(f"actor data: {self.data}/{self.split}.json.gz not found")
        if self.envs < 1:
            raise ValueError(f"ActorProcessConfig.envs must be >= 1, got {self.envs}")
        self.sensors.validate(where="ActorProcessConfig.sensors")
        if not isinstance(self.chunk_mixing, bool):
            raise ValueError(f"ActorProcessConfig.chunk_mixing must be a bool, got {self.chunk_mixing!r}")


def actor_id(index: int) -> str:
    return f"actor-{index}"


def actor_command(config: ActorProcessConfig, index: int, addresses: dict[str, str]) -> list[str]:
    """argv of actor `index` for a learner listening on addresses {"episodes": ..., "weights": ...}."""
    command = [sys.executable, "-m", "streamvln.commands.actor", "--learner", addresses["episodes"],
               "--weights", addresses["weights"], "--data", str(config.data), "--split", config.split,
               "--actor-id", actor_id(index), "--envs", str(config.envs), "--width", str(config.sensors.width),
               "--height", str(config.sensors.height), "--hfov", str(config.sensors.hfov_deg), "--max-steps", str(config.max_steps),
               "--dagger-p", str(config.dagger_p), "--max-policy-lag", str(config.max_policy_lag),
               "--seed", str(config.seed * 1000 + index), "--wait-weights", str(config.wait_weights_s),
               "--chunk-mixing" if config.chunk_mixing else "--no-chunk-mixing",  # explicit: no default to drift
               "--accept-stop-m", str(config.accept_stop_m),
               "--executed-in-context" if config.executed_in_context else "--no-executed-in-context"]
    if config.intervene_after is not None:
        command += ["--intervene-after", str(config.intervene_after)]
    if config.curve_keys is not None:
        command += ["--curve-keys", str(config.curve_keys), "--curve-client", actor_id(index)]
    return command


def spawn_actor(config: ActorProcessConfig, index: int, addresses: dict[str, str], token: str,
                log_dir: Path) -> subprocess.Popen:
    """Start actor `index`; its output goes to log_dir/actor-<index>.log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "STREAMVLN_TOKEN": token, "OMP_NUM_THREADS": "1"}
    log = open(log_dir / f"{actor_id(index)}.log", "w")  # noqa: SIM115 - the child owns it
    try:
        return subprocess.Popen(actor_command(config, index, addresses), stdout=log, stderr=subprocess.STDOUT, env=env)
    finally:
        log.close()  # the child holds its own descriptor


def wait_or_terminate(process: subprocess.Popen, timeout_s: float) -> int:
    """Wait for a child that was asked to stop; SIGTERM, then SIGKILL, when it does not."""
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            return process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()
