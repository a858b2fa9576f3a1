"""Sizes page: per-class size distributions in real units, every measured track, and size-rule violations.

A track's size is the median (and IQR) of its clean measurements, in the
camera's calibrated unit as stored with the track. Cameras calibrated in
different units (mm on one, m on another) are brought to one unit per class
before anything is binned, ranked or sorted (:func:`display_units`); pixels
never mix with real units (a class measured in both gets one chart each).
Histograms are real histograms: contiguous bins of one "nice" width
(1, 2, 2.5 or 5 × 10ⁿ) from below the smallest size to above the largest,
empty bins drawn as zero. Counting per bin and the percentiles are computed
by the database; numbers are shown to 3 significant digits.
"""

from __future__ import annotations

import math

import altair as alt
import pandas as pd
import streamlit as st
from sqlalchemy import Float, and_, case, cast, func, literal, or_, select
from sqlalchemy.sql import ColumnElement

from analytics.records import SIZE_FIELDS
from dashboard import queries
from dashboard.charts import NUMBER, significant, site_times
from dashboard.clock import Clock
from dashboard.widgets import context, pick_cameras, pick_window, show_snapshot
from storage.schema import cameras, tracks

ALL_CLASSES = "All classes"
SHOWN_TRACKS = 300  # rows of the tracks table: the row highlighting costs ~1 ms per row to send
VIOLATION_STYLE = "background-color: rgba(255, 75, 75, 0.25)"
METRES = {"mm": 0.001, "cm": 0.01, "m": 1.0}  # metres per unit: the units a size may be converted between
TARGET_BINS = 20
SIG3 = "%.3g"  # table number format (sprintf-js): 3 significant digits, no exponent; "plain" shows 95.00000000000001


def unit_of(measure: str, unit: str) -> str:
    """Areas are in the unit squared."""
    return f"{unit}²" if measure == "area" else unit


def _power(measure: str) -> int:
    return 2 if measure == "area" else 1


def display_units(ranges: pd.DataFrame) -> dict[tuple[str, str], tuple[str, float]]:
    """(class, stored unit) → (the unit it is shown in, the factor to it) for lengths (square the factor for areas).

    Per class, metric units (mm, cm, m) become the class's most common one
    (ties: the larger), so a bottle stays in mm and a person in m; px and any
    other unit stay as they are: they cannot be converted.
    """
    out: dict[tuple[str, str], tuple[str, float]] = {}
    for name, group in ranges.groupby("class_name"):
        metric = group[group.unit.isin(list(METRES))]
        if not metric.empty:
            weights = metric.groupby("unit").tracks.sum()
            chosen = max(weights.index, key=lambda u: (weights[u], METRES[u]))
        for unit in group.unit:
            out[(name, unit)] = (chosen, METRES[unit] / METRES[chosen]) if unit in METRES else (unit, 1.0)
    return out


def nice_bins(lo: float, hi: float, target: int = TARGET_BINS) -> tuple[float, float, int]:
    """``(start, width, count)``: contiguous bins of a round width covering ``[lo, hi]`` (hi inside the last bin)."""
    span = hi - lo
    if not span > 0:
        span = abs(lo) * 0.2 or 1.0  # one value: a few bins around it
        lo, hi = lo - span / 2, hi + span / 2
    raw = span / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    width = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    start = math.floor(lo / width + 1e-9) * width
    count = max(1, math.floor((hi - start) / width + 1e-9) + 1)
    return start, width, count


def _pairs(url: str, ids: queries.Ids, since: float, until: float, measure: str) -> pd.DataFrame:
    """Per class and stored unit: tracks, smallest and largest median ``measure`` (one grouped query)."""
    value, where = queries._sized_tracks(ids, since, until, measure)
    stmt = (
        select(tracks.c.class_name, tracks.c.unit, func.count().label("tracks"), func.min(value).label("lo"),
               func.max(value).label("hi"))  # fmt: skip
        .where(*where)
        .group_by(tracks.c.class_name, tracks.c.unit)
        .order_by(tracks.c.class_name, tracks.c.unit)
    )
    return queries._read(url, stmt)


def _groups(pairs: pd.DataFrame, measure: str) -> pd.DataFrame:
    """``pairs`` with the unit each is shown in (``shown``) and the factor to it (``factor``, squared for areas)."""
    units = display_units(pairs)
    power = _power(measure)
    return pairs.assign(shown=[units[(c, u)][0] for c, u in zip(pairs.class_name, pairs.unit)],
                        factor=[units[(c, u)][1] ** power for c, u in zip(pairs.class_name, pairs.unit)])  # fmt: skip


