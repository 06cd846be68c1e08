"""habitat-sim adapter (optional): `from envs.habitat import HabitatBackend`; habitat_sim is imported lazily."""

from envs.habitat.adapter import HabitatBackend, HabitatConfig

__all__ = ["HabitatBackend", "HabitatConfig"]
