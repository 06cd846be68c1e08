"""Expert collection and generated scene QA over the embedded simulator (small renders)."""

from __future__ import annotations

import numpy as np
import pytest

from envs.embedded import EmbeddedBackend, EmbeddedConfig
from envs.episodes.generator import generate_split
from envs.episodes.io import save_split
from envs.task import VLNTask
from rollout.collect import CollectConfig, collect_expert
from rollout.dialogue import IMAGE_PLACEHOLDER, TaskType
from rollout.qa.scene_qa import (
    SceneQAConfig,
    SceneQASource,
    count_in,
    generate_scene_qa,
    plural,
    save_scene_qa,
)
from rollout.samples import SampleConfig
from rollout.store import EpisodeStore
from rollout.view import StoreView, ViewConfig
from streamvln.cli import main


@pytest.fixture(scope="module")
def backend():
    return EmbeddedBackend(EmbeddedConfig(width=64, height=64))


def test_collect_records_expert_trajectories_that_end_with_stop(tmp_path, backend):
    episodes, gt = generate_split("train", 2, seed=1)
    store = EpisodeStore(tmp_path)
    names = collect_expert(VLNTask(backend), episodes, store, CollectConfig(max_episodes=2))
    assert len(names) == 2
    for trajectory, episode in zip(store, episodes):
        trajectory.validate()
        assert trajectory.label_actions[-1] == 0 and (trajectory.label_actions[:-1] != 0).all()
        # The expert replays the generator's gt actions exactly (same expert, same start).
        assert trajectory.label_actions.tolist() == gt[episode.key].actions
        assert trajectory.depth.shape == (trajectory.num_steps, 64, 64, 1)
        assert np.allclose(trajectory.poses[0, :3], episode.start_position, atol=1e-5)
        assert trajectory.instruction == episode.instruction.instruction_text
        assert trajectory.metrics["SR"] == 1.0
    view = StoreView(store, ViewConfig(sample=SampleConfig(num_frames=8)))
    view.refresh()
    sample = view.load(view.refs[-1])
    assert sample.images.shape[1:] == (64, 64, 3)


def test_collect_cli_fills_a_store_and_stats_verify_report_it(tmp_path, capsys):
    episodes, gt = generate_split("val_seen", 1, seed=2)
    save_split(tmp_path / "data", "val_seen", episodes, gt)
    out = tmp_path / "store"
    assert main(["collect", "--data", str(tmp_path / "data"), "--split", "val_seen", "--policy", "expert",
                 "--out", str(out), "--episodes", "1", "--width", "48", "--height", "48"]) == 0
    assert main(["store", "stats", str(out), "--json"]) == 0
    assert '"episodes": 1' in capsys.readouterr().out
    assert main(["store", "verify", str(out)]) == 0
    assert main(["store", "export-streamvln", str(out), str(tmp_path / "layout")]) == 0
    assert main(["store", "import-streamvln", str(tmp_path / "layout"), str(tmp_path / "copy")]) == 0
    assert [t.label_actions.tolist() for t in EpisodeStore(tmp_path / "copy")] == [gt[episodes[0].key].actions]
    path = next((out / "episodes").iterdir())
    path.write_bytes(path.read_bytes()[:-10])
    assert main(["store", "verify", str(out)]) == 1
    assert main(["store", "stats", str(tmp_path / "missing")]) == 2  # clear error, not a traceback


def test_scene_qa_answers_come_from_the_house(tmp_path, backend):
    records = generate_scene_qa(backend, ["procedural/house_000003"], 4, SceneQAConfig(frames_per_path=5, seed=1))
    assert records and {r.kind for r in records} <= {"room_of", "colour_of", "count_in", "left_of"}
    house = backend.house
    for record in records:
        assert len(record.frames_jpeg) == 5 and record.time_ids[0] == 0
        if record.kind == "room_of":
            piece = next(f for f in house.furniture if f"the {f.name} in" in record.question)
            assert record.answer == f"It is in the {house.rooms[piece.room].room_type}."
    save_scene_qa(records, tmp_path / "qa.msgpack")
    source = SceneQASource(tmp_path / "qa.msgpack", image_size=32)
    sample = source.load(0)
    assert sample.task_type is TaskType.SCENE_QA and sample.images.shape == (5, 32, 32, 3)
    assert sample.dialogue.turns[0].text.count(IMAGE_PLACEHOLDER) == 5
    assert sample.dialogue.turns[1].text == records[0].answer


def test_count_questions_can_answer_zero(backend):
    backend.reset_scene("procedural/house_000003")
    house = backend.house
    piece = house.furniture[0]
    absent = next(c for c in ("bathtub", "stove", "bed", "toilet") if not any(
        f.category == c and f.room == piece.room for f in house.furniture))
    qa = count_in(house, piece, absent)
    if qa is not None:  # None only when the room type repeats in the house
        assert qa == (f"How many {plural(absent)} are in the {house.rooms[piece.room].room_type}?", "There are zero.")
    assert plural("shelf") == "shelves" and plural("bench") == "benches"


def test_collect_scene_qa_cli_writes_a_readable_file(tmp_path, capsys):
    out = tmp_path / "qa.msgpack"
    assert main(["collect-scene-qa", "--out", str(out), "--scenes", "1", "--paths-per-scene", "2", "--size", "32"]) == 0
    source = SceneQASource(out)
    assert len(source) > 0 and source.load(0).images.shape[1:] == (32, 32, 3)
