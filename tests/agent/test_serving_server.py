"""Agent server over real sockets on 127.0.0.1 (random ports): sessions, errors, batching, shutdown."""

import threading
import time

import msgpack
import numpy as np
import pytest
import zmq

from agent.serving.client import (
    AgentClient,
    BadMessage,
    ClientTimeout,
    MissingInstruction,
    RequestTimeout,
    TooManySessions,
    UnknownSession,
    WrongDtype,
    WrongShape,
    WrongSize,
)
from agent.serving.engine import ActResult, OpenInfo, SessionEngine
from agent.serving.protocol import encode_frame, encode_request
from agent.serving.server import AgentServer, ServerConfig, is_local_endpoint

PATTERN = (1, 1, 2, 0)


class RecordingEngine:
    """Deterministic: session k's call n returns PATTERN rotated by n. `gate` holds act() when cleared."""

    model_version = 4
    max_sessions = 100

    def __init__(self):
        self.calls = {}
        self.batches = []
        self.frames = []
        self.closed = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def open(self, session_id, instruction):
        self.calls[session_id] = 0
        return OpenInfo(warnings=["instruction truncated"] if len(instruction) > 50 else [])

    def act(self, requests):
        self.entered.set()
        self.gate.wait(10)
        self.batches.append([r.session_id for r in requests])
        results = []
        for request in requests:
            n = self.calls[request.session_id]
            self.calls[request.session_id] = n + 1
            self.frames.append(request.rgb.copy())
            results.append(ActResult(actions=[PATTERN[(n + i) % 4] for i in range(4)], notes=[f"call {n}"]))
        return results

    def close(self, session_id):
        self.closed.append(session_id)
        del self.calls[session_id]


def expected(n):
    return [PATTERN[(n + i) % 4] for i in range(4)]


def _rgb(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (16, 20, 3), dtype=np.uint8)


@pytest.fixture
def engine():
    return RecordingEngine()


@pytest.fixture
def serve(engine):
    servers, clients = [], []

    def start(**config):
        server = AgentServer(engine, ServerConfig(bind="tcp://127.0.0.1:*", **config))
        servers.append(server)
        endpoint = server.start()

        def client(**kwargs):
            clients.append(AgentClient(endpoint, timeout_s=kwargs.pop("timeout_s", 5.0), **kwargs))
            return clients[-1]
        return server, client

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.stop()


def test_engine_protocol_is_satisfied_by_the_test_engine(engine):
    assert isinstance(engine, SessionEngine)


def test_session_acts_with_raw_and_jpeg_frames(engine, serve):
    _, client = serve()
    c = client()
    assert c.reset("ep", "go to the kitchen").ok
    raw = c.act("ep", _rgb(), jpeg=False)
    assert raw.actions == expected(0) and raw.model_version == 4 and raw.notes == ["call 0"]
    assert {"decode", "queue", "model", "server"} <= set(raw.timings_ms)
    np.testing.assert_array_equal(engine.frames[0], _rgb())
    smooth = np.tile(np.linspace(0, 255, 20, dtype=np.uint8)[None, :, None], (16, 1, 3))
    assert c.act("ep", smooth, jpeg=True).actions == expected(1)
    assert engine.frames[1].shape == (16, 20, 3) and np.abs(engine.frames[1].astype(int) - smooth).mean() < 4


def test_reset_warnings_come_back_as_notes(serve):
    _, client = serve()
    assert client().reset("ep", "walk " * 20).notes == ["instruction truncated"]


def test_sessions_are_per_client_identity(serve):
    _, client = serve()
    a, b = client(), client()
    a.reset("ep", "go"), b.reset("ep", "go")
    a.act("ep", _rgb()), a.act("ep", _rgb())
    assert b.act("ep", _rgb()).actions == expected(0)  # b's "ep" is its own session
    with pytest.raises(UnknownSession):
        client().act("ep", _rgb())


BAD_REQUESTS = [
    (b"\x93garbage", BadMessage),
    (encode_request("act", "ep", 1, frame={**encode_frame(_rgb(), jpeg=False), "shape": [16, 20, 4]}), WrongShape),
    (encode_request("act", "ep", 2, frame={**encode_frame(_rgb(), jpeg=False), "dtype": "int16"}), WrongDtype),
    (encode_request("act", "ep", 3, frame={**encode_frame(_rgb(), jpeg=False), "data": b"\0" * 17}), WrongSize),
    (encode_request("act", "nobody", 4, frame=encode_frame(_rgb(), jpeg=False)), UnknownSession),
    (encode_request("reset", "ep2", 5), MissingInstruction),
]


