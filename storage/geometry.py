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
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from analytics.config import CameraConfig
from storage.engine import open_engine
from storage.schema import camera_geometry

GEOMETRY_KEYS = ("zones", "dynamic_zones", "lines")

Items = Sequence[dict[str, Any] | BaseModel]


def _validation_message(error: ValidationError) -> str:
    """Each bad key as ``zones.0.polygon: message``: what the editor shows next to the field."""
    parts = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(geometry)"
        parts.append(f"{key}: {'unknown key' if item['type'] == 'extra_forbidden' else item['msg']}")
    return "; ".join(parts)


def validate_geometry(camera: str, zones: Items, dynamic_zones: Items, lines: Items) -> dict[str, Any]:
    """The geometry as ``CameraConfig`` validates it (defaults filled in); ValueError naming each bad key."""
    try:
        config = CameraConfig.model_validate(
            {"name": camera, "zones": list(zones), "dynamic_zones": list(dynamic_zones), "lines": list(lines)}
        )
    except ValidationError as exc:
        raise ValueError(f"invalid geometry for camera {camera!r}: {_validation_message(exc)}") from None
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
