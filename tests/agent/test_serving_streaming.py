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


@pytest.mark.slow
def test_executed_actions_reach_the_agent_and_a_misfit_is_a_note_not_an_error():
    """DAgger through the server: `executed` replaces the session's previous answer in its context; one that
    does not fit that answer is dropped with a note, and the other session of the batch is untouched."""
    engine = streaming_engine.StreamingEngine.from_preset("tiny")
    rng = np.random.default_rng(1)
    frame = lambda: rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)  # noqa: E731
    with AgentServer(engine, ServerConfig(bind="tcp://127.0.0.1:*")) as server, \
            AgentClient(server.endpoint, timeout_s=120) as client:
        client.reset("a", "walk past the red sofa")
        client.reset("b", "turn left into the bedroom")
        first = {s: client.act(s, frame()).actions for s in ("a", "b")}
        executed = [2 if x != 2 else 3 for x in first["a"]]
        replies = client.act_many([("a", frame(), None, None, executed),
                                   ("b", frame(), None, None, [1] * (len(first["b"]) + 1))])
        assert all(reply.ok for reply in replies)
        by_name = {engine_id.split(":", 1)[1]: session for engine_id, session in engine.sessions.items()}
        session_a, session_b = by_name["a"], by_name["b"]
        answers_a = [seg.ids for seg in session_a.window if seg.visual is None]
        assert answers_a[0] == engine.agent.prompt.answer_ids(executed)
        assert any(note.startswith("executed ignored: ") for note in replies[1].notes), replies[1].notes
        answers_b = [seg.ids for seg in session_b.window if seg.visual is None]
        assert answers_b[0] == engine.agent.prompt.answer_ids(first["b"])
