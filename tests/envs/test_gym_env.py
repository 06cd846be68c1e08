import subprocess
import sys
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs.actions import Action
from envs.episodes import save_split
from envs.gym_env import ENV_ID, VLNEnv, make_vector_env
from envs.plane_backend import PlaneBackend, plane_episodes


def test_registered_and_env_checker(tmp_path):
    episodes = plane_episodes(3)
    save_split(tmp_path, "val_unseen", episodes)
    env = gymnasium.make(ENV_ID, data_dir=str(tmp_path), split="val_unseen", backend_factory=PlaneBackend)
    assert isinstance(env.unwrapped, VLNEnv)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_reset_options_and_episode_end():
    env = VLNEnv(episodes=plane_episodes(3), backend_factory=PlaneBackend, max_steps=50)
    obs, info = env.reset(seed=0, options={"episode_index": 2})
    assert info["episode_index"] == 2 and obs["instruction"] == "instruction 2"
    assert env.observation_space.contains(obs)
    total = 0.0
    for _ in range(8):
        obs, reward, terminated, truncated, info = env.step(Action.MOVE_FORWARD)
        total += reward
        assert not (terminated or truncated) and "metrics" not in info
    obs, reward, terminated, truncated, info = env.step(Action.STOP)
    assert terminated and not truncated and info["metrics"]["SR"] == 1.0
    assert total == pytest.approx(2.0)  # the distance gained
    with pytest.raises(ValueError, match="episode_index"):
        env.reset(options={"episode_index": 9})


def test_truncated_at_limit_and_cycling():
    env = VLNEnv(episodes=plane_episodes(2), backend_factory=PlaneBackend, max_steps=3)
    _, info = env.reset(seed=1)
    assert info["episode_index"] == 0
    results = [env.step(Action.TURN_LEFT) for _ in range(3)]
    assert [r[3] for r in results] == [False, False, True] and results[-1][4]["metrics"]["SR"] == 0.0
    assert env.reset()[1]["episode_index"] == 1
    assert env.reset()[1]["episode_index"] == 0


def test_vector_env_two_workers(tmp_path):
    save_split(tmp_path, "train", plane_episodes(4))
    vec = make_vector_env(2, str(tmp_path), "train", backend_factory=PlaneBackend, max_steps=20)
    try:
        obs, info = vec.reset(seed=5)
        assert obs["rgb"].shape == (2, 16, 16, 3)
        assert list(obs["instruction"]) == ["instruction 0", "instruction 1"]  # shard per worker
        obs, rewards, terminated, truncated, info = vec.step(np.array([Action.MOVE_FORWARD, Action.STOP]))
        assert terminated.tolist() == [False, True]
        assert rewards[0] == pytest.approx(0.25)
    finally:
        vec.close()


def test_import_envs_registers():
    # In a fresh interpreter (as a user would): `import envs` alone makes the id known to gymnasium.
    # (Inside pytest, tests/envs can shadow the envs package as a namespace package, so check outside.)
    code = "import envs, gymnasium; assert 'streamvln/VLN-v0' in gymnasium.registry; print('ok')"
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_habitat_lab_conversions_without_habitat():
    from envs.habitat_lab_env import convert_metrics, convert_observations, quaternion_xyzw

    raw = {"rgb": np.zeros((4, 5, 4), np.uint8), "depth": np.ones((4, 5), np.float32),
           "instruction": {"text": "Walk past the café table.", "tokens": [1, 2]}}
    obs = convert_observations(raw, [1.0, 0.0, 2.0], [0.0, 1.0, 0.0, 0.0])
    assert obs["rgb"].shape == (4, 5, 3) and obs["depth"].shape == (4, 5, 1)
    assert obs["instruction"] == "Walk past the cafe table."
    assert obs["pose"].tolist() == [1.0, 0.0, 2.0, 0.0, 1.0, 0.0, 0.0]
    metrics = convert_metrics({"distance_to_goal": 2.5, "success": 1.0, "spl": 0.8, "ndtw": 0.7, "other": 3}, 42)
    assert metrics == {"NE": 2.5, "SR": 1.0, "SPL": 0.8, "nDTW": 0.7, "steps": 42}

    class Quaternion:  # numpy-quaternion's field names
        w, x, y, z = 0.5, 0.1, 0.2, 0.3

    assert quaternion_xyzw(Quaternion()).tolist() == [0.1, 0.2, 0.3, 0.5]


@pytest.mark.habitat
def test_habitat_lab_env_runs_a_config():
    import os

    from envs.habitat_lab_env import HabitatLabEnv

    config = os.environ.get("STREAMVLN_HABITAT_LAB_CONFIG", "benchmark/nav/vln_r2r.yaml")
    env = HabitatLabEnv(config)
    obs, info = env.reset()
    assert env.observation_space.contains(obs)
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(Action.STOP)
        done = terminated or truncated
    assert terminated and "SR" in info["metrics"]
    env.close()
