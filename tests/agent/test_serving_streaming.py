"""The server in front of the real streaming agent (tiny preset, random weights) on the CPU."""

import numpy as np
import pytest

from agent.serving.client import AgentClient
from agent.serving.server import AgentServer, ServerConfig

streaming_engine = pytest.importorskip("agent.streaming.engine", reason="the streaming agent is not built yet")


@pytest.mark.parametrize("device, dtype", [
    pytest.param("cpu", "fp32", marks=pytest.mark.slow),
    pytest.param("cuda", "bf16", marks=pytest.mark.gpu),
])
def test_two_sessions_through_the_server_with_the_tiny_streaming_agent(device, dtype):
    engine = streaming_engine.StreamingEngine.from_preset("tiny", device=device, dtype=dtype)
    rng = np.random.default_rng(0)
    with AgentServer(engine, ServerConfig(bind="tcp://127.0.0.1:*")) as server, \
            AgentClient(server.endpoint, timeout_s=120) as first, AgentClient(server.endpoint, timeout_s=120) as second:
        first.reset("ep", "walk past the red sofa and stop at the kitchen door")
        second.reset("ep", "turn left and go into the bedroom")
        size = 96
        depth = rng.random((size, size, 1), dtype=np.float32)
        pose = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
        for _ in range(2):
            for client in (first, second):
                reply = client.act("ep", rng.integers(0, 256, (size, size, 3), dtype=np.uint8), depth=depth, pose=pose)
                assert 1 <= len(reply.actions) <= 4 and all(a in (0, 1, 2, 3) for a in reply.actions)
                assert reply.timings_ms["model"] > 0 and "prefill" in reply.timings_ms
        other = first.act("ep", rng.integers(0, 256, (size + 20, size + 10, 3), dtype=np.uint8))
        assert any("resized" in note for note in other.notes), other.notes
    assert not engine.sessions  # closed on shutdown
