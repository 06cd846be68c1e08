"""Navigation on the embedded navmesh: occupancy, geodesic fields, sliding motion, the greedy expert."""

from envs.nav.expert import ExpertConfig, GeodesicExpert
from envs.nav.geodesic import GeodesicCache, GeodesicField
from envs.nav.motion import move_with_sliding
from envs.nav.occupancy import NavGrid, NavGridConfig

__all__ = ["ExpertConfig", "GeodesicCache", "GeodesicExpert", "GeodesicField", "NavGrid", "NavGridConfig",
           "move_with_sliding"]
