"""What a procedural house is made of: room types with their materials, furniture categories, colours.

Everything here is constant data. Room materials are distinct per room type so a single frame tells
which kind of room the agent is in; furniture heights vary on purpose (the 1.25 m camera sees over a
table but not over a shelf), and every category lists the room types it typically appears in.
"""

from __future__ import annotations

from dataclasses import dataclass

RGB = tuple[int, int, int]

CEILING_RGB: RGB = (242, 240, 235)


@dataclass(frozen=True)
class RoomType:
    name: str
    wall_rgb: RGB
    floor_rgb: RGB
    required: tuple[str, ...]  # furniture categories every room of this type gets (if they fit)
    optional: tuple[str, ...]  # categories drawn at random to fill the room


@dataclass(frozen=True)
class FurnitureSpec:
    category: str
    width: float  # metres along the wall it stands against (or along x when free-standing)
    depth: float  # metres away from the wall
    height: float  # metres; below CAMERA_HEIGHT (1.25 m) it is seen over
    against_wall: bool  # False: free-standing in the middle of the room (tables)


ROOM_TYPE_LIST: tuple[RoomType, ...] = (
    RoomType("kitchen", (240, 228, 110), (150, 152, 160), ("fridge", "stove"), ("counter", "sink", "table", "chair", "cabinet", "plant")),
    RoomType("bedroom", (160, 185, 230), (135, 95, 60), ("bed",), ("wardrobe", "nightstand", "dresser", "desk", "lamp", "armchair", "tv", "plant")),
    RoomType("bathroom", (180, 232, 228), (236, 236, 236), ("toilet", "sink"), ("bathtub", "cabinet", "washing machine", "plant")),
    RoomType("living room", (226, 180, 140), (105, 70, 45), ("sofa", "tv"), ("armchair", "coffee table", "shelf", "plant", "lamp", "cabinet")),
    RoomType("dining room", (205, 150, 150), (185, 150, 100), ("table",), ("chair", "cabinet", "plant", "shelf", "lamp")),
    RoomType("office", (175, 210, 165), (80, 88, 112), ("desk",), ("chair", "shelf", "armchair", "plant", "lamp", "cabinet")),
    RoomType("hallway", (222, 222, 208), (195, 100, 85), (), ("plant", "bench", "coat rack", "shelf", "cabinet")),
    RoomType("laundry room", (215, 165, 225), (120, 130, 110), ("washing machine",), ("sink", "cabinet", "shelf")),
)
ROOM_TYPES: dict[str, RoomType] = {room_type.name: room_type for room_type in ROOM_TYPE_LIST}

FURNITURE_LIST: tuple[FurnitureSpec, ...] = (
    FurnitureSpec("bed", 1.6, 2.0, 0.55, True),
    FurnitureSpec("wardrobe", 1.2, 0.6, 2.0, True),
    FurnitureSpec("nightstand", 0.5, 0.45, 0.55, True),
    FurnitureSpec("dresser", 1.0, 0.5, 1.0, True),
    FurnitureSpec("sofa", 2.0, 0.9, 0.85, True),
    FurnitureSpec("armchair", 0.85, 0.85, 0.9, True),
    FurnitureSpec("tv", 1.2, 0.45, 1.2, True),
    FurnitureSpec("coffee table", 1.0, 0.6, 0.45, False),
    FurnitureSpec("table", 1.6, 0.9, 0.75, False),
    FurnitureSpec("chair", 0.5, 0.5, 0.9, True),
    FurnitureSpec("fridge", 0.8, 0.7, 1.85, True),
    FurnitureSpec("stove", 0.7, 0.65, 0.9, True),
    FurnitureSpec("counter", 1.4, 0.65, 0.9, True),
    FurnitureSpec("toilet", 0.45, 0.7, 0.75, True),
    FurnitureSpec("sink", 0.6, 0.5, 0.9, True),
    FurnitureSpec("bathtub", 1.7, 0.75, 0.6, True),
    FurnitureSpec("washing machine", 0.65, 0.65, 0.85, True),
    FurnitureSpec("desk", 1.3, 0.7, 0.75, True),
    FurnitureSpec("shelf", 1.0, 0.4, 1.9, True),
    FurnitureSpec("cabinet", 0.9, 0.45, 1.0, True),
    FurnitureSpec("plant", 0.5, 0.5, 1.1, True),
    FurnitureSpec("lamp", 0.4, 0.4, 1.6, True),
    FurnitureSpec("bench", 1.2, 0.4, 0.45, True),
    FurnitureSpec("coat rack", 0.5, 0.5, 1.8, True),
)
FURNITURE: dict[str, FurnitureSpec] = {spec.category: spec for spec in FURNITURE_LIST}

# Named colours for furniture: instructions say "the red sofa", so each name must look like itself.
PALETTE: dict[str, RGB] = {
    "red": (200, 40, 40),
    "blue": (40, 70, 200),
    "green": (40, 150, 60),
    "yellow": (235, 205, 40),
    "white": (245, 245, 245),
    "black": (30, 30, 30),
    "brown": (120, 75, 40),
    "grey": (128, 128, 128),
    "orange": (235, 125, 30),
    "purple": (120, 50, 160),
    "pink": (240, 140, 180),
    "teal": (30, 140, 140),
}


def furniture_for_room(room_type: str) -> tuple[str, ...]:
    """All categories that may appear in a room of this type (required first)."""
    spec = ROOM_TYPES[room_type]
    return spec.required + spec.optional
