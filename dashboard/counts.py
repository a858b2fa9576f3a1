"""Counts page: visible objects per class and zone over time, line crossings, and unique totals.

Series are bucketed by the database (the bucket grows with the window, so a
chart never has more than ~200 points); totals are unique objects per class
as :func:`analytics.unique_counts` defines them. Downloads are built only
when clicked.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import queries
from dashboard.widgets import bucket_for, context, pick_cameras, pick_window
from storage.export import export_table


def _chart(frame: pd.DataFrame, value: str, color: str, title: str) -> alt.Chart:
    return (
        alt.Chart(frame, title=title)
        .mark_line(point=len(frame) < 60, interpolate="step-after")
        .encode(x=alt.X("time:T", title="time (UTC)"), y=alt.Y(f"{value}:Q", title=value), color=f"{color}:N",
                tooltip=["time:T", f"{color}:N", alt.Tooltip(f"{value}:Q", format=".2f")])  # fmt: skip
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
    url = settings.store_url
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

    series = queries.count_series(url, ids, since, until, bucket_s, peak)
    lines = queries.line_series(url, ids, since, until, bucket_s)
    st.caption(f"{bucket_s} s buckets; visible counts are the {'peak' if peak else 'mean'} of the samples in each bucket.")

    whole = series[series.zone.isna()]
    zoned = series[series.zone.notna()].assign(zone_class=lambda f: f.zone + " · " + f.class_name)
    if whole.empty:
        st.info("No visible-object counts in this window.")
    else:
        st.altair_chart(_chart(whole, "visible", "class_name", "Visible objects per class"), width="stretch")
    if not zoned.empty:
        st.altair_chart(_chart(zoned, "visible", "zone_class", "Objects inside each zone"), width="stretch")
    if not lines.empty:
        crossing = lines.assign(line_dir=lambda f: f.line + " · " + f.class_name + " · " + f.direction.fillna("?"))
        st.altair_chart(_chart(crossing, "crossings", "line_dir", "Line crossings"), width="stretch")

    st.subheader("Totals in the window")
    unique = queries.unique_per_class(url, names, since, until)
    totals = pd.DataFrame({"class": list(unique), "unique objects": list(unique.values())})
    a, b = st.columns(2)
    with a:
        st.dataframe(totals, hide_index=True, key="counts-totals")
    with b:
        if not lines.empty:
            crossings = lines.pivot_table(index=["line", "class_name"], columns="direction", values="crossings",
                                          aggfunc="sum", fill_value=0).reset_index()  # fmt: skip
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
