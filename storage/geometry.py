"""Camera geometry edited while the service runs: zones, dynamic zones and lines per camera, in the store.

The dashboard's zone editor writes here; the site YAML stays the starting point.
One row per camera (``camera_geometry``: camera name, ``geometry_json``,
``updated_ts``, ``updated_by``), keyed by the camera's *name* rather than the
``cameras`` table's id, so a camera can be drawn before its first run.

Contract with the running service (``maskwatch serve``):

- Poll :func:`load_geometry` for each camera every few seconds. ``None`` means
  nobody edited it: keep the YAML's zones, dynamic zones and lines.
- When ``updated_ts`` is newer than the one last applied, replace the camera's
  ``zones``, ``dynamic_zones`` and ``lines`` with the stored ones *as a whole*
  (``CameraConfig.model_validate({**yaml_camera, **geometry})``), between two
  frames, without a restart. Calibration, name and source stay the YAML's.
- The JSON was validated by the same pydantic models on save, so a stored
  geometry always validates; it holds exactly the keys ``zones``,
  ``dynamic_zones`` and ``lines`` with every default filled in.

The table is :data:`storage.schema.camera_geometry`, migrated like every other.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from analytics.config import CameraConfig
from storage.engine import open_engine
from storage.schema import camera_geometry

GEOMETRY_KEYS = ("zones", "dynamic_zones", "lines")

Items = Sequence[dict[str, Any] | BaseModel]
Point = tuple[float, float]


@dataclass(frozen=True)
class Problem:
    """One reason a geometry was refused: where (``zones.2.polygon``), which item (its name, if it has one), why."""

    key: str
    item: str | None
    message: str  # a plain sentence an operator can act on

    @property
    def sentence(self) -> str:
        text = self.message[:1].upper() + self.message[1:]
        return text if text.endswith((".", "!", "?")) else text + "."


class GeometryError(ValueError):
    """A refused geometry: ``str()`` names each bad key (for logs and the API); ``problems`` are for people."""

    def __init__(self, camera: str, problems: list[Problem]) -> None:
        self.camera, self.problems = camera, problems
        super().__init__(f"invalid geometry for camera {camera!r}: " + "; ".join(f"{p.key}: {p.message}" for p in problems))


# -- polygon checks: pydantic only counts the points; a zone must also be a simple (non-crossing) polygon -------


def _orientation(a: Point, b: Point, c: Point) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def _on_segment(a: Point, b: Point, p: Point) -> bool:
    """``p`` (collinear with a-b) lies within the segment's bounding box."""
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def segments_intersect(a: Point, b: Point, c: Point, d: Point) -> bool:
    """Segments a-b and c-d share at least one point (crossing, touching or overlapping)."""
    o1, o2, o3, o4 = _orientation(a, b, c), _orientation(a, b, d), _orientation(c, d, a), _orientation(c, d, b)
    if ((o1 > 0 and o2 < 0) or (o1 < 0 and o2 > 0)) and ((o3 > 0 and o4 < 0) or (o3 < 0 and o4 > 0)):
        return True
    return ((o1 == 0 and _on_segment(a, b, c)) or (o2 == 0 and _on_segment(a, b, d))
            or (o3 == 0 and _on_segment(c, d, a)) or (o4 == 0 and _on_segment(c, d, b)))  # fmt: skip