def _per_pair(groups: pd.DataFrame, values: dict[tuple[str, str], object], else_: object = None) -> ColumnElement:
    """A SQL CASE giving each (class, stored unit) its value."""
    whens = [(and_(tracks.c.class_name == c, tracks.c.unit == u), literal(v)) for (c, u), v in values.items()]
    return case(*whens, else_=literal(else_)) if whens else literal(else_)


@st.cache_data(ttl=queries.TTL_S, show_spinner=False)
def size_histogram(url: str, ids: queries.Ids, since: float, until: float, measure: str) -> pd.DataFrame:
    """Tracks per bin, one histogram per class and shown unit, every bin from the first to the last (zeros included).

    Columns: class_name, unit (as shown, e.g. ``mm²``), bin, size_from, size_to, tracks.
    """
    columns = ["class_name", "unit", "bin", "size_from", "size_to", "tracks"]
    pairs = _pairs(url, ids, since, until, measure)
    if pairs.empty:
        return pd.DataFrame(columns=columns)
    groups = _groups(pairs, measure)
    bins = {}
    for (name, shown), group in groups.groupby(["class_name", "shown"]):
        bins[(name, shown)] = nice_bins(float((group.lo * group.factor).min()), float((group.hi * group.factor).max()))
    # the bin in the shown unit, computed on the stored value: floor((v * f - start) / width) = floor((v - start/f) / (width/f))
    starts = {(c, u): bins[(c, sh)][0] / f for c, u, sh, f in zip(groups.class_name, groups.unit, groups.shown, groups.factor)}
    widths = {(c, u): bins[(c, sh)][1] / f for c, u, sh, f in zip(groups.class_name, groups.unit, groups.shown, groups.factor)}
    value, where = queries._sized_tracks(ids, since, until, measure)
    raw = (cast(value, Float) - _per_pair(groups, starts, 0.0)) / _per_pair(groups, widths, 1.0)
    index = queries._floor(raw, url).label("bin")
    stmt = (
        select(tracks.c.class_name, tracks.c.unit, index, func.count().label("tracks"))
        .where(*where)
        .group_by(tracks.c.class_name, tracks.c.unit, index)
    )
    counted = queries._read(url, stmt)
    counted["shown"] = counted.set_index(["class_name", "unit"]).index.map(
        groups.set_index(["class_name", "unit"]).shown.to_dict().get)  # fmt: skip
    frames = []
    for (name, shown), (start, width, count) in bins.items():
        mine = counted[(counted.class_name == name) & (counted.shown == shown)]
        per_bin = mine.assign(bin=mine["bin"].clip(0, count - 1)).groupby("bin").tracks.sum()
        full = per_bin.reindex(range(count), fill_value=0)
        edges = [significant(start + i * width, 12) for i in range(count + 1)]  # no 0.30000000000000004
        frames.append(pd.DataFrame({"class_name": name, "unit": unit_of(measure, shown), "bin": range(count),
                                    "size_from": edges[:-1], "size_to": edges[1:], "tracks": full.to_numpy()}))  # fmt: skip
    return pd.concat(frames, ignore_index=True)[columns]


PERCENTILES = queries.PERCENTILES


@st.cache_data(ttl=queries.TTL_S, show_spinner=False)
def size_percentiles(url: str, ids: queries.Ids, since: float, until: float, measure: str) -> pd.DataFrame:
    """Per class and shown unit: tracks and the 5/25/50/75/95th percentile (nearest rank) of their converted medians."""
    columns = ["class_name", "unit", "tracks", *(f"p{p}" for p in PERCENTILES)]
    pairs = _pairs(url, ids, since, until, measure)
    if pairs.empty:
        return pd.DataFrame(columns=columns)
    groups = _groups(pairs, measure)
    value, where = queries._sized_tracks(ids, since, until, measure)
    pair_keys = list(zip(groups.class_name, groups.unit))
    converted = cast(value, Float) * _per_pair(groups, dict(zip(pair_keys, groups.factor)), 1.0)
    shown = _per_pair(groups, dict(zip(pair_keys, groups.shown)), "").label("shown")
    ranked = select(
        tracks.c.class_name, shown, converted.label("value"),
        func.row_number().over(partition_by=(tracks.c.class_name, shown), order_by=converted).label("rank"),
        func.count().over(partition_by=(tracks.c.class_name, shown)).label("n"),
    ).where(*where).subquery()  # fmt: skip
    hits = [(ranked.c["rank"] == queries._floor((ranked.c.n - 1) * (p / 100), url) + 1) for p in PERCENTILES]
    flags = [case((hit, 1), else_=0).label(f"p{p}") for p, hit in zip(PERCENTILES, hits)]
    stmt = select(ranked.c.class_name, ranked.c.shown, ranked.c.n, ranked.c.value, *flags).where(or_(*hits))
    frame = queries._read(url, stmt)
    rows = []
    for (name, unit), group in frame.groupby(["class_name", "shown"]):
        row = {"class_name": name, "unit": unit_of(measure, unit), "tracks": int(group.n.iloc[0])}
        rows.append(row | {f"p{p}": significant(group.value[group[f"p{p}"] == 1].iloc[0]) for p in PERCENTILES})
    return pd.DataFrame(rows, columns=columns)


