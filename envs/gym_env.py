"""gymnasium interface to the VLN task: `VLNEnv`, registered as `streamvln/VLN-v0`, and a vector form.

    import envs, gymnasium
    env = gymnasium.make("streamvln/VLN-v0", data_dir="data/r2r", split="val_unseen")

Observations: rgb uint8 (H, W, 3), depth float32 (H, W, 1) in [0, 1], instruction text, pose (7,)
position + quaternion [x, y, z, w]. Actions: Discrete(4) (0 STOP, 1 forward, 2 left, 3 right).
terminated on STOP, truncated at the step limit; the final info carries the episode's metrics.
Reward: decrease of the geodesic distance to the goal, plus SUCCESS_REWARD on a successful STOP.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.actions import NUM_ACTIONS
from envs.backend import SimulatorBackend
from envs.episodes.io import Episode, GroundTruth, load_split
from envs.metrics import MAX_EPISODE_STEPS, SUCCESS_DISTANCE_M
from envs.task import TaskConfig, VLNTask

ENV_ID = "streamvln/VLN-v0"
INSTRUCTION_CHARSET = string.printable
MAX_INSTRUCTION_CHARS = 4096
SUCCESS_REWARD = 2.5
# Positions within +-1 km, quaternion components within [-1, 1].
POSE_LOW = np.array([-1000.0] * 3 + [-1.0] * 4, dtype=np.float32)

BackendFactory = Callable[[], SimulatorBackend]


def make_embedded_backend(width: int = 224, height: int = 224, hfov: float = 90.0) -> SimulatorBackend:
    """The default backend: procedural houses (imported here so envs.gym_env loads without numba JIT)."""
    from envs.embedded import EmbeddedBackend, EmbeddedConfig

    return EmbeddedBackend(EmbeddedConfig(width=width, height=height, hfov_deg=hfov))


def observation_space(height: int, width: int) -> spaces.Dict:
    """The VLN observation space shared by every gymnasium env of the project."""
    return spaces.Dict({
        "rgb": spaces.Box(0, 255, (height, width, 3), np.uint8),
        "depth": spaces.Box(0.0, 1.0, (height, width, 1), np.float32),
        "instruction": spaces.Text(max_length=MAX_INSTRUCTION_CHARS, min_length=0, charset=INSTRUCTION_CHARSET),
        "pose": spaces.Box(POSE_LOW, -POSE_LOW, (7,), np.float32),
    })


def ascii_instruction(text: str) -> str:
    """Instruction text inside the Text space's charset (accents folded, other symbols dropped)."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(c for c in folded if c in INSTRUCTION_CHARSET)[:MAX_INSTRUCTION_CHARS]


class VLNEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        data_dir: str | Path | None = None,
        split: str = "val_unseen",
        *,
        episodes: list[Episode] | None = None,
        gt: dict[str, GroundTruth] | None = None,
        backend_factory: BackendFactory | None = None,
        width: int = 224,
        height: int = 224,
        hfov: float = 90.0,
        max_steps: int = MAX_EPISODE_STEPS,
        success_distance: float = SUCCESS_DISTANCE_M,
        shuffle: bool = False,
        shard_index: int = 0,
        num_shards: int = 1,
        render_mode: str | None = None,
    ):
        if episodes is None:
            if data_dir is None:
                raise ValueError("VLNEnv needs data_dir (with split) or an explicit episodes list")
            episodes, gt = load_split(data_dir, split)
        if not 0 <= shard_index < num_shards:
            raise ValueError(f"VLNEnv shard_index must be in [0, {num_shards}), got {shard_index}")
        self.episodes = episodes[shard_index::num_shards]
        if not self.episodes:
            raise ValueError(f"VLNEnv: no episodes in split {split!r} (shard {shard_index}/{num_shards})")
        self.gt = gt or {}
        self.shuffle = shuffle
        self.render_mode = render_mode
        backend = backend_factory() if backend_factory else make_embedded_backend(width, height, hfov)
        self.task = VLNTask(backend, TaskConfig(max_steps=max_steps, success_distance=success_distance))
        self.success_distance = success_distance
        self._next_index = 0
        self._last_obs: dict | None = None
        self._distance = 0.0
        first = self.task.reset(self.episodes[0], self.gt.get(self.episodes[0].key))
        h, w = first["rgb"].shape[:2]
        self.observation_space = observation_space(h, w)
        self.action_space = spaces.Discrete(NUM_ACTIONS)

    @property
    def episode(self) -> Episode | None:
        return self.task.episode

    def _pick_episode(self, options: dict | None) -> int:
        if options and "episode_index" in options:
            index = int(options["episode_index"])
            if not 0 <= index < len(self.episodes):
                raise ValueError(f"options['episode_index'] {index} is outside [0, {len(self.episodes)})")
            return index
        if self.shuffle:
            return int(self.np_random.integers(len(self.episodes)))
        index = self._next_index % len(self.episodes)
        return index

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None and not self.shuffle:
            self._next_index = 0  # a seeded reset replays the same episode order
        index = self._pick_episode(options)
        self._next_index = index + 1
        episode = self.episodes[index]
        observations = self.task.reset(episode, self.gt.get(episode.key))
        self._distance = self.task.distance_to_goal
        return self._wrap(observations), {"episode_id": episode.episode_id, "scene_id": episode.scene_id,
                                          "episode_index": index}

    def step(self, action):
        outcome = self.task.step(int(action))
        reward = self._distance - outcome.distance_to_goal
        self._distance = outcome.distance_to_goal
        info: dict[str, Any] = {"collided": outcome.collided, "distance_to_goal": outcome.distance_to_goal,
                                "episode_id": self.task.episode.episode_id}
        if outcome.metrics is not None:
            info["metrics"] = outcome.metrics.as_dict()
            reward += SUCCESS_REWARD * outcome.metrics.SR
        return self._wrap(outcome.observations), float(reward), outcome.terminated, outcome.truncated, info

    def _wrap(self, observations: dict) -> dict:
        wrapped = {
            "rgb": observations["rgb"],
            "depth": observations["depth"].astype(np.float32, copy=False),
            "instruction": ascii_instruction(observations["instruction"]),
            "pose": observations["pose"],
        }
        self._last_obs = wrapped
        return wrapped

    def render(self):
        if self.render_mode == "rgb_array" and self._last_obs is not None:
            return self._last_obs["rgb"]
        return None

    def close(self):
        self.task.close()


def _make_worker_env(index: int, num_envs: int, kwargs: dict) -> gym.Env:
    return VLNEnv(shard_index=index, num_shards=num_envs, **kwargs)


def make_vector_env(
    num_envs: int,
    data_dir: str | Path | None = None,
    split: str = "val_unseen",
    *,
    shared_memory: bool = False,
    **env_kwargs,
) -> gym.vector.AsyncVectorEnv:
    """`num_envs` worker processes, each on its own shard of the split's episodes.

    Seed them through `reset(seed=s)` (worker i gets s + i). Shared memory is off by default
    because observation copies are small next to a render and Text spaces are variable length.
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    kwargs = dict(env_kwargs, data_dir=data_dir, split=split)
    fns = [partial(_make_worker_env, i, num_envs, kwargs) for i in range(num_envs)]
    return gym.vector.AsyncVectorEnv(fns, shared_memory=shared_memory, context="spawn")


def register_env() -> None:
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="envs.gym_env:VLNEnv", max_episode_steps=None)


register_env()
