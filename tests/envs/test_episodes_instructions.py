import math

import numpy as np
import pytest

from envs.geometry import quat_from_yaw
from envs.instructions import (
    instruction_for_path,
    resample_path,
    segment_path,
    simplify_path,
    turn_word,
)
from envs.scene.house import Furniture, House, LayoutGrid, Room


def two_room_house():
    grid = LayoutGrid(0.0, 0.0, 0.05, np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.int16),
                      np.zeros((2, 2), np.int16), np.zeros((2, 2), np.float32))
    rooms = [Room(0, "bedroom", 0.0, 0.0, 4.0, 4.0), Room(1, "kitchen", 4.1, 0.0, 8.0, 4.0)]
    furniture = [
        Furniture(0, "plant", "green", (0, 200, 0), 0, 2.5, 2.6, 3.0, 3.1, 1.1),  # beside the path in the bedroom
        Furniture(1, "sofa", "red", (200, 0, 0), 1, 6.4, 0.2, 7.6, 1.0, 0.85),  # the goal, in the kitchen
        Furniture(2, "plant", "blue", (0, 0, 200), 1, 7.4, 3.4, 7.9, 3.9, 1.1),
    ]
    return House("procedural/house_000000", 0, rooms, [], furniture, grid)


# Start in the bedroom facing +X, walk east through the doorway, then turn north (-Z) to the sofa.
PATH = np.array([[1.0, 0.0, 2.0], [6.0, 0.0, 2.0], [6.0, 0.0, 0.4]])
FACING_EAST = quat_from_yaw(-math.pi / 2)


def test_turn_words_follow_habitat_yaw():
    assert turn_word(math.radians(90)) == "left"  # yaw increases to the left
    assert turn_word(math.radians(-90)) == "right"
    assert turn_word(math.radians(170)) == "around"
    assert turn_word(math.radians(10)) is None


def test_resample_and_simplify():
    samples, arc = resample_path(PATH)
    assert arc[-1] == pytest.approx(6.6) and np.allclose(np.diff(arc)[:-1], 0.25)
    corners = simplify_path(samples)
    np.testing.assert_allclose(samples[corners][:, [0, 2]], PATH[:, [0, 2]], atol=0.13)


def test_segmentation_finds_rooms_door_turn_and_landmark():
    house = two_room_house()
    seg = segment_path(house, PATH, FACING_EAST, house.furniture[1])
    assert seg.start_room == "bedroom" and seg.goal_room == "kitchen" and seg.goal_name == "red sofa"
    assert seg.start_turn is None  # already facing the first leg
    kinds = [(e.kind, e.detail) for e in seg.events]
    assert kinds == [("landmark", "green plant"), ("door", "kitchen"), ("turn", "left")]
    facing_west = segment_path(house, PATH, quat_from_yaw(math.pi / 2), house.furniture[1])
    assert facing_west.start_turn == "around"


def test_instruction_text_names_start_turn_and_goal():
    house = two_room_house()
    for seed in range(6):
        text = instruction_for_path(house, PATH, FACING_EAST, house.furniture[1], np.random.default_rng(seed))
        assert "bedroom" in text and "red sofa in the kitchen" in text
        assert "left" in text and "right" not in text
        assert text[0].isupper() and text.endswith(".")
    phrasings = {instruction_for_path(house, PATH, FACING_EAST, house.furniture[1], np.random.default_rng(s))
                 for s in range(12)}
    assert len(phrasings) >= 4  # phrasing varies with the seed
