"""Sizes page: per-class size distributions in real units, every measured track, and size-rule violations.

A track's size is the median (and IQR) of its clean measurements, in the
camera's calibrated unit as stored with the track; histograms and percentiles
are computed by the database over those medians.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from analytics.records import SIZE_FIELDS
from dashboard import queries
from dashboard.widgets import context, pick_cameras, pick_window, show_snapshot

ALL_CLASSES = "All classes"
SHOWN_TRACKS = 300  # rows of the tracks table: the row highlighting costs ~1 ms per row to send
VIOLATION_STYLE = "background-color: rgba(255, 75, 75, 0.25)"


def unit_of(measure: str, unit: str) -> str:
    """Areas are in the unit squared."""
    return f"{unit}²" if measure == "area" else unit


def _histogram(frame: pd.DataFrame, measure: str) -> alt.FacetChart:
    """One histogram per class, each on its own size axis: a person and a bottle share no useful scale."""
    frame = frame.assign(label=lambda f: f.class_name + " (" + f.unit.map(lambda u: unit_of(measure, u)) + ")")
    bars = (
        alt.Chart(frame)
        .mark_bar()
        .encode(x=alt.X("size_from:Q", title=f"median {measure}"), x2="size_to:Q", y=alt.Y("tracks:Q", title="tracks"),
                color=alt.Color("label:N", legend=None),
                tooltip=["label:N", alt.Tooltip("size_from:Q", format=".2f"), alt.Tooltip("size_to:Q", format=".2f"), "tracks:Q"])
        .properties(height=140, width=600)
    )  # fmt: skip
    return bars.facet(row=alt.Row("label:N", title=None)).resolve_scale(x="independent", y="independent")


def _tracks_table(tracks: pd.DataFrame, violations: pd.DataFrame) -> pd.DataFrame:
    broken = violations.groupby(["camera", "run_id", "track_id"])["rule"].agg(lambda r: ", ".join(sorted(set(r))))
    keyed = tracks.set_index(["camera", "run_id", "track_id"]).index
    table = tracks.assign(violations=broken.reindex(keyed).fillna("").to_numpy())
    return table.drop(columns=["snapshot"])


def render() -> None:
    settings, _ = context()
    url = settings.store_url
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

    histogram = queries.size_histogram(url, ids, since, until, measure)
    percentiles = queries.size_percentiles(url, ids, since, until, measure)
    if class_name is not None:
        histogram, percentiles = histogram[histogram.class_name == class_name], percentiles[percentiles.class_name == class_name]
    if histogram.empty:
        st.info(f"No track with a measured {measure} in this window.")
    else:
        st.altair_chart(_histogram(histogram, measure), width="stretch")
        st.dataframe(percentiles.assign(unit=percentiles.unit.map(lambda u: unit_of(measure, u))), hide_index=True,
                     key="sizes-percentiles")  # fmt: skip

    violations = queries.size_violations(url, ids, since, until)
    st.subheader("Tracks with sizes")
    order = st.radio("Order", queries.SIZE_ORDERS, horizontal=True, key="sizes-order")
    tracks, total = queries.sized_tracks(url, ids, since, until, measure, class_name, order, SHOWN_TRACKS)
    st.caption(f"{total} tracks with a measured {measure}" + (f"; the first {len(tracks)} shown" if total > len(tracks) else "")
               + ". Rows that broke a size rule are highlighted; select a row to see its snapshot.")  # fmt: skip
    table = _tracks_table(tracks, violations)
    styled = table.style.apply(lambda row: [VIOLATION_STYLE if row.violations else ""] * len(row), axis=1)
    picked = st.dataframe(styled, hide_index=True, key="sizes-tracks", on_select="rerun", selection_mode="single-row",
                          column_config={"first_seen": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
                                         "last_seen": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")})  # fmt: skip
    rows = picked.selection.rows if picked is not None else []
    if rows:
        track = tracks.iloc[rows[0]]
        show_snapshot(settings, track.snapshot, f"{track.camera} · track {track.track_id} ({track.class_name})")

    st.subheader("Size-rule violations")
    if violations.empty:
        st.caption("None in this window.")
        return
    st.dataframe(violations.drop(columns=["id", "snapshot"]), hide_index=True, key="sizes-violations")
    for column, (_, event) in zip(st.columns(min(len(violations), 6)), violations.head(6).iterrows()):
        with column:
            show_snapshot(settings, event.snapshot, f"track {event.track_id}: {event.rule} {event.value:g} {event.unit or ''}")


if __name__ == "__main__":
    render()
