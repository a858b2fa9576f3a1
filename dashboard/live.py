"""Live page: each camera's latest annotated frame, health and current counts, from the service's live files.

The panel is a fragment re-run a few times a second: only it re-renders, it
reads two small files per camera, and a camera that stops publishing turns
"stale" on screen within ``dashboard.stale_after_s``.
"""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from dashboard.widgets import context
from storage.live import LiveCamera, read_cameras, read_frame, read_segmenter

BADGES = {"live": ("green", ":material/check_circle:"), "stale": ("red", ":material/schedule:"),
          "disconnected": ("red", ":material/link_off:"), "worker down": ("red", ":material/error:"),
          "not segmenting": ("orange", ":material/pause_circle:")}  # fmt: skip


def _number(value: object, suffix: str = "", digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}{suffix}" if isinstance(value, float) else f"{value}{suffix}"


def _counts_table(counts: dict, label: str) -> pd.DataFrame:
    return pd.DataFrame([{label: k, "visible": v} for k, v in sorted(counts.items())], columns=[label, "visible"])


def _occupancy_table(occupancy: dict) -> pd.DataFrame:
    rows = [{"zone": zone, "class": name, "inside": n} for zone, by_class in sorted(occupancy.items()) for name, n in sorted(by_class.items())]
    return pd.DataFrame(rows, columns=["zone", "class", "inside"])


def _lines_table(line_counts: dict) -> pd.DataFrame:
    rows = [{"line": line, "class": name, "in": v.get("in", 0), "out": v.get("out", 0)}
            for line, by_class in sorted(line_counts.items()) for name, v in sorted(by_class.items())]  # fmt: skip
    return pd.DataFrame(rows, columns=["line", "class", "in", "out"])


def segmenter_line(status: dict | None, stale_after_s: float) -> None:
    """One line on the shared segmenter every camera depends on; a warning when it has gone quiet."""
    if status is None:
        return
    age = time.time() - float(status.get("updated_ts") or 0.0)
    if age > stale_after_s:
        st.warning(f"Shared segmenter silent for {age:.0f} s: cameras skip frames until it is back (the service restarts it).")
        return
    st.caption(f"Shared segmenter on {status.get('device', '?')}: {status.get('frames', 0)} frames in "
               f"{status.get('batches', 0)} batches (mean batch {status.get('mean_batch', 0):.2f}), "
               f"{status.get('workers', 0)} cameras connected, updated {age:.1f} s ago")


def camera_panel(camera: LiveCamera, stale_after_s: float) -> None:
    s = camera.status
    health, why = s.health(stale_after_s)
    color, icon = BADGES[health]
    with st.container(border=True):
        st.subheader(camera.camera)
        st.badge(f"{health}: {why}", color=color, icon=icon)
        if health not in ("live", "not segmenting") and s.last_error:
            st.error(f"Last error: {s.last_error}")
        st.caption(f"source: {s.source}")  # published already redacted by the worker
        picture, numbers = st.columns([3, 2])
        with picture:
            frame = read_frame(camera)
            if frame is None:
                st.info("No frame yet.")
            else:
                st.image(frame, caption=f"{camera.camera} · latest frame", width="stretch")
        with numbers:
            a, b, c = st.columns(3)
            a.metric("FPS in", _number(s.fps_in))
            b.metric("FPS processed", _number(s.fps_out))
            c.metric("Lag", _number(s.lag_s, " s", 2))
            a.metric("Dropped", _number(s.dropped))
            b.metric("Reconnects", _number(s.reconnects))
            c.metric("Frames", _number(s.frames))
            if s.worker_restarts is not None:
                a.metric("Worker restarts", _number(s.worker_restarts))
            b.metric("Alarms", _number(s.alarms))
            st.markdown("**Visible now**")
            st.dataframe(_counts_table(s.visible, "class"), hide_index=True)
            st.markdown("**In zones now**")
            st.dataframe(_occupancy_table(s.occupancy), hide_index=True)
        if s.line_counts:
            st.markdown("**Line counts (this run)**")
            st.dataframe(_lines_table(s.line_counts), hide_index=True)
        if s.unique:
            st.caption("Unique objects this run: " + ", ".join(f"{k} {v}" for k, v in s.unique.items()))


def render() -> None:
    settings, _ = context()
    st.title("Live")

    @st.fragment(run_every=settings.dashboard.live_refresh_s)
    def panels() -> None:
        cameras = read_cameras(settings.live_dir)
        segmenter_line(read_segmenter(settings.live_dir), settings.dashboard.stale_after_s)
        if not cameras:
            st.info(f"No live cameras: no status files in {settings.live_dir}. Is `maskwatch serve` running with this config?")
        for camera in cameras:
            camera_panel(camera, settings.dashboard.stale_after_s)

    panels()


if __name__ == "__main__":
    render()
