import numpy as np
import pytest

from envs.actions import Action
from envs.episodes.generator import (
    SPLIT_HOUSE_SEEDS,
    GeneratorConfig,
    generate_split,
    make_generation_backend,
)
from envs.scene.generator import parse_scene_id

CONFIG = GeneratorConfig(episodes_per_house=2)


@pytest.fixture(scope="module")
def backend():
    return make_generation_backend()


@pytest.fixture(scope="module")
def val_unseen(backend):
    return generate_split("val_unseen", 4, seed=3, config=CONFIG, backend=backend)


def test_house_ranges_are_disjoint():
    train = set(SPLIT_HOUSE_SEEDS["train"])
    assert SPLIT_HOUSE_SEEDS["val_seen"] == SPLIT_HOUSE_SEEDS["train"]
    assert not train & set(SPLIT_HOUSE_SEEDS["val_unseen"])
    assert not train & set(SPLIT_HOUSE_SEEDS["test"])
    assert not set(SPLIT_HOUSE_SEEDS["val_unseen"]) & set(SPLIT_HOUSE_SEEDS["test"])


def test_val_unseen_uses_unseen_houses_and_val_seen_train_houses(backend, val_unseen):
    episodes, _ = val_unseen
    assert all(parse_scene_id(e.scene_id) in SPLIT_HOUSE_SEEDS["val_unseen"] for e in episodes)
    train, _ = generate_split("train", 4, seed=3, config=CONFIG, backend=backend)
    seen, _ = generate_split("val_seen", 2, seed=3, config=CONFIG, backend=backend)
    assert {e.scene_id for e in seen} <= {e.scene_id for e in train}
    # Same house, different episodes.
    assert [e.start_position for e in seen] != [e.start_position for e in train[:2]]


def test_episodes_are_valid(backend, val_unseen):
    episodes, gt = val_unseen
    assert len(episodes) == 4 and [e.episode_id for e in episodes] == [1, 2, 3, 4]
    for episode in episodes:
        truth = gt[episode.key]
        info = episode.info
        assert CONFIG.min_geodesic_m <= info["geodesic_distance"] <= CONFIG.max_geodesic_m
        assert info["start_room"] != info["goal_room"]
        text = episode.instruction.instruction_text
        assert info["goal_object"] in text and info["goal_room"] in text
        assert truth.actions[-1] == Action.STOP and Action.STOP not in truth.actions[:-1]
        assert len(truth.locations) == len(truth.actions)
        np.testing.assert_allclose(truth.locations[0], episode.start_position)
        np.testing.assert_allclose(episode.reference_path[0], episode.start_position, atol=0.05)
        np.testing.assert_allclose(episode.reference_path[-1], episode.goals[0].position, atol=0.05)
        backend.reset_scene(episode.scene_id)
        assert backend.geodesic_distance(np.array(truth.locations[-1]), episode.goals[0].position) <= 0.5
        assert episode.goals[0].radius == 3.0


def test_reproducible_by_seed(backend, val_unseen):
    again = generate_split("val_unseen", 4, seed=3, config=CONFIG, backend=backend)
    assert again == val_unseen
    other, _ = generate_split("val_unseen", 4, seed=4, config=CONFIG, backend=backend)
    assert [e.start_position for e in other] != [e.start_position for e in val_unseen[0]]


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        generate_split("dev", 2)
    with pytest.raises(ValueError, match="min_geodesic_m"):
        generate_split("train", 2, config=GeneratorConfig(min_geodesic_m=5, max_geodesic_m=4))