def test_every_wire_error_is_typed_and_leaves_other_sessions_working(serve):
    _, client = serve()
    good, bad = client(), client()
    good.reset("ep", "go")
    bad.reset("ep", "go")
    for n, (payload, error_type) in enumerate(BAD_REQUESTS):
        with pytest.raises(error_type) as info:
            bad.send_raw(payload, request_id=None)
        assert info.value.reply.error_message
        # The well-behaved session continues exactly where it was; so does the misbehaving client's.
        assert good.act("ep", _rgb()).actions == expected(n)
    assert bad.act("ep", _rgb()).actions == expected(0)


def test_req_socket_clients_work_too(serve):
    server, _ = serve()
    context = zmq.Context.instance()
    req = context.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(server.endpoint)
    req.send(encode_request("ping", "", 1))
    assert req.poll(5000)
    assert msgpack.unpackb(req.recv())["ok"] is True
    req.close()


def test_max_sessions_refuses_a_new_session_but_not_a_reset_of_an_open_one(serve):
    _, client = serve(max_sessions=2)
    c = client()
    c.reset("a", "go"), c.reset("b", "go")
    with pytest.raises(TooManySessions):
        c.reset("c", "go")
    assert c.act("a", _rgb()).actions == expected(0)  # the open sessions are untouched
    assert c.reset("a", "go again").ok  # re-opening an existing session is not a new one
    c.close_session("b")
    assert c.reset("c", "go").ok


def test_idle_sessions_are_evicted_and_their_engine_state_closed(engine, serve):
    _, client = serve(idle_timeout_s=0.3)
    c = client()
    c.reset("idle", "go"), c.reset("busy", "go")
    deadline = time.monotonic() + 1.2
    while time.monotonic() < deadline:
        c.act("busy", _rgb())
        time.sleep(0.05)
    with pytest.raises(UnknownSession, match="idle"):
        c.act("idle", _rgb())
    assert len(engine.closed) == 1 and engine.closed[0].endswith(":idle")
    assert c.act("busy", _rgb()).ok


def test_request_waiting_past_the_deadline_gets_timeout_and_the_session_recovers(engine, serve):
    _, client = serve(request_timeout_s=0.3)
    slow, other = client(), client()
    slow.reset("ep", "go"), other.reset("ep", "go")
    engine.gate.clear()
    engine.entered.clear()
    done = {}
    thread = threading.Thread(target=lambda: done.update(reply=slow.act("ep", _rgb())))
    thread.start()
    assert engine.entered.wait(5)
    started = time.monotonic()
    with pytest.raises(RequestTimeout):
        other.act("ep", _rgb())  # waits behind the held batch
    assert 0.25 < time.monotonic() - started < 2.0
    engine.gate.set()
    thread.join(5)
    assert done["reply"].actions == expected(0)
    assert other.act("ep", _rgb()).actions == expected(0)  # the timed-out frame never reached the engine


def test_requests_waiting_together_run_as_one_batch(engine, serve):
    _, client = serve()
    first, *others = [client() for _ in range(4)]
    for c in (first, *others):
        c.reset("ep", "go")
    engine.gate.clear()
    engine.entered.clear()
    replies = {}
    threads = [threading.Thread(target=lambda c=c, i=i: replies.update({i: c.act("ep", _rgb())}))
               for i, c in enumerate((first, *others))]
    threads[0].start()
    assert engine.entered.wait(5)
    for thread in threads[1:]:
        thread.start()
    time.sleep(0.3)  # the other three queue up behind the held call
    engine.gate.set()
    for thread in threads:
        thread.join(5)
    assert [len(b) for b in engine.batches] == [1, 3]
    assert replies[1].extra["batch_size"] == 3
    assert all(reply.actions == expected(0) for reply in replies.values())


def test_graceful_stop_answers_in_flight_requests_then_closes(engine, serve):
    server, client = serve()
    c = client()
    c.reset("ep", "go")
    engine.gate.clear()
    engine.entered.clear()
    reply = {}
    thread = threading.Thread(target=lambda: reply.update(r=c.act("ep", _rgb())))
    thread.start()
    assert engine.entered.wait(5)
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    time.sleep(0.1)
    engine.gate.set()
    stopper.join(5)
    thread.join(5)
    assert reply["r"].actions == expected(0)
    assert server.wait(0) and len(engine.closed) == 1  # sessions closed on shutdown
    with pytest.raises(ClientTimeout):
        c.ping(timeout_s=0.3)


