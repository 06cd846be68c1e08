import gzip
import json

import pytest

from envs.episodes import Episode, Goal, GroundTruth, Instruction, load_split, save_split, split_paths


def make_episode(episode_id=1, scene="procedural/house_000001"):
    return Episode(
        episode_id=episode_id,
        trajectory_id=episode_id * 10,
        scene_id=scene,
        start_position=[1.0, 0.0, 2.0],
        start_rotation=[0.0, 0.7071067811865476, 0.0, 0.7071067811865476],
        goals=[Goal(position=[4.0, 0.0, -3.5], radius=3.0)],
        reference_path=[[1.0, 0.0, 2.0], [2.5, 0.0, 0.0], [4.0, 0.0, -3.5]],
        instruction=Instruction("Exit the bedroom and stop next to the red sofa.", [3, 4, 5]),
        info={"geodesic_distance": 6.3, "goal_object": "red sofa"},
    )


def make_gt():
    return GroundTruth(locations=[[1.0, 0.0, 2.0], [1.0, 0.0, 1.75]], actions=[1, 0])


def test_round_trip_with_gt(tmp_path):
    episodes = [make_episode(1), make_episode(2, "procedural/house_000002")]
    episodes[1].instruction = Instruction("Walk to the kitchen.")  # no tokens
    gt = {"1": make_gt(), "2": make_gt()}
    episodes_path, gt_path = save_split(tmp_path, "val_unseen", episodes, gt)
    assert episodes_path.name == "val_unseen.json.gz" and gt_path.name == "val_unseen_gt.json.gz"
    with gzip.open(episodes_path, "rt") as handle:
        raw = json.load(handle)
    assert set(raw["episodes"][0]) == {"episode_id", "trajectory_id", "scene_id", "start_position", "start_rotation",
                                       "goals", "reference_path", "instruction", "info"}
    assert "instruction_tokens" not in raw["episodes"][1]["instruction"]
    loaded, loaded_gt = load_split(tmp_path, "val_unseen")
    assert loaded == episodes
    assert loaded_gt == gt


def test_missing_gt_file_gives_empty_gt(tmp_path):
    save_split(tmp_path, "test", [make_episode()])
    episodes, gt = load_split(tmp_path, "test")
    assert gt == {} and len(episodes) == 1


def test_missing_split_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="val_seen"):
        load_split(tmp_path, "val_seen")


def _write_raw(tmp_path, episodes):
    path, _ = split_paths(tmp_path, "bad")
    with gzip.open(path, "wt") as handle:
        json.dump({"episodes": episodes}, handle)
    return path


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda e: e.pop("goals"), "goals"),
        (lambda e: e.__setitem__("start_position", [1.0, "x", 2.0]), "start_position"),
        (lambda e: e.__setitem__("start_rotation", [0, 0, 1]), "start_rotation"),
        (lambda e: e["instruction"].pop("instruction_text"), "instruction.instruction_text"),
        (lambda e: e["info"].pop("geodesic_distance"), "info.geodesic_distance"),
        (lambda e: e["goals"][0].__setitem__("position", None), "goals[0].position"),
        (lambda e: e["reference_path"].append([1, 2]), "reference_path[3]"),
    ],
)
def test_malformed_episode_names_file_episode_and_field(tmp_path, mutate, field):
    from envs.episodes.io import episode_to_json

    good = episode_to_json(make_episode(7))
    bad = episode_to_json(make_episode(8))
    mutate(bad)
    path = _write_raw(tmp_path, [good, bad])
    with pytest.raises(ValueError) as info:
        load_split(tmp_path, "bad")
    message = str(info.value)
    assert str(path) in message and "episode 8" in message and "index 1" in message
    assert f"'{field}'" in message


def test_episode_without_id_is_named_by_index(tmp_path):
    from envs.episodes.io import episode_to_json

    raw = episode_to_json(make_episode(3))
    raw.pop("episode_id")
    _write_raw(tmp_path, [raw])
    with pytest.raises(ValueError, match=r"episode at index 0: field 'episode_id' is missing"):
        load_split(tmp_path, "bad")


def test_malformed_gt_names_episode(tmp_path):
    save_split(tmp_path, "val", [make_episode(5)], {"5": make_gt()})
    _, gt_path = split_paths(tmp_path, "val")
    with gzip.open(gt_path, "wt") as handle:
        json.dump({"5": {"locations": [[0, 0, 0]], "actions": [1, 9]}}, handle)
    with pytest.raises(ValueError, match=r"gt of episode '5': field 'actions'"):
        load_split(tmp_path, "val")


def test_not_gzip_is_a_clear_error(tmp_path):
    path, _ = split_paths(tmp_path, "junk")
    path.write_text("not gzip")
    with pytest.raises(ValueError, match="junk.json.gz: not a valid gzip"):
        load_split(tmp_path, "junk")


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    save_split(tmp_path, "val", [make_episode(1)], {"1": make_gt()})
    broken = make_episode(2)
    broken.info["geodesic_distance"] = float("nan")  # JSON cannot hold NaN: serialisation fails
    with pytest.raises(ValueError):
        save_split(tmp_path, "val", [broken], {"2": make_gt()})
    episodes, gt = load_split(tmp_path, "val")
    assert [e.episode_id for e in episodes] == [1] and list(gt) == ["1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["val.json.gz", "val_gt.json.gz"]  # no temp files


def test_atomic_write_cleans_temp_file_when_write_fails(tmp_path, monkeypatch):
    import os

    from envs.episodes import io

    save_split(tmp_path, "val", [make_episode(1)])

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        io.save_split(tmp_path, "val", [make_episode(2)])
    monkeypatch.undo()
    assert [e.episode_id for e in load_split(tmp_path, "val")[0]] == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["val.json.gz"]


def test_duplicate_ids_rejected(tmp_path):
    with pytest.raises(ValueError, match="episode id 1 appears more than once"):
        save_split(tmp_path, "val", [make_episode(1), make_episode(1)])
