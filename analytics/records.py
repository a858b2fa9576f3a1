"""What analytics hands to the store and to exporters: plain records, one per row.

Times are UTC epoch seconds (``ts``): the same float on SQLite and PostgreSQL,
compared and indexed without time-zone surprises; loaders turn them into
time-zone-aware pandas timestamps. Every size carries its ``unit``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, fields
from typing import Any, Literal

EventKind = Literal["zone_enter", "zone_exit", "dwell_exceeded", "line_cross", "size_rule", "count_threshold"]
Severity = Literal["info", "warning", "critical"]

SIZE_FIELDS = ("area", "perimeter", "length", "width", "diameter")


def new_id() -> str:
    """A random UUID (str): events and alarms keep it from creation to delivery."""
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class Measurement:
    """Sizes of one mask in the calibrated ``unit`` (area in unit²)."""

    area: float
    perimeter: float
    length: float  # longer side of the minimum-area rectangle
    width: float  # shorter side
    angle: float  # of the long side, degrees from the x axis in [0, 180), on the measuring plane
    diameter: float  # equivalent diameter: a circle with the same area
    unit: str
    clean: bool  # neither touching the image border nor another mask: counts toward track summaries


@dataclass(frozen=True, slots=True)
class ObservationRecord:
    """One confirmed track in one (sampled) frame."""

    ts: float
    frame: int
    pts: float
    track_id: int
    track_uid: str
    class_name: str
    score: float
    box: tuple[float, float, float, float]  # xyxy pixels
    cx: float  # mask centroid, pixels
    cy: float
    area_px: int
    size: Measurement | None = None
    speed: float | None = None  # centroid speed in unit/s (ground plane when calibrated)
    zones: tuple[str, ...] = ()  # zones the track is inside (after hysteresis)


@dataclass(frozen=True, slots=True)
class TrackRecord:
    """Running summary of one track, upserted as it grows.

    ``sizes`` maps each of :data:`SIZE_FIELDS` to ``(median, iqr)`` over clean
    measurements; empty until the first clean one.
    """

    track_id: int
    track_uid: str
    class_name: str
    first_ts: float
    last_ts: float
    first_frame: int
    last_frame: int
    frames_seen: int
    unit: str
    sizes: dict[str, tuple[float, float]] = field(default_factory=dict)
    size_samples: int = 0
    speed_median: float | None = None
    snapshot: str | None = None


@dataclass(frozen=True, slots=True)
class EventRecord:
    """Something an operator may care about, with the values that decided it."""

    kind: EventKind
    camera: str
    ts: float
    frame: int
    pts: float
    track_id: int | None = None  # small per-run id, for display
    track_uid: str | None = None  # unique across runs, cameras and restarts
    class_name: str | None = None
    zone: str | None = None
    line: str | None = None
    rule: str | None = None
    value: float | None = None  # the measured value that decided it (dwell s, size, count, ...)
    unit: str | None = None
    values: dict = field(default_factory=dict)  # everything else worth showing (direction, bounds, anchor id, ...)
    snapshot: str | None = None  # path relative to the snapshot folder: a tight crop around the object
    context_snapshot: str | None = None  # the same: the whole frame (downscaled), the object's mask outlined
    clip: str | None = None  # the same: an H.264 MP4 around the alarm this event raised (written seconds later)
    id: str = field(default_factory=new_id)


EVENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(EventRecord))  # every table of events has these


def json_default(value: Any) -> Any:
    """For ``json.dumps``: numpy scalars and arrays (from the tracker and analyzer) as their Python equivalents."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def event_row(event: EventRecord) -> dict[str, Any]:
    """The event by :data:`EVENT_COLUMNS` as plain Python values, ``values`` as JSON text: a row of any events table.

    Numpy scalars become ints and floats (drivers and CSV writers want those);
    ``values`` is text because its keys differ from event to event.
    """
    row = {}
    for name in EVENT_COLUMNS:
        value = getattr(event, name)
        row[name] = value.tolist() if hasattr(value, "tolist") else value
    row["values"] = json.dumps(event.values, default=json_default)
    return row


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    """An event promoted by an alarm rule; ``state`` goes open → acknowledged."""

    event_id: str
    rule: str
    severity: Severity
    camera: str
    ts: float
    track_id: int | None
    track_uid: str | None
    id: str = field(default_factory=new_id)
    state: Literal["open", "acknowledged"] = "open"
    channels: tuple[str, ...] = ()  # where to deliver it (webhook names, "mqtt"): one outbox row each


@dataclass(frozen=True, slots=True)
class CountRecord:
    """Objects visible at ``ts`` for one class, in the whole frame (``zone`` None) or one zone."""

    ts: float
    frame: int
    class_name: str
    zone: str | None
    visible: int
