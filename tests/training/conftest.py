"""Shared fixtures of the learner tests (helpers live in learner_fixtures.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from learner_fixtures import tiny_config  # noqa: E402


@pytest.fixture
def make_config(tmp_path):
    return lambda **overrides: tiny_config(tmp_path, **overrides)