def test_loopback_bind_by_default_and_remote_bind_needs_the_flag(engine):
    assert ServerConfig().bind.startswith("tcp://127.0.0.1:")
    for endpoint in ("tcp://127.0.0.1:5555", "tcp://localhost:1", "tcp://[::1]:1", "ipc:///tmp/x"):
        assert is_local_endpoint(endpoint)
    for endpoint in ("tcp://*:5555", "tcp://0.0.0.0:5555", "tcp://10.1.2.3:5555", "tcp://eth0:5555"):
        assert not is_local_endpoint(endpoint)
        with pytest.raises(ValueError, match="allow-remote"):
            AgentServer(engine, ServerConfig(bind=endpoint))
    ServerConfig(bind="tcp://0.0.0.0:5555", allow_remote=True).validate()


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="max_sessions"):
        ServerConfig(max_sessions=0).validate()
    with pytest.raises(ValueError, match="request_timeout_s"):
        ServerConfig(request_timeout_s=0).validate()


class FailingEngine(RecordingEngine):
    def act(self, requests):
        if any(r.rgb[0, 0, 0] == 0 for r in requests):
            raise RuntimeError("boom")
        return super().act(requests)


def test_engine_failure_is_an_internal_error_and_the_session_survives():
    from agent.serving.client import InternalServerError

    with AgentServer(FailingEngine(), ServerConfig(bind="tcp://127.0.0.1:*")) as server, \
            AgentClient(server.endpoint, timeout_s=5) as c:
        c.reset("ep", "go")
        with pytest.raises(InternalServerError, match="boom"):
            c.act("ep", np.zeros((8, 8, 3), np.uint8))
        assert c.act("ep", np.full((8, 8, 3), 9, np.uint8)).actions == expected(0)


def test_curve_keys_let_authorized_clients_in_and_keep_others_out(tmp_path, engine):
    from agent.serving.auth import CurveCredentials, generate_keys

    generate_keys(tmp_path / "keys", clients=("alice",))
    generate_keys(tmp_path / "other", clients=("mallory",))
    with pytest.raises(ValueError, match="already exists"):
        generate_keys(tmp_path / "keys", clients=("alice",))
    config = ServerConfig(bind="tcp://127.0.0.1:*", curve_keys_dir=tmp_path / "keys")
    with AgentServer(engine, config) as server:
        with AgentClient(server.endpoint, timeout_s=5, curve=CurveCredentials.from_dir(tmp_path / "keys", "alice")) as c:
            c.reset("ep", "go")
            assert c.act("ep", _rgb()).actions == expected(0)
        with AgentClient(server.endpoint, timeout_s=0.5) as plain, pytest.raises(ClientTimeout):
            plain.ping()
        stranger = CurveCredentials.from_dir(tmp_path / "other", "mallory")
        impostor = CurveCredentials(CurveCredentials.from_dir(tmp_path / "keys", "alice").server_public,
                                    stranger.client_public, stranger.client_secret)
        with AgentClient(server.endpoint, timeout_s=0.5, curve=impostor) as c, pytest.raises(ClientTimeout):
            c.ping()


def test_pipelined_requests_of_one_session_keep_their_order(engine, serve):
    server, _ = serve()
    context = zmq.Context.instance()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(server.endpoint)
    frame = encode_frame(_rgb(), jpeg=False)
    dealer.send(encode_request("reset", "ep", 0, instruction="go"))
    for n in range(1, 4):
        dealer.send(encode_request("act", "ep", n, frame=frame))
    dealer.send(encode_request("close", "ep", 4))
    replies = []
    for _ in range(5):
        assert dealer.poll(5000)
        replies.append(msgpack.unpackb(dealer.recv()))
    dealer.close()
    assert [r["request_id"] for r in replies] == [0, 1, 2, 3, 4] and all(r["ok"] for r in replies)
    assert [r["actions"] for r in replies[1:4]] == [expected(0), expected(1), expected(2)]
    assert all(len(batch) == 1 for batch in engine.batches)  # one session never batches with itself


def test_binding_a_port_in_use_is_a_clear_error(engine, serve):
    server, _ = serve()
    with pytest.raises(ValueError, match="cannot bind"):
        AgentServer(engine, ServerConfig(bind=server.endpoint)).start()
