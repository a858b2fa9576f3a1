"""Counts page: visible objects per class and zone over time, line crossings, and unique totals.

Series are bucketed by the database (the bucket grows with the window, so a
chart never has more than ~200 points); totals are unique objects per class
as :func:`analytics.unique_counts` defines them. Downloads are built only
when clicked.

Times when nothing ran stay gaps: counts are sampled every ``count_every_s``
while a camera runs (zeros included), so a stretch of buckets without a single
sample of that camera means nothing was watching, and its lines break there
instead of drawing the last value flat across the pause (:func:`with_gaps`).
Cameras are never added together: each camera's objects are its own series
(two cameras that overlap would count one person twice).
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from sqlalchemy import select

from dashboard import queries
from dashboard.charts import NUMBER
from dashboard.clock import Clock
from dashboard.widgets import bucket_for, context, pick_cameras, pick_window
from storage.export import export_table
from storage.schema import runs

SERIES = "series"  # the chart column naming each line; its legend title says what it holds


def _seconds(times: pd.Series) -> np.ndarray:
    return (times - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()


@st.cache_data(ttl=queries.TTL_S, show_spinner=False)
def sampling_s(url: str, camera_id: int) -> float:
    """How often the camera's runs stored counts: the longest ``sampling.count_every_s`` of its latest runs."""
    stmt = select(runs.c.config_json).where(runs.c.camera_id == camera_id).order_by(runs.c.started_ts.desc()).limit(100)
    every = [1.0]  # the default
    with queries.engine(url).connect() as conn:
        for (text,) in conn.execute(stmt):
            try:
                every.append(float(json.loads(text).get("sampling", {}).get("count_every_s", 1.0)))
            except (ValueError, TypeError, AttributeError):
                continue
    return max(every)


def segments(ran: np.ndarray, bucket_s: float, sample_s: float = 1.0) -> list[tuple[float, float]]:
    """Stretches ``(first, last)`` of the buckets with samples, split where no sample came for over two steps.

    A step is a bucket, or the sampling interval when that is longer (or, with many buckets, the spacing of
    the closest quarter of them: a camera processing fewer frames than it samples): with 1 s buckets and a
    sample every second, a bucket the sampling jitter left empty is no pause; three empty ones are.
    """
    ran = np.unique(ran)
    if not len(ran):
        return []
    spacing = np.diff(ran)
    step = max(bucket_s, sample_s, float(np.quantile(spacing, 0.25)) if len(spacing) >= 8 else 0.0)
    breaks = np.flatnonzero(np.diff(ran) > 2 * step)
    starts, ends = np.r_[ran[0], ran[breaks + 1]], np.r_[ran[breaks], ran[-1]]
    return list(zip(starts.tolist(), ends.tolist()))


def with_gaps(frame: pd.DataFrame, value: str, ran: np.ndarray, bucket_s: float, sample_s: float = 1.0) -> pd.DataFrame:
    """Each series of ``frame`` (``time``, :data:`SERIES`, ``value``) only where the camera ran, broken between.

    ``ran`` holds the bucket starts (epoch s) with a sample of the camera. Inside a stretch of them a
    series' missing bucket is 0 (the camera ran and saw none); each stretch ends with its last bucket's
    value held to the bucket's end (so a step line draws it), then one NaN row that breaks the line
    before the next stretch. Nothing is drawn where the camera did not run.
    """
    spans = segments(ran, bucket_s, sample_s)
    if frame.empty or not spans:
        return frame.iloc[0:0][["time", SERIES, value]]
    at = _seconds(frame.time)
    rows = []
    grid = np.unique(ran)
    for name, group in frame.assign(at=at).groupby(SERIES, sort=True):
        values = group.groupby("at")[value].sum()
        for i, (first, last) in enumerate(spans):
            inside = grid[(grid >= first) & (grid <= last)]
            stretch = values.reindex(inside, fill_value=0.0)
            rows += [(t, name, float(v)) for t, v in stretch.items()]
            rows.append((last + bucket_s, name, float(stretch.iloc[-1])))  # the last bucket, held to its end
            if i + 1 < len(spans):
                rows.append(((last + bucket_s + spans[i + 1][0]) / 2, name, np.nan))  # the pause: no line
    out = pd.DataFrame(rows, columns=["at", SERIES, value])
    out.insert(0, "time", pd.to_datetime(out.pop("at"), unit="s", utc=True))
    return out.sort_values([SERIES, "time"], kind="stable").reset_index(drop=True)


