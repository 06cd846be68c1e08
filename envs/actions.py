"""The discrete VLN-CE action space shared by every backend, the expert, the task and the agent."""

from __future__ import annotations

from enum import IntEnum


class Action(IntEnum):
    STOP = 0
    MOVE_FORWARD = 1
    TURN_LEFT = 2
    TURN_RIGHT = 3


NUM_ACTIONS = len(Action)
FORWARD_STEP_M = 0.25
TURN_ANGLE_DEG = 15.0


def validate_action(action: int) -> Action:
    """Return the Action for an int, or raise a ValueError naming the bad value."""
    try:
        return Action(int(action))
    except (ValueError, TypeError):
        raise ValueError(
            f"action {action!r} is outside the action space: expected 0 STOP, 1 MOVE_FORWARD, 2 TURN_LEFT, 3 TURN_RIGHT"
        ) from None
