"""DaggerActor with its policy in an inference server (AgentServer) over real loopback sockets."""

from __future__ import annotations

from agent.serving.client import AgentClient
from agent.serving.engine import ScriptedEngine
from agent.serving.server import AgentServer, ServerConfig
from envs.episodes.generator import GeneratorConfig, generate_split
from rollout.actors import DaggerActor, DaggerConfig, make_tasks
from rollout.remote_agent import RemoteAgent


def test_remote_policy_drives_batched_and_sessions_are_released():
    episodes, _ = generate_split("val_unseen", 3, config=GeneratorConfig(min_geodesic_m=2.0, max_geodesic_m=4.0))
    engine = ScriptedEngine(pattern=(1, 2, 1, 3), actions_per_call=4)
    server = AgentServer(engine, ServerConfig(bind="tcp://127.0.0.1:*", max_sessions=4, max_batch=8,
                                              batch_wait_ms=50))
    endpoint = server.start()
    client = AgentClient(endpoint, timeout_s=30.0)
    try:
        agent = RemoteAgent(client, "actor-t")
        actor = DaggerActor(make_tasks(2, 32, 32, max_steps=80), agent,
                            DaggerConfig(p=0.0, iteration=1, intervene_after=6, seed=0))  # beta 0: policy drives
        trajectories = []
        stats = actor.run(episodes, trajectories.append)
        open_after = client.ping().extra["sessions"]
    finally:
        client.close()
        server.stop()
    assert stats.model_calls > 0 and stats.policy_steps > 0
    assert sum(engine.batch_sizes) == len(agent.batch_sizes)  # every request answered once
    assert max(engine.batch_sizes) == 2  # the two envs' pipelined requests meet in one engine call
    assert open_after == 0  # finished and discarded episodes closed their server sessions
    assert engine.open_sessions == 0
    for trajectory in trajectories:
        assert trajectory.source == "dagger" and trajectory.label_actions[-1] == 0


def test_batch_wait_joins_requests_of_separate_clients():
    import threading
    import time

    import numpy as np

    engine = ScriptedEngine()
    server = AgentServer(engine, ServerConfig(bind="tcp://127.0.0.1:*", max_batch=8, batch_wait_ms=300))
    endpoint = server.start()
    clients = [AgentClient(endpoint, timeout_s=10.0) for _ in range(2)]
    frame = np.zeros((16, 16, 3), dtype=np.uint8)
    try:
        for client in clients:
            client.reset("s", "go to the chair")

        def act(client, delay_s):
            time.sleep(delay_s)
            client.act("s", frame)

        threads = [threading.Thread(target=act, args=(client, 0.05 * i)) for i, client in enumerate(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for client in clients:
            client.close()
        server.stop()
    assert engine.batch_sizes == [2]  # 50 ms apart, one engine call


def test_negative_batch_wait_is_refused():
    import pytest

    with pytest.raises(ValueError, match="batch_wait_ms"):
        ServerConfig(batch_wait_ms=-1).validate()
