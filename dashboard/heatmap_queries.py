"""The Heatmap page's reads: occupancy binned on a grid, and zone dwell times, aggregated by the database.

Occupancy is every stored observation's centroid put in a cell of a
``cols × rows`` grid over the camera's frame by integer division in SQL and
counted per cell (``GROUP BY``), one query per camera on the store's
``(camera_id, ts)`` index: at most ``cols × rows`` rows come back however many
observations the window holds. Past :data:`MAX_EXACT_ROWS` observations (a
month of a busy camera) every ``step``-th is counted, so a page stays under
about a second; the exact total is still given. Dwell times are the ``value`` of ``zone_exit``
events, the seconds between a track's enter and exit of the zone
(:meth:`analytics.analyzer.Analyzer._zone_event`), histogrammed in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st
from sqlalchemy import Integer, cast, func, select
from sqlalchemy.sql import ColumnElement

from dashboard.queries import TTL_S, engine
from storage.schema import cameras, events, observations

GRID = (64, 36)  # cells across, cells down: 20 px squares on a 1280×720 frame
DWELL_KIND = "zone_exit"
MAX_EXACT_ROWS = 50_000  # observations per camera counted one by one; a longer window is sampled
SAMPLE_BLOCK = 512  # consecutive observation ids sampled together (see occupancy_grid)
NICE_BINS_S = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)

Ids = tuple[int, ...]


def _cell(expr: ColumnElement, url: str) -> ColumnElement:
    """The whole part of a number (a cell index): PostgreSQL rounds on CAST, SQLite truncates, floor() agrees on both."""
    return cast(func.floor(expr), Integer) if engine(url).dialect.name == "postgresql" else cast(expr, Integer)


@dataclass(frozen=True)
class Occupancy:
    """Observations per cell (``rows × cols``) of one camera in a window.

    ``counts`` counts every ``step``-th block of stored observations (by id) and is scaled
    back by ``step``: a long window is sampled so the page stays fast. ``total``
    is the exact number of observations in the window.
    """

    counts: np.ndarray
    total: int
    step: int


@st.cache_data(ttl=TTL_S, show_spinner=False)
def occupancy_grid(
    url: str, camera_id: int, since: float, until: float, size: tuple[int, int], class_name: str | None = None,
    grid: tuple[int, int] = GRID, max_rows: int = MAX_EXACT_ROWS, block: int = SAMPLE_BLOCK,
) -> Occupancy:  # fmt: skip
    """Observations whose centroid fell in each cell of a frame of ``size`` (w, h), from every one in the window
    up to ``max_rows``, else from every ``step``-th block of ``block`` consecutive ids: the filter is read off
    the index, and whole blocks (rows written together, on the same pages) are read, so a sample of a seventh
    reads about a seventh of the pages. Centroids outside the frame (a box cut by its edge) count in the nearest
    edge cell.
    """
    (cols, rows), (width, height) = grid, size
    o = observations.c
    where = [o.camera_id == camera_id, o.ts >= since, o.ts < until]
    if class_name is not None:
        where.append(o.class_name == class_name)
    gx, gy = _cell(o.cx * cols / width, url).label("gx"), _cell(o.cy * rows / height, url).label("gy")
    with engine(url).connect() as conn:
        total = conn.execute(select(func.count()).where(*where)).scalar_one()  # index only
        step = max(1, -(-total // max_rows))
        sampled = [*where, (o.id // block) % step == 0] if step > 1 else where
        cells = conn.execute(select(gx, gy, func.count().label("n")).where(*sampled).group_by(gx, gy)).all()
    counts = np.zeros((rows, cols), np.int64)
    for x, y, n in cells:
        counts[min(max(int(y), 0), rows - 1), min(max(int(x), 0), cols - 1)] += n * step
    return Occupancy(counts, total, step)


def bin_width(longest_s: float, bins: int = 20) -> float:
    """A round bin width (seconds) that puts ``longest_s`` in about ``bins`` bins at most."""
    return next((w for w in NICE_BINS_S if longest_s / w < bins), NICE_BINS_S[-1])


def _dwell_filter(ids: Ids, since: float, until: float) -> list[ColumnElement]:
    e = events.c
    return [e.camera_id.in_(ids), e.ts >= since, e.ts < until, e.kind == DWELL_KIND, e.zone.is_not(None), e.value.is_not(None)]


@st.cache_data(ttl=TTL_S, show_spinner=False)
def dwell_summary(url: str, ids: Ids, since: float, until: float) -> pd.DataFrame:
    """Per camera and zone: exits in the window and their mean and longest dwell (s)."""
    e = events.c
    stmt = (
        select(cameras.c.name.label("camera"), e.zone, func.count().label("exits"), func.avg(e.value).label("mean_s"),
               func.max(e.value).label("longest_s"))  # fmt: skip
        .join(cameras, cameras.c.id == e.camera_id)
        .where(*_dwell_filter(ids, since, until))
        .group_by(cameras.c.name, e.zone)
        .order_by(cameras.c.name, e.zone)
    )
    with engine(url).connect() as conn:
        return pd.read_sql(stmt, conn)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def dwell_histogram(url: str, ids: Ids, since: float, until: float, width_s: float) -> pd.DataFrame:
    """Exits per dwell bin ``[from_s, to_s)`` of ``width_s`` seconds, per camera and zone; empty bins left out."""
    e = events.c
    index = _cell(e.value / width_s + 1e-9, url).label("bin")  # 0.7 s / 0.1 s is 6.999…: bin 7
    stmt = (
        select(cameras.c.name.label("camera"), e.zone, index, func.count().label("exits"))
        .join(cameras, cameras.c.id == e.camera_id)
        .where(*_dwell_filter(ids, since, until))
        .group_by(cameras.c.name, e.zone, index)
        .order_by(cameras.c.name, e.zone, index)
    )
    with engine(url).connect() as conn:
        frame = pd.read_sql(stmt, conn)
    frame["from_s"] = frame["bin"] * width_s
    frame["to_s"] = frame.from_s + width_s
    return frame[["camera", "zone", "from_s", "to_s", "exits"]]
