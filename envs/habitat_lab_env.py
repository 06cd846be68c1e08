"""`HabitatLabEnv`: a user's habitat-lab VLN setup behind the same gymnasium interface as VLNEnv.

    env = HabitatLabEnv("benchmark/nav/vln_r2r.yaml")  # or a VLN-CE config; success distance 3.0

habitat-lab builds the task (episodes, sensors, measures) from the user's config, so existing
Habitat evaluation setups run unchanged; this wrapper only converts observations (rgb, depth,
instruction text, pose), flags (terminated on STOP, truncated when habitat ends the episode
otherwise) and the final measures into this project's metric names. habitat is imported lazily:
without it the constructor raises ImportError with the install command. The conversions are pure
functions, tested without habitat; the wrapper itself is tested under the `habitat` marker.
"""

from __future__ import annotations

import importlib

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.actions import NUM_ACTIONS, Action, validate_action
from envs.gym_env import ascii_instruction, observation_space

INSTALL_HINT = ("habitat-lab is not installed: `conda install habitat-sim -c conda-forge -c aihabitat` "
                "then `pip install habitat-lab` (0.2.4+); or use streamvln/VLN-v0 (embedded simulator)")

# habitat-lab / VLN-CE measure names -> this project's metric names (DESIGN.md 3.3).
HABITAT_MEASURES = {"distance_to_goal": "NE", "oracle_success": "OS", "success": "SR", "spl": "SPL",
                    "path_length": "TL", "ndtw": "nDTW", "sdtw": "SDTW"}


def import_habitat():
    try:
        return importlib.import_module("habitat")
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error


def convert_observations(raw: dict, position, rotation_xyzw) -> dict:
    """habitat-lab observations + agent state -> {rgb, depth, instruction, pose}."""
    instruction = raw.get("instruction", "")
    if isinstance(instruction, dict):  # habitat's InstructionSensor: {"text", "tokens", "trajectory_id"}
        instruction = instruction.get("text", "")
    depth = np.asarray(raw["depth"], dtype=np.float32)
    if depth.ndim == 2:
        depth = depth[..., None]
    pose = np.concatenate([np.asarray(position, float), np.asarray(rotation_xyzw, float)]).astype(np.float32)
    return {"rgb": np.asarray(raw["rgb"], dtype=np.uint8)[..., :3], "depth": depth,
            "instruction": ascii_instruction(str(instruction)), "pose": pose}


def convert_metrics(measures: dict, steps: int) -> dict[str, float]:
    """habitat measures -> NE/OS/SR/SPL/TL/nDTW/SDTW (those the config computes) + steps."""
    converted = {ours: float(measures[theirs]) for theirs, ours in HABITAT_MEASURES.items() if theirs in measures}
    converted["steps"] = steps
    return converted


def quaternion_xyzw(rotation) -> np.ndarray:
    """numpy-quaternion (w, x, y, z fields) or a sequence already in [x, y, z, w]."""
    if hasattr(rotation, "w"):
        return np.array([rotation.x, rotation.y, rotation.z, rotation.w], dtype=np.float64)
    return np.asarray(rotation, dtype=np.float64)


class HabitatLabEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, config_path: str, overrides: list[str] | None = None):
        habitat = import_habitat()
        self._env = habitat.Env(config=habitat.get_config(config_path, overrides or []))
        self._steps = 0
        first = self.reset()[0]
        h, w = first["rgb"].shape[:2]
        self.observation_space = observation_space(h, w)
        self.action_space = spaces.Discrete(NUM_ACTIONS)

    def _wrap(self, raw: dict) -> dict:
        state = self._env.sim.get_agent_state()
        return convert_observations(raw, state.position, quaternion_xyzw(state.rotation))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._steps = 0
        raw = self._env.reset()
        episode = self._env.current_episode
        return self._wrap(raw), {"episode_id": episode.episode_id, "scene_id": episode.scene_id}

    def step(self, action):
        action = validate_action(action)
        raw = self._env.step(int(action))
        self._steps += 1
        over = bool(self._env.episode_over)
        terminated = over and action == Action.STOP
        info: dict = {"episode_id": self._env.current_episode.episode_id}
        if over:
            info["metrics"] = convert_metrics(self._env.get_metrics(), self._steps)
        return self._wrap(raw), 0.0, terminated, over and not terminated, info

    def close(self):
        self._env.close()
