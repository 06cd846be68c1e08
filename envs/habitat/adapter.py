"""HabitatBackend: SimulatorBackend over raw habitat_sim (Matterport / HM3D scenes, GL rendering).

Thin on purpose: every navigation question goes to habitat's navmesh PathFinder, every motion to the
simulator's agent, so metrics match VLN-CE. habitat_sim is imported only when a backend is built;
without it the constructor raises ImportError with the install command (it is a conda-only package,
which these machines cannot install, so this module's behavioural tests are marked `habitat`).

Sensors follow DESIGN 3.1: RGB + depth pinhole cameras at 1.25 m, agent radius 0.1 / height 1.5,
move_forward 0.25 m, turns 15 degrees; depth is returned normalised to [0, 1] over [0, max_depth].
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field

import numpy as np

from envs.actions import FORWARD_STEP_M, TURN_ANGLE_DEG, Action, validate_action
from envs.backend import AgentState, SimulatorBackend, StepResult
from envs.geometry import forward_vector
from envs.sensors import SensorConfig

INSTALL_HINT = (
    "habitat_sim is not installed. Install it with "
    "`conda install habitat-sim -c conda-forge -c aihabitat` (0.2.4+, headless build) "
    "or use the embedded backend (envs.embedded.EmbeddedBackend), the default everywhere."
)
_ACTION_KEYS = {Action.MOVE_FORWARD: "move_forward", Action.TURN_LEFT: "turn_left", Action.TURN_RIGHT: "turn_right"}
_KEY_ACTIONS = {key: action for action, key in _ACTION_KEYS.items()}


def import_habitat_sim():
    """The habitat_sim module, or ImportError with the install hint."""
    try:
        return importlib.import_module("habitat_sim")
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error


@dataclass(frozen=True)
class HabitatConfig:
    scene_dataset_config: str = "default"  # a .scene_dataset_config.json for HM3D/MP3D datasets, or "default"
    scenes_dir: str = ""  # prefix joined to relative scene ids (e.g. "data/scene_datasets")
    sensors: SensorConfig = field(default_factory=lambda: SensorConfig(width=224, height=224))
    rgb: bool = True
    depth: bool = True
    camera_height: float = 1.25
    max_depth: float = 10.0
    agent_radius: float = 0.1
    agent_height: float = 1.5
    gpu_device_id: int = 0
    seed: int = 0

    def validate(self) -> None:
        self.sensors.validate(where="HabitatConfig.sensors")
        for name in ("camera_height", "max_depth", "agent_radius", "agent_height"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"HabitatConfig.{name} must be > 0, got {getattr(self, name)}")


class HabitatBackend(SimulatorBackend):
    """One habitat_sim.Simulator, reconfigured when the scene changes."""

    def __init__(self, config: HabitatConfig | None = None):
        self.config = config or HabitatConfig()
        self.config.validate()
        self._hs = import_habitat_sim()
        self._sim = None
        self._scene_id: str | None = None

    # --- scene -----------------------------------------------------------------------------------
    def _configuration(self, scene_path: str):
        hs, cfg = self._hs, self.config
        sim_cfg = hs.SimulatorConfiguration()
        sim_cfg.scene_id = scene_path
        sim_cfg.scene_dataset_config_file = cfg.scene_dataset_config
        sim_cfg.gpu_device_id = cfg.gpu_device_id
        sim_cfg.random_seed = cfg.seed
        sim_cfg.allow_sliding = True
        sensors = []
        for uuid, kind, wanted in (("rgb", hs.SensorType.COLOR, cfg.rgb), ("depth", hs.SensorType.DEPTH, cfg.depth)):
            if wanted:
                spec = hs.CameraSensorSpec()
                spec.uuid, spec.sensor_type = uuid, kind
                spec.sensor_subtype = hs.SensorSubType.PINHOLE
                spec.resolution = [cfg.sensors.height, cfg.sensors.width]
                spec.position = [0.0, cfg.camera_height, 0.0]
                spec.hfov = importlib.import_module("magnum").Deg(cfg.sensors.hfov_deg)  # habitat's magnum dependency
                sensors.append(spec)
        agent_cfg = hs.agent.AgentConfiguration()
        agent_cfg.height, agent_cfg.radius = cfg.agent_height, cfg.agent_radius
        agent_cfg.sensor_specifications = sensors
        agent_cfg.action_space = {
            "move_forward": hs.agent.ActionSpec("move_forward", hs.agent.ActuationSpec(amount=FORWARD_STEP_M)),
            "turn_left": hs.agent.ActionSpec("turn_left", hs.agent.ActuationSpec(amount=TURN_ANGLE_DEG)),
            "turn_right": hs.agent.ActionSpec("turn_right", hs.agent.ActuationSpec(amount=TURN_ANGLE_DEG)),
        }
        return hs.Configuration(sim_cfg, [agent_cfg])

    def reset_scene(self, scene_id: str) -> None:
        if scene_id == self._scene_id and self._sim is not None:
            return
        path = f"{self.config.scenes_dir.rstrip('/')}/{scene_id}" if self.config.scenes_dir else scene_id
        configuration = self._configuration(path)
        if self._sim is None:
            self._sim = self._hs.Simulator(configuration)
        else:
            self._sim.reconfigure(configuration)
        self._recompute_navmesh(scene_id)
        self._sim.pathfinder.seed(self.config.seed)
        self._scene_id = scene_id

    def _recompute_navmesh(self, scene_id: str) -> None:
        """Rebuild the navmesh for our agent size (the scene's baked one may use another radius)."""
        settings = self._hs.NavMeshSettings()
        settings.set_defaults()
        settings.agent_radius, settings.agent_height = self.config.agent_radius, self.config.agent_height
        if not self._sim.recompute_navmesh(self._sim.pathfinder, settings):
            raise ValueError(f"habitat_sim could not build a navmesh for scene {scene_id!r}")

    @property
    def sim(self):
        if self._sim is None:
            raise RuntimeError("no scene loaded: call reset_scene(scene_id) first")
        return self._sim

    # --- agent -----------------------------------------------------------------------------------
    def set_agent_state(self, state: AgentState) -> dict[str, np.ndarray]:
        position = np.asarray(state.position, dtype=np.float64)
        if position.shape != (3,) or not np.all(np.isfinite(position)):
            raise ValueError(f"agent position must be 3 finite numbers [x, y, z], got {state.position!r}")
        if not self.is_navigable(position):
            nearest = self.snap_point(position)
            raise ValueError(f"agent position {position.round(3).tolist()} is off the navmesh of scene "
                             f"{self._scene_id!r}; nearest navigable point: {nearest.round(3).tolist()}")
        common = importlib.import_module("habitat_sim.utils.common")
        habitat_state = self._hs.AgentState()
        habitat_state.position = position.astype(np.float32)
        habitat_state.rotation = common.quat_from_coeffs(np.asarray(state.rotation, dtype=np.float64))
        self.sim.get_agent(0).set_state(habitat_state)
        return self.observe()

    def get_agent_state(self) -> AgentState:
        common = importlib.import_module("habitat_sim.utils.common")
        habitat_state = self.sim.get_agent(0).get_state()
        return AgentState(position=np.asarray(habitat_state.position, dtype=np.float64),
                          rotation=np.asarray(common.quat_to_coeffs(habitat_state.rotation), dtype=np.float64))

    def step(self, action: int) -> StepResult:
        action = validate_action(action)
        if action == Action.STOP:
            return StepResult(observations=self.observe(), collided=False)
        raw = self.sim.step(_ACTION_KEYS[action])
        return StepResult(observations=self._convert(raw), collided=bool(self.sim.previous_step_collided))

    def observe(self) -> dict[str, np.ndarray]:
        return self._convert(self.sim.get_sensor_observations())

    def _convert(self, raw: dict) -> dict[str, np.ndarray]:
        """habitat's RGBA uint8 and metric depth -> DESIGN 3.1's RGB uint8 and depth in [0, 1] (H, W, 1)."""
        out: dict[str, np.ndarray] = {}
        if "rgb" in raw:
            out["rgb"] = np.ascontiguousarray(np.asarray(raw["rgb"])[..., :3], dtype=np.uint8)
        if "depth" in raw:
            depth = np.clip(np.asarray(raw["depth"], dtype=np.float32), 0.0, self.config.max_depth)
            out["depth"] = (depth / self.config.max_depth)[..., None]
        return out

    def forward_landing(self, position: np.ndarray, yaw: float) -> np.ndarray:
        target = np.asarray(position, dtype=np.float64) + FORWARD_STEP_M * forward_vector(yaw)
        return np.asarray(self.sim.pathfinder.try_step(position, target), dtype=np.float64)

    # --- navigation queries ----------------------------------------------------------------------
    def geodesic_distance(self, start: np.ndarray, goals: np.ndarray | list) -> float:
        goals = np.asarray(goals, dtype=np.float64).reshape(-1, 3)
        path = self._hs.MultiGoalShortestPath()
        path.requested_start = np.asarray(start, dtype=np.float32)
        path.requested_ends = [g.astype(np.float32) for g in goals]
        found = self.sim.pathfinder.find_path(path)
        return float(path.geodesic_distance) if found and math.isfinite(path.geodesic_distance) else math.inf

    def shortest_path(self, start: np.ndarray, goal: np.ndarray) -> np.ndarray:
        path = self._hs.ShortestPath()
        path.requested_start = np.asarray(start, dtype=np.float32)
        path.requested_end = np.asarray(goal, dtype=np.float32)
        if not self.sim.pathfinder.find_path(path):
            return np.zeros((0, 3))
        return np.asarray(path.points, dtype=np.float64).reshape(-1, 3)

    def is_navigable(self, point: np.ndarray) -> bool:
        return bool(self.sim.pathfinder.is_navigable(np.asarray(point, dtype=np.float32)))

    def snap_point(self, point: np.ndarray) -> np.ndarray:
        return np.asarray(self.sim.pathfinder.snap_point(np.asarray(point, dtype=np.float32)), dtype=np.float64)

    def sample_navigable_point(self, rng: np.random.Generator) -> np.ndarray:
        self.sim.pathfinder.seed(int(rng.integers(2**31 - 1)))
        return np.asarray(self.sim.pathfinder.get_random_navigable_point(), dtype=np.float64)

    def greedy_follower(self, goal_radius: float = 0.25):
        """habitat's own GreedyGeodesicFollower for this agent (an expert variant; see greedy_action)."""
        return self._hs.nav.GreedyGeodesicFollower(
            self.sim.pathfinder, self.sim.get_agent(0), goal_radius=goal_radius, stop_key=None,
            forward_key="move_forward", left_key="turn_left", right_key="turn_right",
        )

    @staticmethod
    def greedy_action(follower, goal: np.ndarray) -> Action:
        """The follower's next action toward `goal` as an Action (its None / stop key is STOP)."""
        key = follower.next_action_along(np.asarray(goal, dtype=np.float32))
        return _KEY_ACTIONS.get(key, Action.STOP)

    def close(self) -> None:
        if self._sim is not None:
            self._sim.close()
        self._sim, self._scene_id = None, None