def _chart(frame: pd.DataFrame, value: str, legend: str, title: str, axis: str, clock: Clock, span_s: float) -> alt.Chart:
    shown = clock.chart_frame(frame)
    return (
        alt.Chart(shown, title=title)
        .mark_line(point=len(frame) < 60, interpolate="step-after")
        .encode(x=clock.x(span_s), y=alt.Y(f"{value}:Q", title=axis, axis=alt.Axis(format=NUMBER)),
                color=alt.Color(f"{SERIES}:N", title=legend),
                tooltip=[clock.tooltip(), alt.Tooltip(f"{SERIES}:N", title=legend),
                         alt.Tooltip(f"{value}:Q", title=axis, format=NUMBER)])  # fmt: skip
    )


def _encode(frame: pd.DataFrame, parquet: bool) -> bytes:
    if not parquet:
        return frame.to_csv(index=False).encode()
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _download(label: str, data: pd.DataFrame, name: str, parquet: bool) -> None:
    suffix = "parquet" if parquet else "csv"
    st.download_button(label, lambda: _encode(data, parquet), file_name=f"{name}.{suffix}", key=f"dl-{name}-{suffix}")


def _raw_export(url: str, table: str, cameras: tuple[str, ...], since: float, until: float, parquet: bool) -> None:
    """Raw rows of one table via storage.export.export_table, written only when the button is clicked."""

    def build() -> bytes:
        frames = []
        with tempfile.TemporaryDirectory() as tmp:
            for camera in cameras:
                path = Path(tmp, f"{table}.parquet")
                export_table(url, table, path, since=since, until=until, camera=camera)
                frames.append(pd.read_parquet(path))
        return _encode(pd.concat(frames, ignore_index=True), parquet)

    suffix = "parquet" if parquet else "csv"
    st.download_button(f"Raw {table} rows", build, file_name=f"{table}.{suffix}", key=f"dl-raw-{table}-{suffix}")


