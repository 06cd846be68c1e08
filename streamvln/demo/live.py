"""Thread-safe live state of the demo: the latest step's images and text, finished episodes' metrics.

The episode loop calls `observe(view)` after every env step; the web server reads `snapshot()` and
the JPEG images, which are encoded lazily (once per frame, only if someone looks).
"""

from __future__ import annotations

import io
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np
from PIL import Image

from envs.geometry import yaw_from_quat
from envs.metrics import aggregate
from streamvln.demo.driver import EpisodeRun, StepView

ACTION_SYMBOLS = {0: "STOP", 1: "↑", 2: "←", 3: "→"}
AGENT_PATH_RGB = (220, 40, 40)
REFERENCE_PATH_RGB = (40, 120, 230)
IMAGE_NAMES = ("rgb", "depth", "map")


@dataclass
class _Frame:
    rgb: np.ndarray
    depth: np.ndarray | None
    map_args: tuple | None  # (house, reference, positions, pose, goal): the map is drawn lazily


class LiveState:
    def __init__(self, notice: str = "", history: int = 12, topdown=None) -> None:
        self._lock = threading.Lock()
        self._topdown = topdown  # envs.render.topdown.topdown_map, or None for no map
        self._frame_index = 0
        self._frame: _Frame | None = None
        self._encoded: dict[str, tuple[int, bytes]] = {}
        self._text: dict = {"notice": notice, "error": "", "episode": None, "instruction": "", "step": 0,
                            "last_call": None, "calls": [], "finished": [], "summary": {}}
        self._calls: deque = deque(maxlen=history)
        self._seen: deque = deque(maxlen=1000)
        self._finished_metrics: list[dict] = []
        self._last_call_key: tuple | None = None

    # ------------------------------------------------------------ writers (episode thread)
    def observe(self, view: StepView, house=None) -> None:
        goal = np.asarray(view.episode.goal_positions[0], dtype=float) if view.episode.goals else None
        reference = np.asarray(view.episode.reference_path, dtype=float).reshape(-1, 3)
        map_args = (house, reference, view.positions.copy(), view.observations["pose"], goal) if house is not None else None
        frame = _Frame(view.observations["rgb"], view.observations.get("depth"), map_args)
        with self._lock:
            call_key = (view.run.episode_id, len(view.run.calls))
            if view.call is not None and call_key != self._last_call_key:
                self._last_call_key = call_key  # a call's actions span several steps: list it once
                self._calls.append(_call_json(view.call))
            self._frame_index += 1
            self._frame = frame
            self._text.update(episode=view.run.episode_id, instruction=view.run.instruction,
                              step=int(len(view.positions) - 1), calls=list(self._calls),
                              last_call=self._calls[-1] if self._calls else None,
                              distance_to_goal=_finite(view.outcome.distance_to_goal) if view.outcome else None)

    def finish_episode(self, run: EpisodeRun) -> None:
        with self._lock:
            self._finished_metrics.append(run.metrics)
            finished = {"episode": run.episode_id, "calls": len(run.calls), **{k: _finite(v) for k, v in run.metrics.items()}}
            self._text["finished"] = (self._text["finished"] + [finished])[-20:]
            self._text["summary"] = {k: _finite(v) for k, v in aggregate(self._finished_metrics).items()}
            self._text["episodes_done"] = len(self._finished_metrics)
            self._calls.clear()

    def set_error(self, message: str) -> None:
        with self._lock:
            self._text["error"] = message

    # ------------------------------------------------------------ readers (web threads)
    def snapshot(self) -> dict:
        with self._lock:
            return {"frame": self._frame_index, **self._text}

    def image(self, name: str) -> bytes | None:
        """JPEG bytes of the current frame's `name` image (rgb, depth, map); None if there is none."""
        with self._lock:
            frame, index = self._frame, self._frame_index
            cached = self._encoded.get(name)
        if frame is None or name not in IMAGE_NAMES:
            return None
        if cached is not None and cached[0] == index:
            return cached[1]
        array = self._render(frame, name)
        if array is None:
            return None
        data = _jpeg(array)
        with self._lock:
            self._encoded[name] = (index, data)
        return data

    def record_seen(self, frame: int) -> None:
        """The page reports which frame it displayed (lets a headless browser test see progress)."""
        with self._lock:
            self._seen.append(int(frame))

    @property
    def seen_frames(self) -> list[int]:
        with self._lock:
            return list(self._seen)

    def _render(self, frame: _Frame, name: str) -> np.ndarray | None:
        if name == "rgb":
            return frame.rgb
        if name == "depth":
            if frame.depth is None:
                return None
            grey = (np.clip(frame.depth[..., 0], 0.0, 1.0) * 255).astype(np.uint8)
            return np.repeat(grey[..., None], 3, axis=2)
        if frame.map_args is None or self._topdown is None:
            return None
        house, reference, positions, pose, goal = frame.map_args
        return self._topdown(house, paths=[(reference, REFERENCE_PATH_RGB), (positions, AGENT_PATH_RGB)],
                             agent=(np.asarray(pose[:3], float), yaw_from_quat(pose[3:])), goal=goal)


def _call_json(call) -> dict:
    return {"step": call.step, "actions": [ACTION_SYMBOLS.get(a, str(a)) for a in call.actions],
            "round_trip_ms": round(call.round_trip_ms, 2),
            "model_ms": round(call.timings_ms.get("model", 0.0), 2),
            "server_ms": round(call.timings_ms.get("server", 0.0), 2), "notes": call.notes}


def _finite(value):
    value = float(value)
    return value if np.isfinite(value) else None


def _jpeg(array: np.ndarray, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
