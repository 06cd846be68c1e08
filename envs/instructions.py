"""Templated R2R-style instructions from a segmented reference path through a procedural house.

The path is resampled every 0.25 m and cut into events in walking order:
- the start: the initial turn (from the start heading to the first path segment) and the start room;
- doors: the path leaves room A and enters room B;
- turns: corners of the simplified path (Ramer-Douglas-Peucker) sharper than TURN_MIN_DEG;
- landmarks: furniture within LANDMARK_REACH_M of the path, named with its colour ("the green plant");
- the end: stop next to the goal object, named with its colour and its room.
Each event has several phrasings; one is chosen by the caller's seeded rng. The goal object's name
is unique in the house (colours are unique per category), and the room name disambiguates it further.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from envs.geometry import wrap_angle, yaw_from_quat
from envs.scene.house import Furniture, House

SAMPLE_SPACING_M = 0.25
SIMPLIFY_TOLERANCE_M = 0.35
TURN_MIN_DEG = 35.0
LANDMARK_REACH_M = 1.0
MIN_ROOM_RUN_M = 0.5  # shorter visits to a room (cutting a corner) are not worth a sentence
MAX_MIDDLE_EVENTS = 6


@dataclass(frozen=True)
class PathEvent:
    kind: str  # "door", "turn", "landmark"
    at_m: float  # arc length along the path
    detail: str  # room type entered, "left"/"right"/"around", or the landmark's name


@dataclass(frozen=True)
class PathSegmentation:
    start_room: str | None
    goal_room: str | None
    start_turn: str | None  # "left", "right", "around" or None (already facing the way)
    events: tuple[PathEvent, ...]
    goal_name: str


# ----------------------------------------------------------------------------------- geometry


def resample_path(points: np.ndarray, spacing: float = SAMPLE_SPACING_M) -> tuple[np.ndarray, np.ndarray]:
    """Points every `spacing` metres along a polyline (and their arc lengths)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(points) < 2:
        return points, np.zeros(len(points))
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    cumulative = np.concatenate([[0.0], np.cumsum(seg)])
    arc = np.arange(0.0, cumulative[-1], spacing)
    arc = np.append(arc, cumulative[-1])
    resampled = np.stack([np.interp(arc, cumulative, points[:, k]) for k in range(3)], axis=1)
    return resampled, arc


def simplify_path(points: np.ndarray, tolerance: float = SIMPLIFY_TOLERANCE_M) -> list[int]:
    """Indices kept by Ramer-Douglas-Peucker in the XZ plane (always the first and the last)."""
    xz = np.asarray(points, dtype=np.float64)[:, [0, 2]]
    keep = {0, len(xz) - 1}
    stack = [(0, len(xz) - 1)]
    while stack:
        lo, hi = stack.pop()
        if hi - lo < 2:
            continue
        a, b = xz[lo], xz[hi]
        ab = b - a
        rel = xz[lo + 1:hi] - a
        length = np.linalg.norm(ab)
        if length < 1e-9:
            dist = np.linalg.norm(rel, axis=1)
        else:
            dist = np.abs(ab[0] * rel[:, 1] - ab[1] * rel[:, 0]) / length
        worst = int(np.argmax(dist))
        if dist[worst] > tolerance:
            mid = lo + 1 + worst
            keep.add(mid)
            stack += [(lo, mid), (mid, hi)]
    return sorted(keep)


def heading_yaw(a: np.ndarray, b: np.ndarray) -> float:
    """Habitat yaw (0 faces -Z, left turns increase it) of the direction from a to b."""
    return math.atan2(-(b[0] - a[0]), -(b[2] - a[2]))


def turn_word(delta_rad: float, min_deg: float = TURN_MIN_DEG) -> str | None:
    degrees = math.degrees(wrap_angle(delta_rad))
    if abs(degrees) >= 135.0:
        return "around"
    if abs(degrees) < min_deg:
        return None
    return "left" if degrees > 0 else "right"


def distance_to_footprint(piece: Furniture, x: float, z: float) -> float:
    dx = max(piece.x0 - x, 0.0, x - piece.x1)
    dz = max(piece.z0 - z, 0.0, z - piece.z1)
    return math.hypot(dx, dz)


