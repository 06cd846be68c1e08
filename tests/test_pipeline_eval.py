"""Evaluation runs: resumable per-episode JSONL, checkpoint policy spec errors, run config parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envs.episodes.generator import GeneratorConfig, generate_split
from envs.episodes.io import save_split
from streamvln.pipeline.config import load_run_config
from streamvln.pipeline.evaluation import EvalSettings, evaluate_policy, make_policy, read_results


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    episodes, gt = generate_split("val_unseen", 3, config=GeneratorConfig(min_geodesic_m=2.0, max_geodesic_m=4.0))
    save_split(directory, "val_unseen", episodes, gt)
    return directory


def test_eval_resumes_and_skips_finished_episodes(split_dir, tmp_path):
    results = tmp_path / "expert.jsonl"
    settings = EvalSettings(str(split_dir), max_steps=100, max_episodes=2)
    first = evaluate_policy("expert", settings, results)
    assert first["num_episodes"] == 2 and first["aggregate"]["SR"] == 1.0
    with open(results, "a") as handle:
        handle.write('{"episode_id": 3, "NE"')  # a run killed mid-line
    calls = []
    full = evaluate_policy("expert", EvalSettings(str(split_dir), max_steps=100), results,
                           progress=lambda done, total: calls.append((done, total)))
    assert full["num_episodes"] == 3
    assert calls == [(3, 3)]  # only the missing episode ran
    assert sorted(read_results(results)) == ["1", "2", "3"]
    rows = [json.loads(line) for line in results.read_text().splitlines()[:2]]
    assert all("actions" in row for row in rows)


def test_policy_specs():
    assert make_policy("forward").name == "forward"
    with pytest.raises(ValueError, match="checkpoint:PATH"):
        make_policy("checkpoint")
    with pytest.raises(FileNotFoundError):
        make_policy("checkpoint:/nonexistent/model")


def test_stop_bias_reaches_the_checkpoint_agent(split_dir):
    import argparse

    from streamvln.commands import eval as eval_command
    from streamvln.pipeline.evaluation import checkpoint_policy

    parser = argparse.ArgumentParser(prog="streamvln")
    eval_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval", "--data", str(split_dir), "--policy", "checkpoint:X", "--stop-bias", "1.5"])
    settings = eval_command.eval_settings(args)
    assert settings.stop_bias == 1.5
    shipped = Path(__file__).resolve().parents[1] / "checkpoints" / "benchmark_tiny_bc"
    if not (shipped / "model.safetensors").is_file():
        pytest.skip("the shipped checkpoint is not in this checkout")
    policy = make_policy(f"checkpoint:{shipped}", settings=settings)
    assert policy.agent.config.stop_bias == 1.5 and policy.agent.rules.stop_bias == 1.5
    with pytest.raises(ValueError, match="stop_bias"):
        checkpoint_policy(str(shipped), stop_bias=float("inf"))


def test_run_config_errors_name_the_key(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: x\nonline: {steps: 5, bogus: 1}\n")
    with pytest.raises(ValueError, match="bogus"):
        load_run_config(path)
    path.write_text("name: x\ndata: {min_geodesic_m: 5, max_geodesic_m: 4}\n")
    with pytest.raises(ValueError, match="min_geodesic_m"):
        load_run_config(path)
    path.write_text("name: x\neval: {workers: 2}\n")
    assert load_run_config(path, name="y").name == "y"