@st.cache_data(ttl=queries.TTL_S, show_spinner=False)
def sized_tracks(
    url: str, ids: queries.Ids, since: float, until: float, measure: str, class_name: str | None, order: str, limit: int
) -> tuple[pd.DataFrame, int]:
    """Tracks with a measured ``measure``, ranked by size in *one* unit: metric sizes in metres (mm and m never
    sorted as plain numbers), then pixel sizes, then any other unit."""
    value, where = queries._sized_tracks(ids, since, until, measure)
    if class_name is not None:
        where.append(tracks.c.class_name == class_name)
    power = _power(measure)
    metres = case(*[(tracks.c.unit == u, literal(f**power)) for u, f in METRES.items()], else_=literal(1.0))
    family = case((tracks.c.unit.in_(list(METRES)), 0), (tracks.c.unit == "px", 1), else_=2)
    size = cast(value, Float) * metres
    ordering = {"largest first": (family, size.desc()), "smallest first": (family, size.asc()),
                "newest first": (tracks.c.first_ts.desc(),)}[order]  # fmt: skip
    sizes = [tracks.c[f"{f}_{stat}"] for f in SIZE_FIELDS for stat in ("median", "iqr")]
    stmt = (
        select(
            cameras.c.name.label("camera"), tracks.c.run_id, tracks.c.track_id, tracks.c.class_name, tracks.c.first_ts,
            tracks.c.last_ts, tracks.c.frames_seen, tracks.c.unit, *sizes, tracks.c.size_samples, tracks.c.speed_median,
            tracks.c.snapshot,
        )  # fmt: skip
        .join(cameras, cameras.c.id == tracks.c.camera_id)
        .where(*where)
        .order_by(*ordering, tracks.c.id)
        .limit(limit)
    )
    with queries.engine(url).connect() as conn:
        total = conn.execute(select(func.count()).select_from(tracks).where(*where)).scalar_one()
    frame = queries._read(url, stmt)
    frame.insert(4, "first_seen", queries.to_time(frame.pop("first_ts")))
    frame.insert(5, "last_seen", queries.to_time(frame.pop("last_ts")))
    return frame, int(total)


def histogram_chart(frame: pd.DataFrame, measure: str) -> alt.Chart:
    """One class's histogram in one unit: touching bars from the first bin's edge to the last's."""
    unit = frame.unit.iloc[0]
    label = f"median {measure} ({unit})"
    frame = frame.assign(range=[f"{_num(a)}–{_num(b)} {unit}" for a, b in zip(frame.size_from, frame.size_to)])
    lo, hi = float(frame.size_from.min()), float(frame.size_to.max())
    return (
        alt.Chart(frame, title=f"{frame.class_name.iloc[0]} ({unit})")
        .mark_bar(binSpacing=0, stroke="white", strokeWidth=0.5)
        .encode(x=alt.X("size_from:Q", title=label, scale=alt.Scale(domain=[lo, hi], zero=False, nice=False),
                        axis=alt.Axis(format=NUMBER)),
                x2="size_to:Q",
                y=alt.Y("tracks:Q", title="tracks", scale=alt.Scale(zero=True), axis=alt.Axis(format="d", tickMinStep=1)),
                y2=alt.datum(0),  # bars stand on zero: with x2 and no y2, Vega-Lite draws each bin as a floating dash
                tooltip=[alt.Tooltip("range:N", title=label), alt.Tooltip("tracks:Q", title="tracks")])
        .properties(height=180)
    )  # fmt: skip


def _num(value: float) -> str:
    """3 significant digits, no exponent, no trailing zeros (what :data:`NUMBER` shows on the axes)."""
    rounded = significant(value)
    return f"{rounded:,.10f}".rstrip("0").rstrip(".") if rounded is not None else "—"