# ----------------------------------------------------------------------------------- segmentation


def _room_runs(house: House, samples: np.ndarray, arc: np.ndarray) -> list[tuple[int, float, float]]:
    """(room index, first arc, last arc) runs along the path, doorways and short visits dropped."""
    runs: list[list] = []
    for point, s in zip(samples, arc):
        room = house.room_at(float(point[0]), float(point[2]))
        if room is None:
            continue
        if runs and runs[-1][0] == room.index:
            runs[-1][2] = s
        else:
            runs.append([room.index, s, s])
    kept = [r for i, r in enumerate(runs) if i in (0, len(runs) - 1) or r[2] - r[1] >= MIN_ROOM_RUN_M]
    merged: list[list] = []
    for run in kept:
        if merged and merged[-1][0] == run[0]:
            merged[-1][2] = run[2]
        else:
            merged.append(run)
    return [(r[0], r[1], r[2]) for r in merged]


def _turn_events(samples: np.ndarray, arc: np.ndarray) -> list[PathEvent]:
    corners = simplify_path(samples)
    events = []
    for prev, here, nxt in zip(corners, corners[1:], corners[2:]):
        if arc[here] - arc[prev] < 0.3 or arc[nxt] - arc[here] < 0.3:
            continue
        delta = heading_yaw(samples[here], samples[nxt]) - heading_yaw(samples[prev], samples[here])
        word = turn_word(delta)
        if word in ("left", "right"):
            events.append(PathEvent("turn", float(arc[here]), word))
    return events


def _landmark_events(house: House, samples: np.ndarray, arc: np.ndarray, goal: Furniture) -> list[PathEvent]:
    """Each piece of furniture passed close by, at the arc length where the path is nearest to it."""
    events = []
    for piece in house.furniture:
        if piece.index == goal.index or piece.category == goal.category:
            continue
        distances = [distance_to_footprint(piece, p[0], p[2]) for p in samples]
        nearest = int(np.argmin(distances))
        room = house.room_at(float(samples[nearest][0]), float(samples[nearest][2]))
        # Seen from the path (same room, not behind a wall) and walked past (not at the very start or end).
        in_view = room is not None and room.index == piece.room
        if in_view and distances[nearest] <= LANDMARK_REACH_M and 1.0 < arc[nearest] < arc[-1] - 1.5:
            events.append(PathEvent("landmark", float(arc[nearest]), piece.name))
    return events


def segment_path(house: House, path: np.ndarray, start_rotation, goal: Furniture) -> PathSegmentation:
    samples, arc = resample_path(path)
    runs = _room_runs(house, samples, arc)
    rooms = [house.rooms[r[0]].room_type for r in runs]
    doors = [PathEvent("door", float((a[2] + b[1]) / 2.0), house.rooms[b[0]].room_type) for a, b in zip(runs, runs[1:])]
    start_turn = None
    if len(samples) >= 2:
        ahead = samples[min(len(samples) - 1, 4)]  # one metre ahead: the first leg's direction
        start_turn = turn_word(heading_yaw(samples[0], ahead) - yaw_from_quat(start_rotation), 45.0)
    events = sorted(doors + _turn_events(samples, arc) + _landmark_events(house, samples, arc, goal),
                    key=lambda e: e.at_m)
    return PathSegmentation(
        start_room=rooms[0] if rooms else None,
        goal_room=house.rooms[goal.room].room_type,
        start_turn=start_turn,
        events=tuple(_thin_events(events)),
        goal_name=goal.name,
    )


def _thin_events(events: list[PathEvent]) -> list[PathEvent]:
    """Drop a turn right at a door (the door sentence carries it), then landmarks, to a readable length."""
    kept: list[PathEvent] = []
    for event in events:
        near_door = any(e.kind == "door" and abs(e.at_m - event.at_m) < 0.75 for e in events)
        if event.kind == "turn" and near_door:
            continue
        kept.append(event)
    seen_landmark_rooms: set[float] = set()
    result = []
    for event in kept:
        if event.kind == "landmark":
            bucket = round(event.at_m / 3.0)  # at most one landmark per 3 m of path
            if bucket in seen_landmark_rooms:
                continue
            seen_landmark_rooms.add(bucket)
        result.append(event)
    for kind in ("landmark", "turn"):  # doors (rooms passed through) are kept longest
        while len(result) > MAX_MIDDLE_EVENTS and any(e.kind == kind for e in result):
            result.remove([e for e in result if e.kind == kind][-1])
    return result[:MAX_MIDDLE_EVENTS]


