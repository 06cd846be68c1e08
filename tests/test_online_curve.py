"""CURVE on the actor <-> learner sockets: only actors holding an authorized key deliver episodes."""

from __future__ import annotations

import time

import pytest
import zmq
from test_online_transport import make_trajectory

from agent.serving.auth import generate_keys
from rollout.curve import CurveClientKeys, CurveServer
from rollout.transport import (
    EpisodeReceiver,
    EpisodeSender,
    ReceiverConfig,
    SenderConfig,
    WeightPublisher,
    WeightSubscriber,
)


@pytest.fixture()
def curve_learner(tmp_path):
    generate_keys(tmp_path / "keys", clients=("actor-0",))
    generate_keys(tmp_path / "other", clients=("actor-0",))  # a well-formed key the learner never authorized
    context = zmq.Context()
    server = CurveServer(tmp_path / "keys", context)
    receiver = EpisodeReceiver(ReceiverConfig("tcp://127.0.0.1:0", token="t"), context=context, curve=server)
    publisher = WeightPublisher("tcp://127.0.0.1:0", context=context, curve=server)
    yield tmp_path, receiver, publisher
    receiver.close()
    publisher.close()
    server.stop()
    context.term()


def deliver(receiver, address: str, keys: CurveClientKeys | None, actor: str, wait_s: float = 2.0) -> int:
    sender = EpisodeSender(SenderConfig(address, actor, "t", send_timeout_ms=int(wait_s * 1000), curve=keys))
    try:
        sender.send(make_trajectory())
        deadline, got = time.monotonic() + wait_s, []
        while time.monotonic() < deadline and not got:
            got = receiver.poll(timeout_ms=100)
        return len(got)
    finally:
        sender.close()


def test_only_an_authorized_actor_delivers_episodes(curve_learner):
    tmp_path, receiver, _ = curve_learner
    assert deliver(receiver, receiver.address, None, "plain") == 0  # no CURVE at all
    assert deliver(receiver, receiver.address, CurveClientKeys(str(tmp_path / "other"), "actor-0"), "forger") == 0
    assert deliver(receiver, receiver.address, CurveClientKeys(str(tmp_path / "keys"), "actor-0"), "actor-0") == 1
    assert receiver.stats.per_sender == {"actor-0": 1}


def test_weights_reach_only_authorized_subscribers(curve_learner):
    tmp_path, _, publisher = curve_learner
    good = WeightSubscriber(publisher.address, curve=CurveClientKeys(str(tmp_path / "keys"), "actor-0"))
    bad = WeightSubscriber(publisher.address, curve=CurveClientKeys(str(tmp_path / "other"), "actor-0"))
    try:
        publisher.announce(3, "/weights/v3", "abc")
        deadline, seen = time.monotonic() + 3.0, None
        while time.monotonic() < deadline and seen is None:
            publisher.heartbeat()
            seen = good.poll(100)
        assert seen is not None and seen.version == 3
        publisher.heartbeat()
        assert bad.poll(300) is None
    finally:
        good.close()
        bad.close()


def test_missing_actor_key_is_a_clear_error(tmp_path):
    generate_keys(tmp_path / "keys", clients=("actor-0",))
    with pytest.raises(FileNotFoundError, match="actor-7"):
        CurveClientKeys(str(tmp_path / "keys"), "actor-7").credentials()
