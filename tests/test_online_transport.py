"""Transport: trajectories over msgpack, sender checks (token, allowed ids, protocol, staleness, duplicates)."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
import zmq

from rollout.records import Trajectory
from rollout.transport import (
    EpisodeReceiver,
    EpisodeSender,
    ReceiverConfig,
    SenderConfig,
    WeightPublisher,
    WeightSubscriber,
    trajectory_from_wire,
    trajectory_to_wire,
)


def make_trajectory(steps: int = 6, version: int = 0, source: str = "dagger") -> Trajectory:
    rng = np.random.default_rng(steps)
    labels = np.array([1] * (steps - 1) + [0], dtype=np.int8)
    return Trajectory(
        episode={"episode_id": f"e{steps}", "scene_id": "procedural/house_000001"},
        instructions=("walk to the red chair",),
        rgb=rng.integers(0, 255, size=(steps, 16, 16, 3), dtype=np.uint8),
        label_actions=labels,
        depth=rng.random((steps, 16, 16, 1), dtype=np.float32),
        poses=rng.random((steps, 7)).astype(np.float32),
        executed_actions=np.where(labels == 0, 0, 2).astype(np.int8),
        policy_version=version,
        metrics={"SR": 1.0},
        source=source,
    )


def test_wire_round_trip_keeps_every_column():
    original = make_trajectory()
    data = msgpack.unpackb(msgpack.packb(trajectory_to_wire(original), use_bin_type=True), raw=False)
    back = trajectory_from_wire(data)
    assert back.rgb == original.rgb_jpeg()
    np.testing.assert_array_equal(back.label_actions, original.label_actions)
    np.testing.assert_array_equal(back.executed_actions, original.executed_actions)
    np.testing.assert_allclose(back.depth, original.depth, atol=1.0 / 65535)
    np.testing.assert_array_equal(back.poses, original.poses)
    assert (back.policy_version, back.source, back.metrics) == (0, "dagger", {"SR": 1.0})


def test_wire_rejects_a_trajectory_without_final_stop():
    data = trajectory_to_wire(make_trajectory())
    data["label_actions"] = np.ones(6, dtype=np.int8).tobytes()
    with pytest.raises(ValueError, match="STOP"):
        trajectory_from_wire(data)
    del data["rgb_jpeg"]
    with pytest.raises(ValueError, match="rgb_jpeg"):
        trajectory_from_wire(data)


@pytest.fixture
def receiver():
    newest = {"version": 5}
    config = ReceiverConfig("tcp://127.0.0.1:0", token="secret", allowed_senders=frozenset({"a", "b"}),
                            max_policy_lag=2)
    rec = EpisodeReceiver(config, newest_version=lambda: newest["version"])
    yield rec
    rec.close()


def _send(address: str, actor: str, token: str, trajectory: Trajectory) -> EpisodeSender:
    sender = EpisodeSender(SenderConfig(address, actor, token, send_timeout_ms=2000))
    assert sender.send(trajectory)
    return sender


def _drain(rec: EpisodeReceiver, expected_messages: int) -> list:
    got = []
    for _ in range(50):
        got += rec.poll(100)
        if rec.stats.accepted + sum(rec.stats.rejected.values()) >= expected_messages:
            break
    return got


def test_receiver_accepts_known_sender_and_rejects_the_rest(receiver, caplog):
    senders = [
        _send(receiver.address, "a", "secret", make_trajectory(version=4)),  # ok (lag 1)
        _send(receiver.address, "b", "wrong", make_trajectory(version=5)),  # wrong token
        _send(receiver.address, "mallory", "secret", make_trajectory(version=5)),  # not allowed
        _send(receiver.address, "b", "secret", make_trajectory(version=2)),  # stale: 5 - 2 > 2
        _send(receiver.address, "b", "secret", make_trajectory(version=1, source="expert")),  # expert: never stale
    ]
    got = _drain(receiver, 5)
    assert sorted((r.sender, r.trajectory.policy_version) for r in got) == [("a", 4), ("b", 1)]
    assert receiver.stats.rejected == {"unknown_sender": 2, "stale": 1}
    assert "unknown sender" in caplog.text and "behind the newest" in caplog.text
    for sender in senders:
        sender.close()


def test_receiver_rejects_duplicates_protocol_and_garbage(receiver):
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.connect(receiver.address)
    message = {"type": "episode", "protocol": 1, "sender": "a", "token": "secret", "incarnation": "x", "seq": 0,
               "policy_version": 5, "source": "dagger", "trajectory": trajectory_to_wire(make_trajectory())}
    push.send(msgpack.packb(message, use_bin_type=True))
    push.send(msgpack.packb(message, use_bin_type=True))  # same incarnation and seq
    push.send(msgpack.packb({**message, "protocol": 99, "seq": 1}, use_bin_type=True))
    push.send(b"\xc1not msgpack")
    broken = {**message, "seq": 2, "trajectory": {**message["trajectory"], "rgb_jpeg": []}}
    push.send(msgpack.packb(broken, use_bin_type=True))
    got = _drain(receiver, 5)
    push.close()
    assert len(got) == 1
    assert receiver.stats.rejected == {"duplicate": 1, "protocol": 1, "malformed": 1, "invalid": 1}


def test_send_times_out_when_no_learner_takes_episodes():
    # Backpressure: with no peer and a high-water mark of 1, send blocks and then reports failure.
    sender = EpisodeSender(SenderConfig("tcp://127.0.0.1:1", "a", send_hwm=1, send_timeout_ms=200))
    assert sender.send(make_trajectory()) is False
    sender.close()


def test_weight_announcements_newest_wins_and_stop():
    publisher = WeightPublisher("tcp://127.0.0.1:0")
    subscriber = WeightSubscriber(publisher.address)
    announcement = None
    for _ in range(50):  # PUB/SUB: the subscription needs a moment; the heartbeat repeats
        publisher.announce(3, "/w/v3", "abc")
        publisher.announce(4, "/w/v4", "def")
        announcement = subscriber.poll(100)
        if announcement is not None and announcement.version == 4:
            break
    assert announcement is not None and (announcement.version, announcement.path) == (4, "/w/v4")
    publisher.stop()
    assert subscriber.wait(5.0).stop
    publisher.close()
    subscriber.close()
