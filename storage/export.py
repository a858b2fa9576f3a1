"""Store tables as pandas DataFrames for analysts, and CSV/Parquet exports.

Filters become SQL ``WHERE`` clauses on the store's (camera, time) indexes, so
"one camera, last hour" reads only those rows even when the store holds months.
Every frame gets the camera's ``name`` as ``camera`` and a time-zone-aware UTC
``time`` beside the raw epoch ``ts``; rows of tracks carry their ``track_uid``
(None in rows stored before the stores had one).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from sqlalchemy import Boolean, Double, Integer, Table, func, select

from storage.engine import open_engine
from storage.schema import alarms, cameras, counts, events, observations, tracks

TimeLike = dt.datetime | pd.Timestamp | str | float | int
TableName = Literal["tracks", "observations", "events", "alarms", "counts"]

_TABLES: dict[str, tuple[Table, str]] = {  # table, the time column its time filters and ``time`` use
    "tracks": (tracks, "first_ts"),
    "observations": (observations, "ts"),
    "events": (events, "ts"),
    "alarms": (alarms, "ts"),
    "counts": (counts, "ts"),
}


def to_epoch(value: TimeLike) -> float:
    """Epoch seconds from a datetime, Timestamp, ISO string or number; naive times are taken as UTC."""
    if isinstance(value, int | float):
        return float(value)
    stamp = pd.Timestamp(value)
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp).timestamp()


def _dtypes(table: Table) -> dict[str, str]:
    """Column dtypes that survive NULLs: a float column of only NULLs is still float (NaN), not object."""
    dtypes = {}
    for column in table.c:
        if isinstance(column.type, Double):
            dtypes[column.name] = "float64"
        elif isinstance(column.type, Boolean):
            dtypes[column.name] = "boolean"
        elif isinstance(column.type, Integer) and column.nullable:
            dtypes[column.name] = "Int64"
    return dtypes


def _query(
    url: str,
    name: TableName,
    since: TimeLike | None,
    until: TimeLike | None,
    camera: str | None,
    **equal: Any,
) -> pd.DataFrame:
    """Rows of one table with ``since <= time < until``, one camera and column equalities (None: no filter)."""
    table, time_column = _TABLES[name]
    ts = table.c[time_column]
    stmt = select(cameras.c.name.label("camera"), *table.c).join(cameras, cameras.c.id == table.c.camera_id)
    if since is not None:
        stmt = stmt.where(ts >= to_epoch(since))
    if until is not None:
        stmt = stmt.where(ts < to_epoch(until))
    if camera is not None:
        stmt = stmt.where(cameras.c.name == camera)
    stmt = stmt.where(*(table.c[column] == value for column, value in equal.items() if value is not None))
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            frame = pd.read_sql(stmt.order_by(ts, table.c.id), conn, dtype=_dtypes(table))
    finally:
        engine.dispose()
    frame.insert(1, "time", pd.to_datetime(frame[time_column], unit="s", utc=True))
    return frame


def load_events(
    url: str,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    camera: str | None = None,
    kind: str | None = None,
) -> pd.DataFrame:
    """Events, oldest first; ``values`` holds each event's decoded ``values_json`` dict."""
    frame = _query(url, "events", since, until, camera, kind=kind)
    frame["values"] = frame.pop("values_json").map(json.loads)
    return frame


def load_tracks(
    url: str,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    camera: str | None = None,
    class_name: str | None = None,
) -> pd.DataFrame:
    """Track summaries of tracks that *started* in the window (``time`` is ``first_ts``)."""
    return _query(url, "tracks", since, until, camera, class_name=class_name)


def load_observations(
    url: str,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    camera: str | None = None,
    class_name: str | None = None,
) -> pd.DataFrame:
    """Per-frame observations; sizes are NaN where the mask had no measurement."""
    return _query(url, "observations", since, until, camera, class_name=class_name)


def load_alarms(
    url: str,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    camera: str | None = None,
    state: Literal["open", "acknowledged"] | None = None,
) -> pd.DataFrame:
    """Alarms with their acknowledgement (who, when)."""
    return _query(url, "alarms", since, until, camera, state=state)


def load_counts(
    url: str,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    camera: str | None = None,
    class_name: str | None = None,
) -> pd.DataFrame:
    """Visible-object counts; ``zone`` is None for whole-frame counts."""
    return _query(url, "counts", since, until, camera, class_name=class_name)


def unique_counts(
    url: str,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    camera: str | None = None,
) -> dict[str, int]:
    """Distinct objects per class *seen* in ``[since, until)``: tracks whose life overlaps the window.

    Tracks exist in the store only once confirmed, so flickers never count; a
    track counts once however long it stays. Aggregated in SQL (GROUP BY class).
    """
    stmt = select(tracks.c.class_name, func.count()).join(cameras, cameras.c.id == tracks.c.camera_id)
    if since is not None:
        stmt = stmt.where(tracks.c.last_ts >= to_epoch(since))
    if until is not None:
        stmt = stmt.where(tracks.c.first_ts < to_epoch(until))
    if camera is not None:
        stmt = stmt.where(cameras.c.name == camera)
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(stmt.group_by(tracks.c.class_name).order_by(tracks.c.class_name)).all()
    finally:
        engine.dispose()
    return {name: int(n) for name, n in rows}


def export_table(
    url: str,
    table: TableName,
    path: Path,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    camera: str | None = None,
) -> int:
    """Write one table (with ``camera`` and ``time``) to ``path`` as .csv or .parquet; return rows written.

    Events keep ``values_json`` as text: a column of dicts has no faithful CSV form
    and no single Parquet type when events carry different keys.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"cannot export to {path.name!r}: the suffix must be .csv or .parquet, not {suffix!r}")
    if table not in _TABLES:
        raise ValueError(f"unknown table {table!r}: one of {', '.join(_TABLES)}")
    frame = _query(url, table, since, until, camera)
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return len(frame)
