"""SensorConfig: the one camera config (width, height, hfov_deg) of actor, eval, run and habitat configs."""

from __future__ import annotations

import math

import pytest

from envs.embedded import EmbeddedConfig
from envs.sensors import SensorConfig


@pytest.mark.parametrize(("field", "value"), [("width", 0), ("height", -3), ("width", 1.5), ("height", True),
                                              ("hfov_deg", 0.0), ("hfov_deg", 180.0), ("hfov_deg", math.nan),
                                              ("hfov_deg", "90")])
def test_validate_names_the_bad_field(field, value):
    with pytest.raises(ValueError, match=rf"^cam\.{field} must be"):
        SensorConfig(**{field: value}).validate(where="cam")


def test_validate_accepts_good_values_and_a_caller_can_demand_larger_frames():
    config = SensorConfig(width=64, height=48, hfov_deg=79)
    assert config.validate() is config  # an int field of view (as YAML writes 90) is fine
    assert SensorConfig(1, 1, 179.9).validate() == SensorConfig(1, 1, 179.9)
    with pytest.raises(ValueError, match=r"sensors\.height must be an integer >= 8 px, got 4"):
        SensorConfig(64, 4).validate(min_side=8)


def test_as_kwargs_fills_the_lower_level_camera_fields():
    embedded = EmbeddedConfig(**SensorConfig(64, 48, 79.0).as_kwargs(), depth=False)
    assert (embedded.width, embedded.height, embedded.hfov_deg, embedded.depth) == (64, 48, 79.0, False)
