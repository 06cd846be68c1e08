"""SensorConfig: the agent camera (resolution and horizontal field of view) that the configs of every
layer share.

Actor loops, actor processes, evaluation settings, the run config's `sensors:` section and the habitat
backend hold one of these instead of repeating width/height/hfov_deg and their checks. The lower-level
configs (envs.embedded.EmbeddedConfig, envs.render.raycaster.RenderConfig, agent.streaming.voxel's
CameraModel) keep their own fields; call sites fill them with `SensorConfig.as_kwargs()`.
Standard library only: any layer may import it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SensorConfig:
    width: int = 112  # px
    height: int = 112  # px
    hfov_deg: float = 90.0  # horizontal field of view; the vertical one follows from the aspect ratio

    def validate(self, min_side: int = 1, where: str = "sensors") -> SensorConfig:
        """self, or ValueError naming the field; `min_side` lets a caller demand larger frames."""
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < min_side:
                raise ValueError(f"{where}.{name} must be an integer >= {min_side} px, got {value!r}")
        hfov = self.hfov_deg
        if isinstance(hfov, bool) or not isinstance(hfov, int | float) or not (math.isfinite(hfov) and 0.0 < hfov < 180.0):
            raise ValueError(f"{where}.hfov_deg must be in (0, 180) degrees, got {hfov!r}")
        return self

    def as_kwargs(self) -> dict[str, int | float]:
        """{"width", "height", "hfov_deg"}: the same-named fields of EmbeddedConfig / RenderConfig."""
        return {"width": self.width, "height": self.height, "hfov_deg": self.hfov_deg}
