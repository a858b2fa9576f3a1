"""Heatmap page: where objects were in each camera's frame over a window, and how long they stayed in each zone.

Occupancy is counted by the database on a 64×36 grid (:mod:`dashboard.heatmap_queries`)
and drawn over a frame of the camera (:func:`dashboard.drawing.camera_background`)
with its zones; the dwell times are those of the zone exits in the window.
"""

from __future__ import annotations

import altair as alt
import cv2
import numpy as np
import pandas as pd
import streamlit as st

from dashboard import heatmap_queries as hq
from dashboard import queries
from dashboard.drawing import camera_background, draw_geometry
from dashboard.settings import Settings
from dashboard.widgets import context, pick_cameras, pick_window

ALL_CLASSES = "All classes"
MAX_WIDTH = 960  # px: the frame is shown no larger, and blending a smaller picture is cheaper


def heat_image(background: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``background`` (BGR) with each non-empty cell coloured by its count on a log scale (turbo: blue few, red many)
    and alpha-blended, more opaque where busier; empty cells stay clear."""
    if not counts.any():
        return background.copy()
    height, width = background.shape[:2]
    level = np.log1p(counts) / np.log1p(counts.max())
    colours = cv2.applyColorMap(np.round(level * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    alpha = np.where(counts > 0, 0.35 + 0.4 * level, 0.0).astype(np.float32)
    colours = cv2.resize(colours, (width, height), interpolation=cv2.INTER_NEAREST).astype(np.float32)
    alpha = cv2.resize(alpha, (width, height), interpolation=cv2.INTER_NEAREST)[..., None]
    return np.round(background.astype(np.float32) * (1 - alpha) + colours * alpha).astype(np.uint8)


def legend(peak: int, width: int = 320) -> np.ndarray:
    """The colour scale (RGB) of :func:`heat_image`, 0 to ``peak`` observations per cell, labelled at 1, the
    log midpoint and ``peak``, each where its colour is (labels too close to the previous one are left out)."""
    bar = cv2.applyColorMap(np.linspace(0, 255, width).astype(np.uint8)[None, :].repeat(14, 0), cv2.COLORMAP_TURBO)
    image = np.full((34, width, 3), 255, np.uint8)
    image[:14] = bar
    mid = max(round(float(np.expm1(np.log1p(peak) / 2))), 1)
    last_end = -np.inf
    for count in sorted({1, mid, max(peak, 1)}):
        text = f"{count:,}"
        text_width = 8 * len(text)
        x = int(np.clip(np.log1p(count) / np.log1p(max(peak, 1)) * width - text_width / 2, 0, width - text_width))
        if x < last_end + 6:
            continue
        cv2.putText(image, text, (x, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        last_end = x + text_width
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _fit(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    if width <= MAX_WIDTH:
        return image
    return cv2.resize(image, (MAX_WIDTH, round(height * MAX_WIDTH / width)), interpolation=cv2.INTER_AREA)


def _jpeg(image: np.ndarray) -> bytes:
    """BGR → JPEG bytes: a tenth of the time PNG takes for a photo-like frame (st.image's default for arrays)."""
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


def camera_heatmap(settings: Settings, url: str, name: str, camera_id: int, since: float, until: float,
                   class_name: str | None, alone: bool = False) -> dict:  # fmt: skip
    """Draw one camera's heatmap; returns its row of the summary table."""
    run = queries.latest_run(url, camera_id, name)
    background, where = camera_background(settings.live_dir, name, run["source"] if run else None)
    height, width = background.shape[:2]
    occupancy = hq.occupancy_grid(url, camera_id, since, until, (width, height), class_name)
    counts = occupancy.counts
    saved = queries.saved_geometry(url, name)
    geometry = saved[0] if saved else run["geometry"] if run else {}
    picture = heat_image(_fit(draw_geometry(background, geometry)), counts)  # blended at the size shown
    cols, rows = hq.GRID
    st.markdown(f"**{name}**")
    st.image(_jpeg(picture), width=picture.shape[1] if alone else "stretch",  # alone: no wider than the frame
             caption=f"{name} · occupancy over {where}, {cols}×{rows} cells of {width / cols:.0f}×{height / rows:.0f} px")  # fmt: skip
    peak = int(counts.max())
    if occupancy.total:
        y, x = np.unravel_index(int(counts.argmax()), counts.shape)
        st.image(legend(peak), caption="observations per cell (log scale)", width=320)
        if occupancy.step > 1:
            st.caption(f"{occupancy.total:,} observations in the window: a sample of one in {occupancy.step} "
                       f"(blocks of {hq.SAMPLE_BLOCK} consecutive ones) is counted and cell counts are scaled "
                       f"by {occupancy.step} (estimates).")  # fmt: skip
        busiest = f"x {x * width / cols:.0f}–{(x + 1) * width / cols:.0f} px, y {y * height / rows:.0f}–{(y + 1) * height / rows:.0f} px"
    else:
        st.caption("No observations of this camera in the window.")
        busiest = "—"
    return {"camera": name, "observations": occupancy.total, "cells occupied": int((counts > 0).sum()),
            "busiest cell": peak, "busiest cell at": busiest}  # fmt: skip


def dwell_section(url: str, ids: tuple[int, ...], since: float, until: float) -> None:
    st.subheader("Dwell time per zone")
    st.caption("Seconds from a track entering a zone to leaving it, for each zone exit in the window (zone_exit events).")
    summary = hq.dwell_summary(url, ids, since, until)
    if summary.empty:
        st.info("No zone exits in the window: no zones configured, or nothing left one.")
        return
    width = hq.bin_width(float(summary.longest_s.max()))
    histogram = hq.dwell_histogram(url, ids, since, until, width)
    several = summary.camera.nunique() > 1
    label = (histogram.camera + " · " + histogram.zone) if several else histogram.zone
    histogram = histogram.assign(zone_label=label)
    chart = (
        alt.Chart(histogram)
        .mark_bar()
        .encode(
            x=alt.X("from_s:Q", bin="binned", title=f"dwell time in zone (s), bins of {width:g} s"),
            x2="to_s:Q",
            y=alt.Y("exits:Q", title="zone exits (count)", stack=None),
            color=alt.Color("zone_label:N", title="zone"),
            opacity=alt.value(0.7),
            tooltip=[alt.Tooltip("zone_label:N", title="zone"), alt.Tooltip("from_s:Q", title="from (s)"),
                     alt.Tooltip("to_s:Q", title="to (s)"), alt.Tooltip("exits:Q", title="exits")],
        )
    )  # fmt: skip
    st.altair_chart(chart, width="stretch")
    shown = summary.rename(columns={"mean_s": "mean dwell (s)", "longest_s": "longest dwell (s)"})
    st.dataframe(shown if several else shown.drop(columns=["camera"]), hide_index=True, key="heatmap-dwell-summary",
                 column_config={c: st.column_config.NumberColumn(format="%.1f") for c in ("mean dwell (s)", "longest dwell (s)")})  # fmt: skip
    with st.expander("Histogram as a table"):
        table = histogram.drop(columns=["zone_label"]).rename(columns={"from_s": "from (s)", "to_s": "to (s)"})
        st.dataframe(table if several else table.drop(columns=["camera"]), hide_index=True, key="heatmap-dwell-bins")


def render() -> None:
    settings, _ = context()
    url = settings.store_url
    st.title("Heatmap")
    left, middle, right = st.columns(3)
    with left:
        names, ids = pick_cameras(url, "heatmap-camera")
    if not ids:
        st.info("The store has no cameras yet.")
        return
    with middle:
        window = pick_window(url, ids, "heatmap-window")
    if window is None:
        st.info("These cameras have no data yet.")
        return
    since, until = window
    with right:
        choice = st.selectbox("Class", [ALL_CLASSES, *queries.known_classes(url)], key="heatmap-class")
    class_name = None if choice == ALL_CLASSES else choice

    st.subheader("Occupancy")
    st.caption("Where objects' centroids were in the frame: every stored observation in the window counted in its cell; "
               "colour and opacity grow with the count (log scale), empty cells stay clear.")  # fmt: skip
    rows = []
    per_row = 1 if len(names) == 1 else 2
    for start in range(0, len(names), per_row):
        for column, name, camera_id in zip(st.columns(per_row), names[start : start + per_row], ids[start : start + per_row]):
            with column:
                rows.append(camera_heatmap(settings, url, name, camera_id, since, until, class_name, per_row == 1))
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="heatmap-summary")
    dwell_section(url, ids, since, until)


if __name__ == "__main__":
    render()
