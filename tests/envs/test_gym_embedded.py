"""The gymnasium env over the real embedded backend (the plane-backend tests cover the logic)."""

import gymnasium
import numpy as np
from gymnasium.utils.env_checker import check_env

import envs.gym_env  # noqa: F401  (registers streamvln/VLN-v0; see test_import_envs_registers)
from envs.episodes import save_split
from envs.episodes.generator import GeneratorConfig, generate_split
from envs.policies import make_expert


def test_embedded_env_checker_and_expert_episode(tmp_path):
    episodes, gt = generate_split("val_unseen", 2, seed=5, config=GeneratorConfig(episodes_per_house=2))
    save_split(tmp_path, "val_unseen", episodes, gt)
    env = gymnasium.make("streamvln/VLN-v0", data_dir=str(tmp_path), split="val_unseen", width=32, height=24)
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0, options={"episode_index": 1})
    assert obs["rgb"].shape == (24, 32, 3) and obs["depth"].shape == (24, 32, 1)
    assert obs["instruction"] == episodes[1].instruction.instruction_text
    expert = make_expert(env.unwrapped.task.backend, episodes[1].goal_positions)
    while True:
        state = env.unwrapped.task.backend.get_agent_state()
        np.testing.assert_allclose(obs["pose"][:3], state.position, atol=1e-5)
        obs, reward, terminated, truncated, info = env.step(int(expert.act(state)))
        if terminated or truncated:
            break
    assert terminated and info["metrics"]["SR"] == 1.0
    assert info["metrics"]["steps"] == len(gt[episodes[1].key].actions)
    env.close()


def test_task_errors_on_embedded_backend():
    import pytest

    from envs.embedded import EmbeddedBackend, EmbeddedConfig
    from envs.plane_backend import plane_episodes
    from envs.task import VLNTask

    task = VLNTask(EmbeddedBackend(EmbeddedConfig(rgb=False, depth=False)))
    episode = plane_episodes(1)[0]
    episode.scene_id = "mp3d/unknown"
    with pytest.raises(ValueError, match="cannot load scene: unknown scene id 'mp3d/unknown'"):
        task.reset(episode)
    episode.scene_id = "procedural/house_000001"
    episode.start_position = [-50.0, 0.0, -50.0]
    with pytest.raises(ValueError, match="'start_position'.*not navigable"):
        task.reset(episode)
