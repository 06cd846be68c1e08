"""Issue 8's `train.data.consistent_history` and `train_all_turns` reach the learner's store samples (run
config -> TrainConfig -> training.data.build_sources -> StoreView): consistent_history false keeps a DAgger
window's full label history; train_all_turns false drops the segments after the first divergent turn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from rollout_fixtures import make_trajectory, step_of

from rollout.store import EpisodeStore
from streamvln.pipeline.config import load_run_config
from streamvln.pipeline.run import Pipeline
from training.data import build_sources

BENCHMARK = Path(__file__).resolve().parents[2] / "configs" / "benchmark.yaml"
DIVERGENT_STEP = 9  # in the window's third turn (steps 8..11)


def _dagger_trajectory():
    trajectory = make_trajectory(40, episode_id="dag", source="dagger", policy_version=1)
    executed = trajectory.label_actions.copy()
    executed[DIVERGENT_STEP] = 2 if executed[DIVERGENT_STEP] != 2 else 3
    trajectory.executed_actions = executed
    return trajectory


@pytest.mark.parametrize(("variant", "expected_turns"), [(None, 3), ("dagger_v1", 4)])
def test_run_config_consistent_history_reaches_the_store_samples(tmp_path, variant, expected_turns):
    config = load_run_config(BENCHMARK, variant=variant)
    config.out_root = str(tmp_path)
    pipeline = Pipeline(config, Console(quiet=True))
    trajectory = _dagger_trajectory()
    EpisodeStore(pipeline.store_dir).add(trajectory)
    train = pipeline.train_config(tmp_path / "offline", steps=1)
    assert train.data.consistent_history is (variant is None)
    nav = build_sources(train.data)["nav"]
    assert nav.view.config.sample.consistent_history is (variant is None)
    first = next(ref for ref in nav.view.refs if ref.start == 0)
    sample = nav.load(first)
    turns = sample.dialogue.turns
    assert len(turns) == expected_turns  # 16 frames, 4 steps a turn: the fix ends the window at turn 3
    fast = [step_of(frame) for frame in sample.images[sample.num_memory:]]
    assert fast == [0, 4, 8, 12][:expected_turns]
    for step, turn in zip(fast, turns):  # targets are the labels either way
        assert turn.actions == tuple(int(a) for a in trajectory.label_actions[step : step + 4])
    if variant == "dagger_v1":  # label history: turn 3 is history that differs from what was executed
        assert turns[2].actions != tuple(int(a) for a in trajectory.executed_actions[8:12])


@pytest.mark.parametrize(("variant", "segments"), [(None, [0, 1]), ("dagger_s4", [0])])
def test_run_config_train_all_turns_reaches_the_store_view(tmp_path, variant, segments):
    config = load_run_config(BENCHMARK, variant=variant)
    config.out_root = str(tmp_path)
    pipeline = Pipeline(config, Console(quiet=True))
    EpisodeStore(pipeline.store_dir).add(_dagger_trajectory())
    train = pipeline.train_config(tmp_path / "offline", steps=1)
    assert train.data.train_all_turns is (variant is None)
    nav = build_sources(train.data)["nav"]
    assert [ref.segment for ref in nav.view.refs if ref.start == 0] == segments
    last = nav.load([ref for ref in nav.view.refs if ref.start == 0][-1])
    assert [turn.trained for turn in last.dialogue.turns] == ([False] * 3 + [True] if variant is None else [True] * 3)


@pytest.mark.parametrize(("variant", "dagger_weight"), [(None, 1.0), ("dagger_w025", 0.25)])
def test_online_dagger_weight_reaches_the_store_view(tmp_path, variant, dagger_weight):
    """online.dagger_weight: the online learner draws a DAgger episode's windows at that rate relative to an
    expert episode's (the offline stage, expert data only, is untouched)."""
    config = load_run_config(BENCHMARK, variant=variant)
    config.out_root = str(tmp_path)
    pipeline = Pipeline(config, Console(quiet=True))
    store = EpisodeStore(pipeline.store_dir)
    expert = store.add(make_trajectory(40, episode_id="exp", source="expert"))
    store.add(make_trajectory(40, episode_id="dag", source="dagger", policy_version=1))  # no divergence
    online = pipeline.online_train_config()
    assert online.optim.lr == config.online.lr and online.model_path.endswith("offline/model")
    view = build_sources(online.data)["nav"].view
    draws = view.draw(np.random.default_rng(0), 40_000)
    from_expert = sum(ref.episode == expert for ref in draws)
    assert (len(draws) - from_expert) / from_expert == pytest.approx(dagger_weight, rel=0.05)
    offline = build_sources(pipeline.train_config(tmp_path / "offline", steps=1).data)["nav"].view
    assert offline.config.weighting == "uniform"