# ----------------------------------------------------------------------------------- phrasing

START_TURN = {
    "left": ("turn left", "turn to your left"),
    "right": ("turn right", "turn to your right"),
    "around": ("turn around", "turn to face the other way"),
}
START_EXIT = ("exit the {room}", "walk out of the {room}", "leave the {room}", "go out of the {room}")
START_SAME_ROOM = ("walk across the {room}", "move through the {room}", "head across the {room}")
DOOR = ("go through the doorway into the {room}", "enter the {room}", "walk into the {room}",
        "continue into the {room}")
TURN = ("turn {dir}", "take a {dir}", "make a {dir} turn")
LANDMARK = ("walk past the {name}", "go past the {name}", "pass the {name}", "walk by the {name}")
END = ("stop next to the {goal} in the {room}", "stop by the {goal} in the {room}",
       "wait next to the {goal} in the {room}", "stop when you reach the {goal} in the {room}")
JOINERS = (" and ", ", then ", " and then ")


def _choose(rng: np.random.Generator, options: tuple[str, ...], **values: str) -> str:
    return options[int(rng.integers(len(options)))].format(**values)


def _event_clause(event: PathEvent, rng: np.random.Generator) -> str:
    if event.kind == "door":
        return _choose(rng, DOOR, room=event.detail)
    if event.kind == "turn":
        return _choose(rng, TURN, dir=event.detail)
    return _choose(rng, LANDMARK, name=event.detail)


def _clauses(segmentation: PathSegmentation, rng: np.random.Generator) -> list[str]:
    """Start turn, then events in walking order; "exit the <start room>" goes right before the first door
    (landmarks and turns inside the start room come before it)."""
    clauses = []
    if segmentation.start_turn is not None:
        clauses.append(_choose(rng, START_TURN[segmentation.start_turn]))
    doors = [i for i, e in enumerate(segmentation.events) if e.kind == "door"]
    exit_at = doors[0] if doors else 0
    leaves = segmentation.start_room != segmentation.goal_room or bool(doors)
    for index, event in enumerate(segmentation.events):
        if index == exit_at and segmentation.start_room is not None:
            clauses.append(_choose(rng, START_EXIT if leaves else START_SAME_ROOM, room=segmentation.start_room))
        clauses.append(_event_clause(event, rng))
    if not segmentation.events and segmentation.start_room is not None:
        clauses.append(_choose(rng, START_EXIT if leaves else START_SAME_ROOM, room=segmentation.start_room))
    clauses.append(_choose(rng, END, goal=segmentation.goal_name, room=segmentation.goal_room or "room"))
    return clauses


def render_instruction(segmentation: PathSegmentation, rng: np.random.Generator) -> str:
    """Sentences of two or three clauses each, joined with varied conjunctions."""
    clauses = _clauses(segmentation, rng)
    sentences = []
    while clauses:
        take = 3 if len(clauses) == 3 or (len(clauses) > 4 and rng.random() < 0.3) else 2
        group, clauses = clauses[:take], clauses[take:]
        text = group[0]
        for position, clause in enumerate(group[1:], start=1):
            # "a, b and c": a comma before all but the last clause of a sentence.
            text += (", " if position < len(group) - 1 else _choose(rng, JOINERS)) + clause
        sentences.append(text[0].upper() + text[1:] + ".")
    return " ".join(sentences)


def instruction_for_path(house: House, path: np.ndarray, start_rotation, goal: Furniture,
                         rng: np.random.Generator) -> str:
    """The instruction for walking `path` (the reference path) to stop next to `goal`."""
    return render_instruction(segment_path(house, path, start_rotation, goal), rng)
