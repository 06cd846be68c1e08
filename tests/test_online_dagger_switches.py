"""Issue 8's DAgger switch `online.chunk_mixing` travels run config -> actor command line -> DaggerConfig.

One way to start actors (rollout/actor_processes.py): the pipeline's online stage and `train --online`
build an ActorProcessConfig, its `streamvln actor` argv, which the actor parses into an ActorLoopConfig
that makes the DaggerConfig of every weights version. These tests follow that path without processes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from rollout.actor_loop import ActorLoopConfig
from rollout.actor_processes import ActorProcessConfig, actor_command
from rollout.actors import DaggerConfig
from streamvln.cli import build_parser
from streamvln.commands import actor as actor_command_module
from streamvln.commands.train import online_actor_config
from streamvln.pipeline.config import load_run_config
from streamvln.pipeline.run import Pipeline

BENCHMARK = Path(__file__).resolve().parents[1] / "configs" / "benchmark.yaml"
ADDRESSES = {"episodes": "tcp://127.0.0.1:5601", "weights": "tcp://127.0.0.1:5602"}


def _actor_loop_config(process: ActorProcessConfig, index: int = 1) -> ActorLoopConfig:
    """What the spawned actor builds from its command line (streamvln/commands/actor.py)."""
    argv = actor_command(process, index, ADDRESSES)
    assert argv[1:3] == ["-m", "streamvln.commands.actor"]
    parser = argparse.ArgumentParser(prog="streamvln")
    actor_command_module.register(parser.add_subparsers(dest="command", required=True))
    config = actor_command_module.loop_config(parser.parse_args(["actor", *argv[3:]]), token="secret")
    config.validate()
    return config


@pytest.mark.parametrize(("variant", "expected"), [(None, True), ("dagger_v1", False)])
def test_run_config_chunk_mixing_reaches_every_actors_dagger_config(tmp_path, variant, expected):
    config = load_run_config(BENCHMARK, variant=variant)
    config.out_root = str(tmp_path)
    assert config.online.chunk_mixing is expected
    process = Pipeline(config, Console(quiet=True)).actor_process_config()
    loop = _actor_loop_config(process)
    for version in (0, 3):  # every weights version's DAgger iteration
        dagger = loop.dagger(version)
        assert dagger.chunk_mixing is expected
        assert dagger.p == config.online.dagger_p and dagger.intervene_after == config.online.intervene_after
    assert loop.actor_id == "actor-1" and loop.seed == config.seed * 1000 + 1


@pytest.mark.parametrize(("variant", "data_key", "chunk_mixing"),
                         [("dagger_v1", "consistent_history", False), ("dagger_s4", "train_all_turns", True)])
def test_dagger_variants_switch_their_key_and_nothing_else(variant, data_key, chunk_mixing):
    full, other = load_run_config(BENCHMARK), load_run_config(BENCHMARK, variant=variant)
    assert other.name == f"benchmark_{variant}" and other.online.enabled and not other.eval.variants
    assert other.train["data"][data_key] is False
    assert full.train["data"].get(data_key, True) is True
    assert {k: v for k, v in other.train["data"].items() if k != data_key} == full.train["data"]
    assert other.online.chunk_mixing is chunk_mixing  # dagger_v1 is per-step mixing as well
    assert other.online.dagger_p == full.online.dagger_p and other.online.steps == full.online.steps


@pytest.mark.parametrize(("flags", "expected"), [([], True), (["--no-chunk-mixing"], False)])
def test_train_online_chunk_mixing_flag_reaches_the_actors(flags, expected):
    args = build_parser().parse_args(["train", "--config", "c.yaml", "--online", "--store", "s", "--data", "d",
                                      *flags])
    process = online_actor_config(args, seed=3, has_model=True)
    assert process.chunk_mixing is expected
    assert _actor_loop_config(process, index=0).dagger(1).chunk_mixing is expected


def test_non_bool_switches_are_clear_errors(tmp_path):
    values = yaml.safe_load(BENCHMARK.read_text())
    values["online"]["chunk_mixing"] = "sometimes"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(ValueError, match="online.chunk_mixing must be true or false, got 'sometimes'"):
        load_run_config(path)
    values["online"]["chunk_mixing"] = False
    values["train"]["data"]["consistent_history"] = 1
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(ValueError, match="data.consistent_history must be true or false, got 1"):
        load_run_config(path)  # at load, before any stage runs
    values["train"]["data"]["consistent_history"] = True
    values["train"]["data"]["train_all_turns"] = "all"
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(ValueError, match="data.train_all_turns must be true or false, got 'all'"):
        load_run_config(path)
    with pytest.raises(ValueError, match="ActorLoopConfig.chunk_mixing must be a bool"):
        ActorLoopConfig(chunk_mixing="no").validate()
    (tmp_path / "train.json.gz").write_bytes(b"")
    with pytest.raises(ValueError, match="ActorProcessConfig.chunk_mixing must be a bool"):
        ActorProcessConfig(data=str(tmp_path), chunk_mixing=0).validate()
    with pytest.raises(ValueError, match="DaggerConfig.chunk_mixing must be true or false"):
        DaggerConfig(chunk_mixing="yes").validate()
