"""Issue 8's DAgger switches (`online.chunk_mixing`, `accept_stop_m`, `executed_in_context`) travel run config ->
actor command line -> DaggerConfig.

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


@pytest.mark.parametrize(("variant", "expected", "accept_stop_m", "in_context"), [
    (None, True, 0.0, False), ("dagger_v1", False, 0.0, False), ("accept_stop", True, 2.0, False),
    ("dagger_ctx", True, 0.0, True)])
def test_run_config_dagger_switches_reach_every_actors_dagger_config(tmp_path, variant, expected, accept_stop_m,
                                                                     in_context):
    config = load_run_config(BENCHMARK, variant=variant)
    config.out_root = str(tmp_path)
    assert config.online.chunk_mixing is expected and config.online.accept_stop_m == accept_stop_m
    process = Pipeline(config, Console(quiet=True)).actor_process_config()
    loop = _actor_loop_config(process)
    for version in (0, 3):  # every weights version's DAgger iteration
        dagger = loop.dagger(version)
        assert dagger.chunk_mixing is expected and dagger.accept_stop_m == accept_stop_m
        assert dagger.executed_in_context is in_context
        assert dagger.p == config.online.dagger_p and dagger.intervene_after == config.online.intervene_after
    assert loop.actor_id == "actor-1" and loop.seed == config.seed * 1000 + 1


@pytest.mark.parametrize(("variant", "data_key", "chunk_mixing"), [
    ("dagger_v1", "consistent_history", False), ("dagger_s4", "train_all_turns", True), ("accept_stop", None, True),
    ("dagger_w025", None, True), ("dagger_ctx", None, True), ("dagger_i2", None, True)])
def test_dagger_variants_switch_their_keys_and_nothing_else(variant, data_key, chunk_mixing):
    full, other = load_run_config(BENCHMARK), load_run_config(BENCHMARK, variant=variant)
    assert other.name == f"benchmark_{variant}" and other.online.enabled and not other.eval.variants
    if data_key is not None:
        assert other.train["data"][data_key] is False
        assert full.train["data"].get(data_key, True) is True
    assert {k: v for k, v in other.train["data"].items() if k != data_key} == full.train["data"]
    # Only the accept_stop row keeps a policy STOP short of the expert's 0.25 m.
    assert full.online.accept_stop_m == 0.0
    assert other.online.accept_stop_m == (2.0 if variant == "accept_stop" else 0.0)
    assert full.online.dagger_weight == 1.0
    assert other.online.dagger_weight == (0.25 if variant == "dagger_w025" else 1.0)
    assert full.online.intervene_after == 6 and other.online.intervene_after == (2 if variant == "dagger_i2" else 6)
    assert other.online.chunk_mixing is chunk_mixing  # dagger_v1 is per-step mixing as well
    assert other.online.dagger_p == full.online.dagger_p and other.online.steps == full.online.steps


@pytest.mark.parametrize(("flags", "expected", "accept_stop_m", "in_context"), [
    ([], True, 0.0, False),
    (["--no-chunk-mixing", "--accept-stop-m", "1.5", "--executed-in-context"], False, 1.5, True)])
def test_train_online_dagger_flags_reach_the_actors(flags, expected, accept_stop_m, in_context):
    args = build_parser().parse_args(["train", "--config", "c.yaml", "--online", "--store", "s", "--data", "d",
                                      *flags])
    process = online_actor_config(args, seed=3, has_model=True)
    assert process.chunk_mixing is expected and process.accept_stop_m == accept_stop_m
    dagger = _actor_loop_config(process, index=0).dagger(1)
    assert dagger.chunk_mixing is expected and dagger.accept_stop_m == accept_stop_m
    assert process.executed_in_context is dagger.executed_in_context is in_context


def test_non_bool_switches_are_clear_errors(tmp_path):
    values = yaml.safe_load(BENCHMARK.read_text())
    values["online"]["chunk_mixing"] = "sometimes"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(ValueError, match="online.chunk_mixing must be true or false, got 'sometimes'"):
        load_run_config(path)
    values["online"]["chunk_mixing"] = True
    for bad in (3.5, -1, "near"):
        values["online"]["accept_stop_m"] = bad
        path.write_text(yaml.safe_dump(values))
        with pytest.raises(ValueError, match=r"online.accept_stop_m must be a distance in \[0, 3.0\] m"):
            load_run_config(path)
    values["online"]["accept_stop_m"] = 2.0
    for bad in (0, -0.5, True, float("inf")):
        values["online"]["dagger_weight"] = bad
        path.write_text(yaml.safe_dump(values))
        with pytest.raises(ValueError, match="online.dagger_weight must be a finite number > 0"):
            load_run_config(path)
    values["online"]["dagger_weight"] = 1.0
    values["online"]["executed_in_context"] = "yes"
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(ValueError, match="online.executed_in_context must be true or false, got 'yes'"):
        load_run_config(path)
    values["online"]["executed_in_context"] = False
    with pytest.raises(ValueError, match="DaggerConfig.executed_in_context must be true or false"):
        DaggerConfig(executed_in_context=1).validate()
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


def test_expert_online_control_collects_expert_episodes_only(tmp_path):
    """The DAgger control row: the same online stage, but every actor episode is driven by the expert."""
    config = load_run_config(BENCHMARK, variant="expert_online")
    config.out_root = str(tmp_path)
    full = load_run_config(BENCHMARK)
    assert config.online.steps == full.online.steps and config.train == full.train
    loop = _actor_loop_config(Pipeline(config, Console(quiet=True)).actor_process_config())
    assert [loop.dagger(version).beta for version in (1, 4, 7)] == [1.0, 1.0, 1.0]
    assert full.online.dagger_p < 1.0 and loop.dagger(1).beta > _actor_loop_config(
        Pipeline(full, Console(quiet=True)).actor_process_config()).dagger(1).beta


def test_mini_variant_is_bc_with_the_mini_preset():
    config, full = load_run_config(BENCHMARK, variant="mini"), load_run_config(BENCHMARK)
    assert config.train["model_preset"] == "mini" != full.train["model_preset"]
    assert not config.online.enabled and config.eval.policies == ["trained"]
    assert {k: v for k, v in config.train.items() if k != "model_preset"} == {
        k: v for k, v in full.train.items() if k != "model_preset"}
