"""The dashboard's reads: aggregates computed by the database, on the store's (camera, time) indexes.

Every query here returns at most a few thousand rows however large the store
is: counts are bucketed in SQL, size histograms and percentiles are grouped in
SQL, lists are limited. Each camera filter is an ``IN`` on ``camera_id`` so the
``(camera_id, ts)`` indexes serve it even for "all cameras". The engine is
shared per URL (``st.cache_resource``) and results live a few seconds
(``st.cache_data``): several operators looking at the same page cost one query.

SQL that differs between SQLite and PostgreSQL (floor, JSON fields, two-argument
min) goes through :func:`_floor`, :func:`_json_text` and ``size_histogram``'s ``smaller``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import Engine, Float, Integer, case, cast, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql import ColumnElement, Select

from analytics.records import SIZE_FIELDS
from storage.engine import open_engine
from storage.export import unique_counts
from storage.geometry import GEOMETRY_KEYS, load_geometry
from storage.schema import (
    alarms,
    camera_geometry,
    cameras,
    counts,
    counts_hourly,
    deliveries,
    events,
    observations,
    runs,
    tracks,
)
from storage.store import Store

TTL_S = 10  # how long a query result is reused; pages that must show a change (acknowledge, save) clear their caches
MAX_ROWS = 1000  # longest list a page shows

Ids = tuple[int, ...]


@st.cache_resource(show_spinner=False)
def engine(url: str) -> Engine:
    """One pool per store URL for the whole server, not one per page view; the store migrated once, first."""
    return open_engine(url)


def _read(url: str, stmt: Select, **dtypes: str) -> pd.DataFrame:
    with engine(url).connect() as conn:
        return pd.read_sql(stmt, conn, dtype=dtypes or None)


def _floor(expr: ColumnElement, url: str) -> ColumnElement:
    """floor() of a non-negative number: PostgreSQL rounds on CAST, SQLite may lack floor() but truncates on CAST."""
    return func.floor(expr) if engine(url).dialect.name == "postgresql" else cast(expr, Integer)


def _json_text(column: ColumnElement, key: str, url: str) -> ColumnElement:
    """One top-level field of a JSON text column, as text."""
    if engine(url).dialect.name == "postgresql":
        return cast(column, postgresql.JSONB)[key].astext
    return func.json_extract(column, f"$.{key}")


def to_time(ts: pd.Series) -> pd.Series:
    return pd.to_datetime(ts, unit="s", utc=True)


# -- cameras and time --------------------------------------------------------------------------------------------


@st.cache_data(ttl=TTL_S, show_spinner=False)
def camera_ids(url: str) -> dict[str, int]:
    """Camera name → id, in name order."""
    with engine(url).connect() as conn:
        return {name: cid for cid, name in conn.execute(select(cameras.c.id, cameras.c.name).order_by(cameras.c.name))}


@st.cache_data(ttl=TTL_S, show_spinner=False)
def data_extent(url: str, ids: Ids) -> tuple[float, float] | None:
    """Earliest and latest count or event time of these cameras; each MIN/MAX is one index seek per camera."""
    lows, highs = [], []
    with engine(url).connect() as conn:
        for table in (counts, events):
            for cid in ids:
                low, high = conn.execute(select(func.min(table.c.ts), func.max(table.c.ts)).where(table.c.camera_id == cid)).one()
                if low is not None:
                    lows.append(low)
                    highs.append(high)
    return (min(lows), max(highs)) if lows else None


@st.cache_data(ttl=TTL_S, show_spinner=False)
def known_classes(url: str) -> list[str]:
    with engine(url).connect() as conn:
        return list(conn.execute(select(tracks.c.class_name).distinct().order_by(tracks.c.class_name)).scalars())


# -- counts ------------------------------------------------------------------------------------------------------


@st.cache_data(ttl=TTL_S, show_spinner=False)
def count_series(url: str, ids: Ids, since: float, until: float, bucket_s: float, peak: bool) -> pd.DataFrame:
    """Visible objects per time bucket, class and zone (None: whole frame), summed over cameras.

    Each camera's samples in a bucket are averaged (or their peak taken) first,
    then cameras are added: two cameras seeing 3 people each show 6. Buckets of
    whole hours read the store's hourly rollup (``counts_hourly``), so a month is
    720 rows per series instead of millions of samples; its hours are whole, so
    the window's first and last hour count in full.
    """
    if bucket_s % 3600 == 0:
        h = counts_hourly.c
        bucket = (_floor(h.hour_ts / bucket_s, url) * bucket_s).label("bucket")
        value = (func.max(h.visible_max) if peak else func.sum(h.visible_sum) / func.sum(h.samples)).label("visible")
        zone = case((h.zone == "", None), else_=h.zone).label("zone")
        stmt = (
            select(bucket, h.camera_id, h.class_name, zone, value)
            .where(h.camera_id.in_(ids), h.hour_ts >= since - since % 3600, h.hour_ts < until)
            .group_by(bucket, h.camera_id, h.class_name, h.zone)
        )
    else:
        bucket = (_floor(counts.c.ts / bucket_s, url) * bucket_s).label("bucket")
        value = (func.max(counts.c.visible) if peak else func.avg(cast(counts.c.visible, Float))).label("visible")
        stmt = (
            select(bucket, counts.c.camera_id, counts.c.class_name, counts.c.zone, value)
            .where(counts.c.camera_id.in_(ids), counts.c.ts >= since, counts.c.ts < until)
            .group_by(bucket, counts.c.camera_id, counts.c.class_name, counts.c.zone)
        )
    frame = _read(url, stmt)
    frame = frame.groupby(["bucket", "class_name", "zone"], dropna=False, as_index=False)["visible"].sum()
    frame.insert(0, "time", to_time(frame.bucket))
    return frame.drop(columns="bucket").sort_values(["time", "class_name"]).reset_index(drop=True)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def line_series(url: str, ids: Ids, since: float, until: float, bucket_s: float) -> pd.DataFrame:
    """Line crossings per time bucket, line, class and direction (from ``line_cross`` events)."""
    bucket = (_floor(events.c.ts / bucket_s, url) * bucket_s).label("bucket")
    direction = _json_text(events.c.values_json, "direction", url).label("direction")
    stmt = (
        select(bucket, events.c.line, events.c.class_name, direction, func.count().label("crossings"))
        .where(events.c.camera_id.in_(ids), events.c.ts >= since, events.c.ts < until, events.c.kind == "line_cross")
        .group_by(bucket, events.c.line, events.c.class_name, direction)
        .order_by(bucket)
    )
    frame = _read(url, stmt)
    frame.insert(0, "time", to_time(frame.bucket))
    return frame.drop(columns="bucket")


@st.cache_data(ttl=TTL_S, show_spinner=False)
def unique_per_class(url: str, cameras_shown: tuple[str, ...], since: float, until: float) -> dict[str, int]:
    """Distinct objects per class seen in the window (analytics' definition: confirmed tracks overlapping it)."""
    totals: dict[str, int] = {}
    for camera in cameras_shown:
        for name, n in unique_counts(url, since=since, until=until, camera=camera).items():
            totals[name] = totals.get(name, 0) + n
    return dict(sorted(totals.items()))


# -- sizes -------------------------------------------------------------------------------------------------------


def _sized_tracks(ids: Ids, since: float, until: float, measure: str) -> tuple[ColumnElement, list[ColumnElement]]:
    """A track's median of ``measure`` and the filters for tracks *seen* in the window that have one."""
    if measure not in SIZE_FIELDS:
        raise ValueError(f"unknown measure {measure!r}: one of {', '.join(SIZE_FIELDS)}")
    value = tracks.c[f"{measure}_median"]
    where = [tracks.c.camera_id.in_(ids), tracks.c.first_ts < until, tracks.c.last_ts >= since, value.is_not(None)]
    return value, where


PERCENTILES = (5, 25, 50, 75, 95)


SIZE_ORDERS = ("largest first", "smallest first", "newest first")


@st.cache_data(ttl=TTL_S, show_spinner=False)
def size_violations(url: str, ids: Ids, since: float, until: float) -> pd.DataFrame:
    """``size_rule`` events in the window: which track broke which rule, by how much."""
    stmt = (
        select(
            events.c.id, cameras.c.name.label("camera"), events.c.run_id, events.c.track_id, events.c.class_name,
            events.c.rule, events.c.value, events.c.unit, events.c.values_json, events.c.snapshot, events.c.ts,
        )  # fmt: skip
        .join(cameras, cameras.c.id == events.c.camera_id)
        .where(events.c.camera_id.in_(ids), events.c.ts >= since, events.c.ts < until, events.c.kind == "size_rule")
        .order_by(events.c.ts.desc())
        .limit(MAX_ROWS)
    )
    frame = _read(url, stmt)
    bounds = frame.pop("values_json").map(json.loads)
    frame["measure"] = bounds.map(lambda v: v.get("measure"))
    frame["min"] = bounds.map(lambda v: v.get("min"))
    frame["max"] = bounds.map(lambda v: v.get("max"))
    frame.insert(1, "time", to_time(frame.pop("ts")))
    return frame


# -- alarms ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlarmFilter:
    """What the Alarms page filters on; an empty tuple (but ``camera_ids``) means any value. ``[since, until)``."""

    camera_ids: Ids
    since: float
    until: float
    states: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()

    def conditions(self) -> list[ColumnElement]:
        """The WHERE of this filter, the same one :meth:`storage.store.Store.acknowledge_where` updates with."""
        return Store.alarm_conditions(self.camera_ids, self.since, self.until, states=self.states,
                                      severities=self.severities, rules=self.rules, zones=self.zones,
                                      classes=self.classes)  # fmt: skip


@st.cache_data(ttl=TTL_S, show_spinner=False)
def alarm_options(url: str, ids: Ids, since: float, until: float) -> dict[str, list[str]]:
    """Values the alarm filters offer: rules, severities, zones/lines and classes of the window's alarms."""
    where = Store.alarm_conditions(ids, since, until)
    joined = alarms.join(events, events.c.id == alarms.c.event_id)
    columns = {"rule": alarms.c.rule, "severity": alarms.c.severity, "zone": events.c.zone, "line": events.c.line,
               "class": events.c.class_name}  # fmt: skip
    found = {}
    with engine(url).connect() as conn:
        for name, column in columns.items():
            stmt = select(column).distinct().select_from(joined).where(*where, column.is_not(None))
            found[name] = sorted(conn.execute(stmt).scalars())
    return {"rules": found["rule"], "severities": found["severity"], "zones": sorted({*found["zone"], *found["line"]}),
            "classes": found["class"]}  # fmt: skip


@st.cache_data(ttl=TTL_S, show_spinner=False)
def alarm_totals(url: str, f: AlarmFilter) -> tuple[int, int]:
    """How many alarms match ``f``, and how many of them are open (what a bulk acknowledge would change)."""
    stmt = select(func.count(), func.coalesce(func.sum(case((alarms.c.state == "open", 1), else_=0)), 0))
    with engine(url).connect() as conn:
        total, still_open = conn.execute(stmt.select_from(alarms).where(*f.conditions())).one()
    return int(total), int(still_open)


ALARM_COLUMNS = (
    alarms.c.id, alarms.c.ts, cameras.c.name.label("camera"), alarms.c.rule, alarms.c.severity, alarms.c.track_id,
    alarms.c.track_uid, alarms.c.state, alarms.c.acknowledged_by, alarms.c.acknowledged_ts, events.c.kind,
    events.c.zone, events.c.line, events.c.class_name, events.c.value, events.c.unit, events.c.snapshot,
)  # fmt: skip


@st.cache_data(ttl=TTL_S, show_spinner=False)
def alarm_page(url: str, f: AlarmFilter, offset: int, limit: int) -> pd.DataFrame:
    """One page of the alarms matching ``f``, newest first (ties by id, so pages never overlap), with their event.

    The page's ids are picked on ``alarms`` alone (narrow rows sorted), then only those rows are joined.
    """
    keys = (
        select(alarms.c.id.label("key"))
        .where(*f.conditions())
        .order_by(alarms.c.ts.desc(), alarms.c.id)
        .offset(offset)
        .limit(limit)
        .subquery()
    )
    stmt = (
        select(*ALARM_COLUMNS)
        .select_from(keys.join(alarms, alarms.c.id == keys.c.key))
        .join(events, events.c.id == alarms.c.event_id)
        .join(cameras, cameras.c.id == alarms.c.camera_id)
        .order_by(alarms.c.ts.desc(), alarms.c.id)
    )
    return _read(url, stmt, track_id="Int64")


def alarms_after(url: str, f: AlarmFilter, after: float) -> int:
    """Alarms matching ``f`` but its time window that are newer than ``after``: the auto-refresh's new-alarm count.

    Not cached (it is what must change), one COUNT on the (camera, time) index.
    """
    since = math.nextafter(after, math.inf)
    where = Store.alarm_conditions(f.camera_ids, since, math.inf, states=f.states, severities=f.severities,
                                   rules=f.rules, zones=f.zones, classes=f.classes)  # fmt: skip
    with engine(url).connect() as conn:
        return int(conn.execute(select(func.count()).select_from(alarms).where(*where)).scalar_one())


def newest_alarm_ts(url: str, f: AlarmFilter) -> float | None:
    """Time of the newest alarm matching ``f`` but its window's end (the mark new alarms are counted from)."""
    where = Store.alarm_conditions(f.camera_ids, f.since, math.inf, states=f.states, severities=f.severities,
                                   rules=f.rules, zones=f.zones, classes=f.classes)  # fmt: skip
    with engine(url).connect() as conn:
        return conn.execute(select(func.max(alarms.c.ts)).where(*where)).scalar_one()


@st.cache_data(ttl=TTL_S, show_spinner=False)
def alarm_series(url: str, f: AlarmFilter, bucket_s: float) -> pd.DataFrame:
    """Alarms per time bucket and severity, counted by the database."""
    bucket = (_floor(alarms.c.ts / bucket_s, url) * bucket_s).label("bucket")
    stmt = (
        select(bucket, alarms.c.severity, func.count().label("alarms"))
        .where(*f.conditions())
        .group_by(bucket, alarms.c.severity)
        .order_by(bucket)
    )
    frame = _read(url, stmt)
    frame.insert(0, "time", to_time(frame.pop("bucket")))
    return frame


@st.cache_data(ttl=TTL_S, show_spinner=False)
def alarm_detail(url: str, alarm_id: str) -> dict[str, Any] | None:
    """One alarm with its camera and every column of its event (clip and context paths among them where stored)."""
    shown = {c.name for c in ALARM_COLUMNS}
    extra = [c.label(f"event_{c.name}") for c in events.c if c.name not in shown]
    stmt = (
        select(*ALARM_COLUMNS, alarms.c.camera_id, alarms.c.run_id, *extra)
        .join(events, events.c.id == alarms.c.event_id)
        .join(cameras, cameras.c.id == alarms.c.camera_id)
        .where(alarms.c.id == alarm_id)
    )
    with engine(url).connect() as conn:
        row = conn.execute(stmt).one_or_none()
    return None if row is None else dict(row._mapping)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def alarm_deliveries(url: str, alarm_ids: tuple[str, ...]) -> pd.DataFrame:
    """The outbox rows of these alarms (one per channel): state, attempts, last status and error."""
    columns = ("alarm_id", "channel", "state", "attempts", "last_status", "last_error")
    if not alarm_ids:
        return pd.DataFrame(columns=list(columns))
    stmt = select(*(deliveries.c[c] for c in columns)).where(deliveries.c.alarm_id.in_(alarm_ids)).order_by(deliveries.c.channel)
    return _read(url, stmt, last_status="Int64")


@st.cache_data(ttl=TTL_S, show_spinner=False)
def dead_letters(url: str, ids: Ids, limit: int = MAX_ROWS) -> pd.DataFrame:
    """Deliveries of these cameras that gave up (newest first, at most ``limit``), with the response that decided it.

    The columns of :func:`delivery.outbox.outbox_status`, read on the shared engine through the
    ``deliveries_state_next`` index (the outbox's own reader opens an engine per call).
    """
    d = deliveries.c
    stmt = (
        select(d.created_ts, d.alarm_id, cameras.c.name.label("camera"), alarms.c.rule, d.channel, d.attempts,
               d.last_status, d.last_error, d.response)  # fmt: skip
        .join(alarms, alarms.c.id == d.alarm_id)
        .join(cameras, cameras.c.id == d.camera_id)
        .where(d.state == "dead", d.camera_id.in_(ids))
        .order_by(d.created_ts.desc())
        .limit(limit)
    )
    frame = _read(url, stmt, last_status="Int64")
    frame.insert(0, "created", to_time(frame.pop("created_ts")))
    return frame


# -- tracks ------------------------------------------------------------------------------------------------------


@st.cache_data(ttl=TTL_S, show_spinner=False)
def camera_runs(url: str, camera_id: int) -> pd.DataFrame:
    """Runs of a camera, newest first, with how many tracks each has."""
    per_run = select(tracks.c.run_id, func.count().label("tracks")).group_by(tracks.c.run_id).subquery()
    stmt = (
        select(runs.c.id, runs.c.started_ts, runs.c.status, runs.c.frames, runs.c.source,
               func.coalesce(per_run.c.tracks, 0).label("tracks"))  # fmt: skip
        .outerjoin(per_run, per_run.c.run_id == runs.c.id)
        .where(runs.c.camera_id == camera_id)
        .order_by(runs.c.started_ts.desc())
    )
    frame = _read(url, stmt, frames="Int64")
    frame["started"] = to_time(frame.started_ts)
    return frame


@st.cache_data(ttl=TTL_S, show_spinner=False)
def run_tracks(url: str, run_id: int, limit: int = MAX_ROWS) -> pd.DataFrame:
    """Tracks of a run, longest-seen first (at most ``limit``): the ones worth exploring come first."""
    stmt = (
        select(tracks.c.track_id, tracks.c.class_name, tracks.c.first_ts, tracks.c.last_ts, tracks.c.frames_seen)
        .where(tracks.c.run_id == run_id)
        .order_by(tracks.c.frames_seen.desc(), tracks.c.track_id)
        .limit(limit)
    )
    return _read(url, stmt)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def track_summary(url: str, run_id: int, track_id: int) -> dict[str, Any] | None:
    with engine(url).connect() as conn:
        row = conn.execute(select(tracks).where(tracks.c.run_id == run_id, tracks.c.track_id == track_id)).one_or_none()
    return None if row is None else dict(row._mapping)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def trajectory(url: str, run_id: int, track_id: int) -> pd.DataFrame:
    """A track's stored observations in time order (the (run, track) index): centroid, box and sizes."""
    cols = ("ts", "frame", "cx", "cy", "x0", "y0", "x1", "y1", "area_px", *SIZE_FIELDS, "unit", "clean", "speed", "zones")
    stmt = (
        select(*(observations.c[c] for c in cols))
        .where(observations.c.run_id == run_id, observations.c.track_id == track_id)
        .order_by(observations.c.ts)
    )
    frame = _read(url, stmt)
    frame.insert(0, "time", to_time(frame.ts))
    return frame


@st.cache_data(ttl=TTL_S, show_spinner=False)
def track_events(url: str, camera_id: int, run_id: int, track_id: int, first_ts: float, last_ts: float) -> pd.DataFrame:
    """Events of one track, found through the (camera, time) index over the track's lifetime."""
    stmt = (
        select(events.c.ts, events.c.kind, events.c.zone, events.c.line, events.c.rule, events.c.value, events.c.unit,
               events.c.values_json, events.c.snapshot)  # fmt: skip
        .where(events.c.camera_id == camera_id, events.c.ts >= first_ts - 1.0, events.c.ts <= last_ts + 60.0,
               events.c.run_id == run_id, events.c.track_id == track_id)  # fmt: skip
        .order_by(events.c.ts)
    )
    frame = _read(url, stmt)
    frame.insert(0, "time", to_time(frame.pop("ts")))
    return frame


# -- zones -------------------------------------------------------------------------------------------------------


@st.cache_data(ttl=TTL_S, show_spinner=False)
def latest_run(url: str, camera_id: int, camera: str) -> dict[str, Any] | None:
    """The camera's latest run: its source (as stored: credentials redacted) and the geometry it ran with."""
    stmt = select(runs.c.id, runs.c.source, runs.c.config_json).where(runs.c.camera_id == camera_id)
    with engine(url).connect() as conn:
        row = conn.execute(stmt.order_by(runs.c.started_ts.desc()).limit(1)).one_or_none()
    if row is None:
        return None
    config = json.loads(row.config_json)  # maskwatch run: ``camera``; maskwatch serve: one of ``cameras``
    sections = [*config.get("cameras", []), config.get("camera") or {}]
    section = next((c for c in sections if c.get("name") == camera), {})
    return {"run_id": row.id, "source": row.source, "geometry": {k: section.get(k, []) for k in GEOMETRY_KEYS}}


def saved_geometry(url: str, camera: str) -> tuple[dict[str, Any], float, str] | None:
    """The dashboard-edited geometry (storage.geometry), with when and by whom it was saved."""
    found = load_geometry(url, camera)
    if found is None:
        return None
    with engine(url).connect() as conn:
        by = conn.execute(select(camera_geometry.c.updated_by).where(camera_geometry.c.camera == camera)).scalar_one()
    return found[0], found[1], by


def clear_caches(*functions: Any) -> None:
    """Forget cached results after a write, so the page shows it at once."""
    for function in functions:
        function.clear()
