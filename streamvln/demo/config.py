"""DemoConfig: the settings of `streamvln demo` (standard library only, so the CLI can build its
parser and read these defaults without importing the simulator, zmq or the model)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DemoConfig:
    port: int = 8000  # web page on 127.0.0.1:port (0: a free port)
    bind: str = "tcp://127.0.0.1:*"  # the agent server (a free port by default)
    data_dir: str | None = None  # R2R-CE episode files; None: generate procedural episodes
    split: str = "val_unseen"
    episodes: int = 5  # episodes to load or generate; they are replayed in a loop
    loops: int = 0  # passes over the episodes (0: until stopped)
    seed: int = 0
    step_delay_s: float = 0.05  # slows the loop down so a person can follow it
    width: int = 224
    height: int = 224
    hfov_deg: float = 90.0
    max_steps: int = 500

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"DemoConfig.port must be in 0..65535, got {self.port}")
        if self.episodes < 1 or self.loops < 0 or self.step_delay_s < 0 or self.max_steps < 1:
            raise ValueError("DemoConfig needs episodes >= 1, loops >= 0, step_delay_s >= 0, max_steps >= 1")
