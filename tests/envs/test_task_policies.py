import gzip
import json

import pytest

from envs.actions import Action
from envs.evaluation import evaluate
from envs.plane_backend import PlaneBackend, plane_episodes
from envs.policies import ForwardPolicy, RandomPolicy, ReplayPolicy, make_policy
from envs.task import TaskConfig, VLNTask


def test_make_policy_specs(tmp_path):
    assert make_policy("expert").name == "expert"
    assert isinstance(make_policy("random", seed=1), RandomPolicy)
    assert isinstance(make_policy("forward"), ForwardPolicy)
    with pytest.raises(ValueError, match="replay:FILE"):
        make_policy("replay")
    with pytest.raises(ValueError, match="unknown policy 'checkpoint:x'"):
        make_policy("checkpoint:x")


def test_random_is_seeded():
    a, b = RandomPolicy(7), RandomPolicy(7)
    assert [a.act({}) for _ in range(20)] == [b.act({}) for _ in range(20)]


def test_expert_forward_and_replay_on_plane(tmp_path):
    task = VLNTask(PlaneBackend(), TaskConfig(max_steps=40))
    episodes = plane_episodes(2)
    expert = evaluate(task, make_policy("expert"), episodes)
    assert expert.aggregate["SR"] == 1.0
    # Expert walks to within 0.25 m of the goal 4 m ahead: 15 forward steps then STOP.
    assert expert.runs[0].actions == [Action.MOVE_FORWARD] * 15 + [Action.STOP]
    forward = evaluate(task, ForwardPolicy(), episodes)
    assert forward.aggregate["SR"] == 0.0 and forward.aggregate["steps"] == 40
    path = tmp_path / "actions.json.gz"
    with gzip.open(path, "wt") as handle:
        json.dump({"0": {"locations": [[0, 0, 0]], "actions": [1, 1, 0]}, "1": [2, 0]}, handle)
    replay = evaluate(task, ReplayPolicy(path), episodes)
    assert [r.actions for r in replay.runs] == [[1, 1, 0], [2, 0]]
    with pytest.raises(ValueError, match="no actions for episode 5"):
        ReplayPolicy(path).reset(plane_episodes(6)[5], task)


def test_replay_bad_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"3": [1, 7]}))
    with pytest.raises(ValueError, match="episode '3': field 'actions'"):
        ReplayPolicy(path)
