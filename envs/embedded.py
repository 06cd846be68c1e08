"""EmbeddedBackend: the default SimulatorBackend over procedural houses (no GL, no habitat).

Per scene id it builds once (and keeps in a small LRU): the House (envs.scene.generator), its NavGrid
(occupancy eroded by the agent radius), a GeodesicCache (FMM fields per goal set) and a Renderer
(envs.render.raycaster). The agent is a position on the navmesh plus a yaw; rotations go in and out
as habitat quaternions [x, y, z, w].
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from envs.actions import Action, validate_action
from envs.backend import AgentState, SimulatorBackend, StepResult
from envs.geometry import forward_vector, quat_from_yaw, wrap_angle, yaw_from_quat
from envs.nav.geodesic import GeodesicCache
from envs.nav.motion import move_with_sliding
from envs.nav.occupancy import NavGrid, NavGridConfig
from envs.scene.house import House


@dataclass(frozen=True)
class EmbeddedConfig:
    width: int = 224
    height: int = 224
    hfov_deg: float = 90.0
    rgb: bool = True  # render the "rgb" observation
    depth: bool = True  # render the "depth" observation
    camera_height: float = 1.25
    max_depth: float = 10.0
    agent_radius: float = 0.1
    forward_step: float = 0.25
    turn_angle_deg: float = 15.0
    collision_substep: float = 0.05  # metres per collision check along a forward step
    scene_cache_size: int = 4  # houses (with their navmesh, fields and renderer) kept in memory
    field_cache_size: int = 32  # geodesic fields kept per house
    field_order: int = 2  # fast-marching order: 2 is accurate to ~0.2%, 1 is ~20% faster (~1% on diagonals)
    # Geodesic solve grid in metres, a multiple of the 5 cm navmesh; None: the navmesh itself (accurate).
    # 0.1 solves ~2.5x faster but errs by up to ~20 cm against 5 cm (envs/nav/geodesic.py).
    field_cell_size: float | None = None

    def validate(self) -> None:
        for name in ("width", "height", "scene_cache_size", "field_cache_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"EmbeddedConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.hfov_deg < 180.0:
            raise ValueError(f"EmbeddedConfig.hfov_deg must be in (0, 180), got {self.hfov_deg}")
        for name in ("camera_height", "max_depth", "forward_step", "turn_angle_deg", "collision_substep"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"EmbeddedConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.field_order not in (1, 2):
            raise ValueError(f"EmbeddedConfig.field_order must be 1 or 2, got {self.field_order}")
        if self.field_cell_size is not None and not (math.isfinite(self.field_cell_size) and self.field_cell_size > 0.0):
            raise ValueError(f"EmbeddedConfig.field_cell_size must be None or a finite value > 0, got {self.field_cell_size!r}")
        if not self.agent_radius >= 0.0:
            raise ValueError(f"EmbeddedConfig.agent_radius must be >= 0, got {self.agent_radius}")


@dataclass
class EmbeddedScene:
    """Everything built once per scene id."""

    house: House
    nav: NavGrid
    geodesic: GeodesicCache
    renderer: object | None  # has .render(position, yaw) -> {"rgb", "depth", ...}; None when no sensor is on


HouseFactory = Callable[[str], House]
RendererFactory = Callable[[House, EmbeddedConfig], object]


def _default_house_factory(scene_id: str) -> House:
    from envs.scene.generator import generate_house

    return generate_house(scene_id)


def _default_renderer_factory(house: House, config: EmbeddedConfig):
    from envs.render.raycaster import RenderConfig, Renderer

    return Renderer(house, RenderConfig(width=config.width, height=config.height, hfov_deg=config.hfov_deg,
                                        camera_height=config.camera_height, max_depth=config.max_depth))


class EmbeddedBackend(SimulatorBackend):
    """Procedural houses with an occupancy navmesh, FMM geodesics, sliding collisions and a raycaster."""

    def __init__(self, config: EmbeddedConfig | None = None, house_factory: HouseFactory | None = None,
                 renderer_factory: RendererFactory | None = None):
        self.config = config or EmbeddedConfig()
        self.config.validate()
        self._house_factory = house_factory or _default_house_factory
        self._renderer_factory = renderer_factory or _default_renderer_factory
        self._scenes: OrderedDict[str, EmbeddedScene] = OrderedDict()
        self._scene: EmbeddedScene | None = None
        self._scene_id: str | None = None
        self._position = np.zeros(3)
        self._yaw = 0.0

    # --- scene -----------------------------------------------------------------------------------
    def reset_scene(self, scene_id: str) -> None:
        scene = self._scenes.get(scene_id)
        if scene is None:
            scene = self._build_scene(scene_id)
            self._scenes[scene_id] = scene
            if len(self._scenes) > self.config.scene_cache_size:
                self._scenes.popitem(last=False)
        self._scenes.move_to_end(scene_id)
        self._scene, self._scene_id = scene, scene_id
        self._position = scene.nav.sample_navigable_point(np.random.default_rng(0))
        self._yaw = 0.0

    def _build_scene(self, scene_id: str) -> EmbeddedScene:
        house = self._house_factory(scene_id)
        nav = NavGrid.from_layout(house.grid, NavGridConfig(agent_radius=self.config.agent_radius))
        if not nav.navigable.any():
            raise ValueError(f"scene {scene_id!r} has no navigable floor for an agent of radius {self.config.agent_radius} m")
        renderer = self._renderer_factory(house, self.config) if (self.config.rgb or self.config.depth) else None
        geodesic = GeodesicCache(nav, self.config.field_cache_size, self.config.field_order, self.config.field_cell_size)
        return EmbeddedScene(house, nav, geodesic, renderer)

    @property
    def scene(self) -> EmbeddedScene:
        if self._scene is None:
            raise RuntimeError("no scene loaded: call reset_scene(scene_id) first")
        return self._scene

    @property
    def scene_id(self) -> str | None:
        return self._scene_id

    @property
    def house(self) -> House:
        return self.scene.house

    @property
    def nav(self) -> NavGrid:
        return self.scene.nav

    # --- agent -----------------------------------------------------------------------------------
    def set_agent_state(self, state: AgentState) -> dict[str, np.ndarray]:
        position = np.asarray(state.position, dtype=np.float64)
        rotation = np.asarray(state.rotation, dtype=np.float64)
        if position.shape != (3,) or not np.all(np.isfinite(position)):
            raise ValueError(f"agent position must be 3 finite numbers [x, y, z], got {state.position!r}")
        if rotation.shape != (4,) or not np.all(np.isfinite(rotation)) or np.linalg.norm(rotation) < 1e-6:
            raise ValueError(f"agent rotation must be a non-zero quaternion [x, y, z, w], got {state.rotation!r}")
        if not self.nav.is_navigable(position):
            nearest = self.nav.snap(position)
            raise ValueError(
                f"agent position {position.round(3).tolist()} is off the navmesh of scene {self._scene_id!r}; "
                f"nearest navigable point: {nearest.round(3).tolist()}"
            )
        self._position = np.array([position[0], 0.0, position[2]])
        self._yaw = yaw_from_quat(rotation / np.linalg.norm(rotation))
        return self.observe()

    def get_agent_state(self) -> AgentState:
        _ = self.scene  # raises a clear RuntimeError when no scene is loaded
        return AgentState(position=self._position.copy(), rotation=quat_from_yaw(self._yaw))

    def step(self, action: int) -> StepResult:
        action = validate_action(action)
        collided = False
        if action == Action.MOVE_FORWARD:
            self._position, collided = self._forward(self._position, self._yaw)
        elif action in (Action.TURN_LEFT, Action.TURN_RIGHT):
            sign = 1.0 if action == Action.TURN_LEFT else -1.0
            self._yaw = wrap_angle(self._yaw + sign * math.radians(self.config.turn_angle_deg))
        return StepResult(observations=self.observe(), collided=collided)

    def _forward(self, position: np.ndarray, yaw: float) -> tuple[np.ndarray, bool]:
        displacement = self.config.forward_step * forward_vector(yaw)
        return move_with_sliding(self.nav, position, displacement, self.config.collision_substep)

    def forward_landing(self, position: np.ndarray, yaw: float) -> np.ndarray:
        return self._forward(np.asarray(position, dtype=np.float64), yaw)[0]

    def observe(self) -> dict[str, np.ndarray]:
        renderer = self.scene.renderer
        if renderer is None:
            return {}
        frame = renderer.render(self._position, self._yaw)
        wanted = {"rgb": self.config.rgb, "depth": self.config.depth}
        return {key: value for key, value in frame.items() if wanted.get(key, True)}

    # --- navigation queries ----------------------------------------------------------------------
    def geodesic_distance(self, start: np.ndarray, goals: np.ndarray | list) -> float:
        """Like habitat's find_path: start and goals are snapped onto the navmesh first; inf when the
        goals lie in another connected component. One FMM field per goal set (LRU), then O(1)."""
        return self.scene.geodesic.distance(start, goals)

    def shortest_path(self, start: np.ndarray, goal: np.ndarray) -> np.ndarray:
        return self.scene.geodesic.shortest_path(start, goal)

    def is_navigable(self, point: np.ndarray) -> bool:
        return self.nav.is_navigable(point)

    def snap_point(self, point: np.ndarray) -> np.ndarray:
        return self.nav.snap(point)

    def sample_navigable_point(self, rng: np.random.Generator) -> np.ndarray:
        return self.nav.sample_navigable_point(rng)

    def close(self) -> None:
        self._scenes.clear()
        self._scene, self._scene_id = None, None
