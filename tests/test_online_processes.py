"""Reliability with real processes: the learner's transport + store, actor processes over loopback.

kill -9 an actor mid-episode: the learner side keeps ingesting, a restarted actor rejoins, every
committed episode is complete and verifies; an actor with the wrong token is rejected and logged.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from envs.episodes.generator import GeneratorConfig, generate_split
from envs.episodes.io import save_split
from training.config import TrainConfig
from training.online import OnlineConfig, OnlineLearner

pytestmark = pytest.mark.slow


def spawn_actor(addresses: dict, data_dir, actor_id: str, token: str, log_path) -> subprocess.Popen:
    command = [sys.executable, "-m", "streamvln.commands.actor", "--learner", addresses["episodes"],
               "--weights", addresses["weights"], "--data", str(data_dir), "--actor-id", actor_id,
               "--envs", "1", "--width", "32", "--height", "32", "--max-steps", "200"]
    env = {**os.environ, "STREAMVLN_TOKEN": token}
    return subprocess.Popen(command, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, env=env)


def wait_until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_actor_kill_restart_and_unknown_sender(tmp_path):
    episodes, gt = generate_split("train", 3, config=GeneratorConfig(min_geodesic_m=2.0, max_geodesic_m=4.0))
    save_split(tmp_path / "data", "train", episodes, gt)
    online = OnlineConfig(store=str(tmp_path / "store"), episodes_address="tcp://127.0.0.1:0",
                          weights_address="tcp://127.0.0.1:0", token="run-secret")
    learner = OnlineLearner(TrainConfig(out_dir=str(tmp_path / "learner")), online)
    addresses = learner.start_transport()
    first = spawn_actor(addresses, tmp_path / "data", "actor-0", "run-secret", tmp_path / "a0.log")
    intruder = spawn_actor(addresses, tmp_path / "data", "actor-x", "wrong", tmp_path / "ax.log")
    try:
        wait_until(lambda: learner.shared.ingested >= 2, 120, "the first episodes")
        time.sleep(0.3)  # somewhere inside the next episode
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        after_kill = learner.shared.ingested
        wait_until(lambda: learner.thread.receiver_stats.rejected["unknown_sender"] >= 1, 60, "a rejection")
        restarted = spawn_actor(addresses, tmp_path / "data", "actor-0", "run-secret", tmp_path / "a0b.log")
        wait_until(lambda: learner.shared.ingested >= after_kill + 2, 120, "the restarted actor's episodes")
    finally:
        learner.stop()  # announces stop: actors exit on their own
        codes = []
        for process in (intruder, locals().get("restarted")):
            if process is not None:
                try:
                    codes.append(process.wait(timeout=30))
                except subprocess.TimeoutExpired:
                    process.kill()
                    codes.append(None)
    assert codes == [0, 0]
    report = learner.store.verify()
    assert not report.corrupt and len(report.ok) == learner.shared.ingested == len(learner.store)
    stats = learner.thread.receiver_stats
    assert stats.per_sender["actor-x"] == 0 and stats.per_sender["actor-0"] == learner.shared.ingested
    for trajectory in learner.store:
        assert trajectory.label_actions[-1] == 0 and trajectory.source == "expert"
    assert "sent" in (tmp_path / "a0b.log").read_text()


LEARNER_SCRIPT = """
import sys, time
from training.config import TrainConfig
from training.online import OnlineConfig, OnlineLearner
store, episodes, weights, out = sys.argv[1:5]
learner = OnlineLearner(TrainConfig(out_dir=out), OnlineConfig(store=store, episodes_address=episodes,
                        weights_address=weights, token="run-secret"))
learner.start_transport()
print("ready", flush=True)
while True:
    time.sleep(0.2)
    print("ingested", learner.shared.ingested, flush=True)
"""


def test_learner_kill_and_restart_actor_reconnects(tmp_path):
    from rollout.store import EpisodeStore
    from training.distributed import free_port

    episodes, gt = generate_split("train", 2, config=GeneratorConfig(min_geodesic_m=2.0, max_geodesic_m=4.0))
    save_split(tmp_path / "data", "train", episodes, gt)
    addresses = {"episodes": f"tcp://127.0.0.1:{free_port()}", "weights": f"tcp://127.0.0.1:{free_port()}"}
    store = EpisodeStore(tmp_path / "store")

    def start_learner() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", LEARNER_SCRIPT, str(tmp_path / "store"), addresses["episodes"],
                                 addresses["weights"], str(tmp_path / "learner")], stdout=subprocess.DEVNULL)

    learner = start_learner()
    actor = spawn_actor(addresses, tmp_path / "data", "actor-0", "run-secret", tmp_path / "actor.log")
    try:
        wait_until(lambda: len(store) >= 2, 120, "episodes before the learner dies")
        learner.send_signal(signal.SIGKILL)
        learner.wait(timeout=10)
        before = len(store)
        learner = start_learner()  # same addresses: the actor's sockets reconnect by themselves
        wait_until(lambda: len(store) >= before + 2, 120, "episodes after the learner restarted")
        assert actor.poll() is None  # the actor never died
    finally:
        for process in (actor, learner):
            process.kill()
            process.wait(timeout=10)
    report = store.verify()
    assert not report.corrupt and len(report.ok) == len(store)
