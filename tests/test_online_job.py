"""`streamvln train --online`: learner + actor processes on one machine, stopped cleanly, exit codes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.serving.auth import generate_keys
from envs.episodes.generator import GeneratorConfig, generate_split
from envs.episodes.io import save_split

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("online-data")
    episodes, gt = generate_split("train", 2, config=GeneratorConfig(min_geodesic_m=2.0, max_geodesic_m=3.5))
    save_split(folder, "train", episodes, gt)
    return folder


def train_online(tmp_path, data_dir, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "streamvln.cli", "train", "--online", "--config", "configs/train_tiny.yaml",
               "--out", str(tmp_path / "run"), "--store", str(tmp_path / "store"), "--data", str(data_dir),
               "--size", "32", "--actor-max-steps", "120", "--no-progress", *extra]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def summary_of(output: str) -> dict:
    return json.loads([line for line in output.splitlines() if line.startswith("{")][-1])


def test_online_training_end_to_end_reports_data_wait(tmp_path, data_dir):
    process = train_online(tmp_path, data_dir, "--steps", "2", "--actors", "1", "--publish-every", "1")
    output, _ = process.communicate(timeout=400)
    assert process.returncode == 0, output[-3000:]
    summary = summary_of(output)
    assert summary["actor_exit_codes"] == {"actor-0": 0} and summary["online"]["steps"] == 2
    wait = summary["online"]["data_wait"]
    assert 0.0 <= wait["data_wait_frac"] < 1.0 and wait["batches"] == 2 and wait["train_s"] > 0
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("data_wait_frac" in row and "loss" in row for row in logged)  # TensorBoard gets the same dict
    assert json.loads((tmp_path / "run" / "online_stats.json").read_text())["data_wait"] == wait


def test_sigterm_while_waiting_for_data_stops_learner_and_actors(tmp_path, data_dir):
    process = train_online(tmp_path, data_dir, "--actors", "2", "--min-episodes", "100000")
    from rollout.store import EpisodeStore

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(EpisodeStore(tmp_path / "store")) < 2:
        assert process.poll() is None, process.stdout.read()[-3000:]
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
    summary = summary_of(output)
    assert summary["actor_exit_codes"] == {"actor-0": 0, "actor-1": 0}
    assert summary["stopped_by_signal"] == signal.SIGTERM and summary["online"] is None


def test_failing_actors_are_restarted_then_the_job_fails(tmp_path, data_dir):
    generate_keys(tmp_path / "keys", clients=("someone-else",))  # no key pair for actor-0: it cannot start
    process = train_online(tmp_path, data_dir, "--actors", "1", "--max-restarts", "1",
                           "--curve-keys", str(tmp_path / "keys"))
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 1, output[-3000:]
    summary = summary_of(output)
    assert summary["actor_failures"] == ["actor-0 exited with 1 (restarted)", "actor-0 exited with 1"]
    assert summary["actor_exit_codes"]["actor-0"] == 1 and "stopped" in summary["error"]