def _tracks_table(found: pd.DataFrame, violations: pd.DataFrame, clock: Clock) -> pd.DataFrame:
    """The tracks as shown: which size rules each broke, sizes to 3 significant digits, times on the site clock."""
    broken = violations.groupby(["camera", "run_id", "track_id"])["rule"].agg(lambda r: ", ".join(sorted(set(r))))
    keyed = found.set_index(["camera", "run_id", "track_id"]).index
    table = found.assign(violations=broken.reindex(keyed).fillna("").to_numpy()).drop(columns=["snapshot"])
    for column in [c for c in table.columns if c.endswith(("_median", "_iqr"))]:
        table[column] = table[column].map(significant)
    return site_times(table, clock, "first_seen", "last_seen")


def render() -> None:
    settings, _ = context()
    url, clock = settings.store_url, settings.clock
    st.title("Sizes")
    left, middle, right, far = st.columns(4)
    with left:
        names, ids = pick_cameras(url, "sizes-camera")
    if not ids:
        st.info("The store has no cameras yet.")
        return
    with middle:
        window = pick_window(url, ids, "sizes-window", default="All")
    if window is None:
        st.info("No data for this camera yet.")
        return
    since, until = window
    with right:
        measure = st.selectbox("Measure", SIZE_FIELDS, index=SIZE_FIELDS.index("length"), key="sizes-measure")
    with far:
        chosen = st.selectbox("Class", [ALL_CLASSES, *queries.known_classes(url)], key="sizes-class")
    class_name = None if chosen == ALL_CLASSES else chosen

    histogram = size_histogram(url, ids, since, until, measure)
    percentiles = size_percentiles(url, ids, since, until, measure)
    if class_name is not None:
        histogram, percentiles = histogram[histogram.class_name == class_name], percentiles[percentiles.class_name == class_name]
    if histogram.empty:
        st.info(f"No track with a measured {measure} in this window.")
    else:
        charts = list(histogram.groupby(["class_name", "unit"], sort=True))
        for row in range(0, len(charts), 2):  # one chart per class and unit, two to a row
            for column, (_, frame) in zip(st.columns(2), charts[row : row + 2]):
                with column:
                    st.altair_chart(histogram_chart(frame, measure), width="stretch")
        st.dataframe(percentiles, hide_index=True, key="sizes-percentiles",
                     column_config={f"p{p}": st.column_config.NumberColumn(format=SIG3) for p in PERCENTILES})  # fmt: skip

    violations = queries.size_violations(url, ids, since, until)
    st.subheader("Tracks with sizes")
    order = st.radio("Order", queries.SIZE_ORDERS, horizontal=True, key="sizes-order")
    found, total = sized_tracks(url, ids, since, until, measure, class_name, order, SHOWN_TRACKS)
    st.caption(f"{total} tracks with a measured {measure}" + (f"; the first {len(found)} shown" if total > len(found) else "")
               + ". Sizes are in each track's own unit; \"largest\" and \"smallest\" compare them converted to one unit"
               " (pixel sizes after real ones). Rows that broke a size rule are highlighted; select a row to see its"
               " snapshot.")  # fmt: skip
    table = _tracks_table(found, violations, clock)
    sizes = [c for c in table.columns if c.endswith(("_median", "_iqr"))]
    styled = table.style.apply(lambda row: [VIOLATION_STYLE if row.violations else ""] * len(row), axis=1).format(
        dict.fromkeys(sizes, _num), na_rep="—")  # a Styler shows floats with 6 decimals unless told: 29300.000000
    picked = st.dataframe(styled, hide_index=True, key="sizes-tracks", on_select="rerun", selection_mode="single-row")
    rows = picked.selection.rows if picked is not None else []
    if rows:
        track = found.iloc[rows[0]]
        show_snapshot(settings, track.snapshot, f"{track.camera} · track {track.track_id} ({track.class_name})")

    st.subheader("Size-rule violations")
    if violations.empty:
        st.caption("None in this window.")
        return
    listed = violations.drop(columns=["id", "snapshot"]).assign(**{c: violations[c].map(significant)
                                                                   for c in ("value", "min", "max")})  # fmt: skip
    st.dataframe(site_times(listed, clock, "time"), hide_index=True, key="sizes-violations")
    for column, (_, event) in zip(st.columns(min(len(violations), 6)), violations.head(6).iterrows()):
        with column:
            show_snapshot(settings, event.snapshot,
                          f"track {event.track_id}: {event.rule} {_num(event.value)} {event.unit or ''}")  # fmt: skip


if __name__ == "__main__":
    render()