def polygon_problem(points: Sequence[Sequence[float]]) -> str | None:
    """Why ``points`` is no usable zone outline (a plain sentence), or None when it is a simple polygon.

    Simple means: at least 3 points, no two consecutive points equal, some area,
    and no edge meeting another except where neighbours share their vertex (so
    no crossing, no touching, no edge folding back over the previous one).
    """
    if len(points) < 3:
        return "A zone needs at least 3 points."
    pts = [(float(p[0]), float(p[1])) for p in points]
    n = len(pts)
    if any(pts[i] == pts[(i + 1) % n] for i in range(n)):
        return "Two neighbouring points of the zone are in the same place; remove one."
    if all(_orientation(pts[0], pts[1], p) == 0 for p in pts[2:]):
        return "The zone's points lie on one line, so it has no area; move a point."
    edges = [(pts[i], pts[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            (a, b), (c, d) = edges[i], edges[j]
            if j == i + 1 or (i == 0 and j == n - 1):  # neighbours share one vertex: they must not fold back
                shared, p, q = (b, a, d) if j == i + 1 else (a, b, c)
                folded = _orientation(p, shared, q) == 0 and (p[0] - shared[0]) * (q[0] - shared[0]) + (
                    p[1] - shared[1]) * (q[1] - shared[1]) > 0  # fmt: skip
                if folded:
                    return "The zone's edges cross each other; move a point."
            elif segments_intersect(a, b, c, d):
                return "The zone's edges cross each other; move a point."
    return None


def _plain(item: dict[str, Any]) -> str:
    """A pydantic error as the sentence a person reads (model validators already speak plainly)."""
    if item["type"] == "extra_forbidden":
        return "unknown key"
    message = str(item["msg"])
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _as_dict(item: dict[str, Any] | BaseModel) -> dict[str, Any]:
    return item.model_dump() if isinstance(item, BaseModel) else dict(item)


def _name(groups: dict[str, list[dict[str, Any]]], loc: tuple) -> str | None:
    if len(loc) >= 2 and loc[0] in groups and isinstance(loc[1], int) and loc[1] < len(groups[loc[0]]):
        name = groups[loc[0]][loc[1]].get("name")
        return str(name) if name is not None else None
    return None


def validate_geometry(camera: str, zones: Items, dynamic_zones: Items, lines: Items) -> dict[str, Any]:
    """The geometry as ``CameraConfig`` validates it (defaults filled in); :class:`GeometryError` naming each bad key.

    Beyond the models' own checks, every polygon zone must be a simple polygon
    (:func:`polygon_problem`): a crossing outline has no clear inside, so the
    service would count objects in a shape nobody meant.
    """
    groups = {"zones": [_as_dict(z) for z in zones], "dynamic_zones": [_as_dict(z) for z in dynamic_zones],
              "lines": [_as_dict(line) for line in lines]}  # fmt: skip
    problems, explained = [], set()
    for i, zone in enumerate(groups["zones"]):
        polygon = zone.get("polygon")
        if isinstance(polygon, list | tuple) and all(isinstance(p, list | tuple) and len(p) == 2 for p in polygon):
            try:
                why = polygon_problem(polygon)
            except (TypeError, ValueError):
                why = None  # not numbers: the model says so below
            if why is not None:
                problems.append(Problem(f"zones.{i}.polygon", _name(groups, ("zones", i)), why))
                explained.add(("zones", i))
    try:
        config = CameraConfig.model_validate({"name": camera, **groups})
    except ValidationError as exc:
        for item in exc.errors():
            loc = tuple(item["loc"])
            key = ".".join(str(p) for p in loc) or "(geometry)"
            if loc[:2] in explained:
                continue  # that zone's outline is already explained in plain words
            problems.append(Problem(key, _name(groups, loc), _plain(item)))
    if problems:
        raise GeometryError(camera, problems)
    return config.model_dump(mode="json", include=set(GEOMETRY_KEYS))


def save_geometry(url: str, camera: str, zones: Items, dynamic_zones: Items, lines: Items, user: str) -> float:
    """Validate and store a camera's whole geometry (replacing the previous one); returns its ``updated_ts``."""
    geometry = validate_geometry(camera, zones, dynamic_zones, lines)
    row = {"camera": camera, "geometry_json": json.dumps(geometry), "updated_ts": time.time(), "updated_by": user}
    engine = open_engine(url)
    try:
        insert = (postgresql if engine.dialect.name == "postgresql" else sqlite).insert(camera_geometry).values(row)
        upsert = insert.on_conflict_do_update(
            index_elements=["camera"], set_={k: insert.excluded[k] for k in ("geometry_json", "updated_ts", "updated_by")}
        )
        with engine.begin() as conn:
            conn.execute(upsert)
    finally:
        engine.dispose()
    return row["updated_ts"]


def load_geometry(url: str, camera: str) -> tuple[dict[str, Any], float] | None:
    """``({zones, dynamic_zones, lines}, updated_ts)`` last saved for ``camera``; None if never edited."""
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                select(camera_geometry.c.geometry_json, camera_geometry.c.updated_ts).where(camera_geometry.c.camera == camera)
            ).one_or_none()
    finally:
        engine.dispose()
    return None if row is None else (json.loads(row.geometry_json), row.updated_ts)