def render() -> None:
    settings, _ = context()
    url, clock = settings.store_url, settings.clock
    st.title("Counts")
    left, middle, right = st.columns(3)
    with left:
        names, ids = pick_cameras(url, "counts-camera")
    if not ids:
        st.info("The store has no cameras yet: counts appear once a run has written to it.")
        return
    with middle:
        window = pick_window(url, ids, "counts-window")
    if window is None:
        st.info("No counts or events for this camera yet.")
        return
    since, until = window
    with right:
        peak = st.radio("Per bucket", ["mean", "peak"], horizontal=True, key="counts-stat") == "peak"
    bucket_s = bucket_for(since, until)

    several = len(names) > 1
    per_camera = [(name, queries.count_series(url, (cid,), since, until, bucket_s, peak),
                   queries.line_series(url, (cid,), since, until, bucket_s)) for name, cid in zip(names, ids)]  # fmt: skip
    series = pd.concat([s.assign(camera=n) for n, s, _ in per_camera], ignore_index=True)
    lines = pd.concat([x.assign(camera=n) for n, _, x in per_camera], ignore_index=True)
    stat = "peak" if peak else "mean"
    st.caption(f"{bucket_s} s buckets; visible counts are the {stat} of the samples in each bucket. Lines break where "
               "nothing ran." + (" Each camera is its own series: cameras are not added together." if several else ""))
    title_prefix = "Camera · " if several else ""

    def label(frame: pd.DataFrame, *parts: str) -> pd.Series:
        text = frame[parts[0]].astype(str)
        for part in parts[1:]:
            text = text + " · " + frame[part].astype(str)
        return (frame.camera + " · " + text) if several else text

    whole_parts, zoned_parts, crossing_parts = [], [], []
    for (name, camera_series, camera_lines), cid in zip(per_camera, ids):
        ran = _seconds(camera_series.time) if not camera_series.empty else _seconds(camera_lines.time)
        every = sampling_s(url, cid)
        whole = camera_series[camera_series.zone.isna()].assign(camera=name)
        zoned = camera_series[camera_series.zone.notna()].assign(camera=name)
        whole_parts.append(with_gaps(whole.assign(**{SERIES: label(whole, "class_name")}), "visible", ran, bucket_s, every))
        zoned_parts.append(with_gaps(zoned.assign(**{SERIES: label(zoned, "zone", "class_name")}), "visible", ran, bucket_s,
                                     every))  # fmt: skip
        crossing = camera_lines.assign(camera=name, direction=camera_lines.direction.fillna("?"))
        crossing_parts.append(with_gaps(crossing.assign(**{SERIES: label(crossing, "line", "class_name", "direction")}),
                                        "crossings", ran, bucket_s, every))  # fmt: skip
    span = until - since
    whole, zoned, crossing = (pd.concat(parts, ignore_index=True) for parts in (whole_parts, zoned_parts, crossing_parts))
    visible_axis = f"objects visible ({stat} per {bucket_s} s)"
    if whole.empty:
        st.info("No visible-object counts in this window.")
    else:
        st.altair_chart(_chart(whole, "visible", f"{title_prefix}Class", "Visible objects per class", visible_axis, clock,
                               span), width="stretch")  # fmt: skip
    if not zoned.empty:
        st.altair_chart(_chart(zoned, "visible", f"{title_prefix}Zone · class", "Objects inside each zone", visible_axis,
                               clock, span), width="stretch")  # fmt: skip
    if not crossing.empty:
        st.altair_chart(_chart(crossing, "crossings", f"{title_prefix}Line · class · direction", "Line crossings",
                               f"crossings per {bucket_s} s", clock, span), width="stretch")  # fmt: skip

    st.subheader("Totals in the window")
    if several:
        per = [pd.DataFrame({"camera": n, "class": list(u), "unique objects": list(u.values())})
               for n in names for u in [queries.unique_per_class(url, (n,), since, until)]]  # fmt: skip
        totals = pd.concat(per, ignore_index=True)
    else:
        unique = queries.unique_per_class(url, names, since, until)
        totals = pd.DataFrame({"class": list(unique), "unique objects": list(unique.values())})
    a, b = st.columns(2)
    with a:
        st.dataframe(totals, hide_index=True, key="counts-totals")
    with b:
        if not lines.empty:
            index = ["camera", "line", "class_name"] if several else ["line", "class_name"]
            crossings = lines.pivot_table(index=index, columns="direction", values="crossings",
                                          aggfunc="sum", fill_value=0).reset_index()  # fmt: skip
            crossings.columns.name = None
            st.dataframe(crossings.rename(columns={"class_name": "class"}), hide_index=True, key="counts-lines")

    st.subheader("Download")
    parquet = st.radio("Format", ["CSV", "Parquet"], horizontal=True, key="counts-format") == "Parquet"
    buttons = st.columns(4)
    with buttons[0]:
        _download("Counts series", series, "counts_series", parquet)
    with buttons[1]:
        _download("Line crossings", lines, "line_crossings", parquet)
    with buttons[2]:
        _raw_export(url, "counts", names, since, until, parquet)
    with buttons[3]:
        _raw_export(url, "events", names, since, until, parquet)


if __name__ == "__main__":
    render()
