"""Live page: every camera as a tile in a grid (frame, health, key numbers), or one camera full screen.

The cameras are a fragment re-run on a timer (:func:`refresh_s`): every
``dashboard.live_refresh_s`` for a live camera full screen, at most once a second
for a grid of live tiles, every 2 s while no camera shown is live. Only it
re-renders, and it reads a camera's files again only when the worker has
replaced them (:class:`storage.live.LiveFiles`, one ``stat`` per file), so an
open tab on cameras that stopped costs a directory listing every 2 s. The
server's imports are frozen out of the garbage collection Streamlit runs after
every refresh (:func:`freeze_imports`), which was nine tenths of its cost. A
camera that stops publishing turns stale within ``dashboard.stale_after_s``;
a stale, disconnected or dead one is greyed: its last frame desaturated and
dimmed, its numbers "—", and when it was last heard of in site time.

``?camera=<name>`` (or a tile's "Full screen" button) shows one camera with
all its numbers and tables; "All cameras" goes back to the grid.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

import cv2
import numpy as np
import streamlit as st

from dashboard.clock import Clock
from dashboard.widgets import context
from storage.live import CameraStatus, LiveCamera, LiveFiles, Stamp

BADGES = {"live": ("green", ":material/check_circle:"), "stale": ("red", ":material/schedule:"),
          "disconnected": ("red", ":material/link_off:"), "worker down": ("red", ":material/error:"),
          "not segmenting": ("orange", ":material/pause_circle:")}  # fmt: skip
OFFLINE = ("stale", "disconnected", "worker down")  # greyed: nothing on the tile is current
CAMERA_PARAM = "camera"
COLUMNS_KEY, REFRESH_KEY = "live-columns", "live-refresh-s"
GRID_REFRESH_S = 1.0  # a grid of live tiles is refreshed at most this often (full screen: dashboard.live_refresh_s)
OFFLINE_REFRESH_S = 2.0  # while no camera shown is live: how soon one coming back shows, and all that changes
NO_VALUE = "—"


@st.cache_resource(show_spinner=False)
def live_files(live_dir: str) -> LiveFiles:
    """One reader per live folder for the whole server: every open tab shares what was read."""
    return LiveFiles(Path(live_dir))


@st.cache_resource(show_spinner=False)
def freeze_imports() -> bool:
    """Once per server: leave what is loaded by now out of every later garbage collection (``gc.freeze``).

    Streamlit runs a full ``gc.collect`` after every script run, each timed
    fragment run included (``runner.postScriptGC``); with pandas, altair, cv2
    and SQLAlchemy loaded that walk over every object took ~0.1 s of CPU, nine
    tenths of a refresh of this page. Frozen objects are still freed by their
    reference counts; only cycles among them are never collected.
    """
    gc.freeze()
    return True


@st.cache_resource(show_spinner=False)
def _greyed_cache() -> dict[tuple[str, Stamp], bytes]:
    return {}


def greyed(key: tuple[str, Stamp], data: bytes) -> bytes:
    """The frame desaturated and dimmed (JPEG), once per frame file version: a stopped camera's never changes."""
    cache = _greyed_cache()
    if key not in cache:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        if image is None:
            return data
        dimmed = (image.astype(np.float32) * 0.45 + 40).astype(np.uint8)
        if len(cache) > 256:  # old versions of frames no longer shown
            cache.clear()
        cache[key] = cv2.imencode(".jpg", cv2.cvtColor(dimmed, cv2.COLOR_GRAY2BGR), [cv2.IMWRITE_JPEG_QUALITY, 75])[1].tobytes()
    return cache[key]


def _number(value: object, suffix: str = "", digits: int = 1) -> str:
    return NO_VALUE if value is None else f"{value:.{digits}f}{suffix}" if isinstance(value, float) else f"{value}{suffix}"


def markdown_table(header: tuple[str, ...], rows: list[tuple]) -> str:
    """A small table as Markdown: a string to send, where a dataframe costs an Arrow table every refresh."""
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(":--" if i == 0 else "--:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) if rows else "none"


def _counts_rows(counts: dict) -> list[tuple]:
    return sorted(counts.items())


def _occupancy_rows(occupancy: dict) -> list[tuple]:
    return [(zone, name, n) for zone, by_class in sorted(occupancy.items()) for name, n in sorted(by_class.items())]


def _lines_rows(line_counts: dict) -> list[tuple]:
    return [(line, name, v.get("in", 0), v.get("out", 0))
            for line, by_class in sorted(line_counts.items()) for name, v in sorted(by_class.items())]  # fmt: skip


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


def offline_line(s: CameraStatus, health: str, clock: Clock) -> str:
    """Since when the tile's numbers are not current, in site time, from the worker's last status."""
    last = f"{clock.fmt(s.updated_ts)} {clock.label}"
    if health == "disconnected":
        retry = f", retrying every {s.backoff_s:.0f} s" if s.backoff_s and not s.ended else ""
        return f"Camera disconnected ({s.reconnects} reconnects{retry}); last status {last}"
    if not s.updated_ts:
        return "Offline: this camera's worker has never reported"
    return f"Offline since {last}"


def _frame(files: LiveFiles, camera: LiveCamera, dim: bool, caption: str) -> None:
    found = files.frame(camera)
    if found is None:
        st.info("No frame yet.")
        return
    stamp, data = found
    st.image(greyed((str(camera.frame_path), stamp), data) if dim else data, caption=caption, width="stretch")


def _header(camera: LiveCamera, health: str, why: str) -> None:
    color, icon = BADGES[health]
    st.subheader(camera.camera)
    st.badge(f"{health}: {why}", color=color, icon=icon)


def _show_one(name: str) -> None:
    st.query_params[CAMERA_PARAM] = name


def _show_all() -> None:
    st.query_params.pop(CAMERA_PARAM, None)


def camera_tile(files: LiveFiles, camera: LiveCamera, stale_after_s: float, clock: Clock) -> None:
    """A compact tile: name, health, frame (greyed when offline), four numbers ("—" when offline)."""
    s = camera.status
    health, why = s.health(stale_after_s)
    down = health in OFFLINE
    with st.container(border=True, key=f"live-tile-{camera.camera}"):
        _header(camera, health, why)
        if down:
            st.caption(offline_line(s, health, clock))
            if s.last_error:
                st.caption(f"Last error: {s.last_error}")
        _frame(files, camera, down, f"{camera.camera} · {'last frame, offline' if down else 'latest frame'}")
        a, b, c, d = st.columns(4)
        a.metric("FPS in", NO_VALUE if down else _number(s.fps_in))
        b.metric("FPS processed", NO_VALUE if down else _number(s.fps_out))
        c.metric("Lag", NO_VALUE if down else _number(s.lag_s, " s", 2))
        d.metric("In view", NO_VALUE if down else _number(sum(s.visible.values())))
        st.button("Full screen", key=f"live-full-{camera.camera}", icon=":material/fullscreen:", on_click=_show_one,
                  args=(camera.camera,), width="stretch")  # fmt: skip


def camera_full(files: LiveFiles, camera: LiveCamera, stale_after_s: float, clock: Clock) -> None:
    """One camera with every number and table; greyed as its tile when offline."""
    s = camera.status
    health, why = s.health(stale_after_s)
    down = health in OFFLINE
    st.button("All cameras", key="live-all", icon=":material/grid_view:", on_click=_show_all)
    _header(camera, health, why)
    if down:
        st.caption(offline_line(s, health, clock))
    if health not in ("live", "not segmenting") and s.last_error:
        st.error(f"Last error: {s.last_error}")
    st.caption(f"source: {s.source}")  # published already redacted by the worker
    picture, numbers = st.columns([3, 1])
    with picture:
        _frame(files, camera, down, f"{camera.camera} · {'last frame, offline' if down else 'latest frame'}")
    with numbers:
        a, b = st.columns(2)
        a.metric("FPS in", NO_VALUE if down else _number(s.fps_in))
        b.metric("FPS processed", NO_VALUE if down else _number(s.fps_out))
        a.metric("Lag", NO_VALUE if down else _number(s.lag_s, " s", 2))
        b.metric("Dropped", _number(s.dropped))
        a.metric("Reconnects", _number(s.reconnects))
        b.metric("Frames", _number(s.frames))
        if s.worker_restarts is not None:
            a.metric("Worker restarts", _number(s.worker_restarts))
        b.metric("Alarms", _number(s.alarms))
    if down:
        st.caption("Visible and in-zone counts are not shown: the camera is offline.")
    else:
        left, right = st.columns(2)
        with left:
            st.markdown("**Visible now**")
            st.markdown(markdown_table(("class", "visible"), _counts_rows(s.visible)))
        with right:
            st.markdown("**In zones now**")
            st.markdown(markdown_table(("zone", "class", "inside"), _occupancy_rows(s.occupancy)))
    if s.line_counts:
        st.markdown("**Line counts (this run)**")
        st.markdown(markdown_table(("line", "class", "in", "out"), _lines_rows(s.line_counts)))
    if s.unique:
        st.caption("Unique objects this run: " + ", ".join(f"{k} {v}" for k, v in s.unique.items()))


def refresh_s(cameras: list[LiveCamera], stale_after_s: float, live_refresh_s: float, full_screen: bool = False) -> float:
    """How often the cameras shown are re-read, never faster than ``dashboard.live_refresh_s``: at that rate for a
    live camera full screen; at most once a second (:data:`GRID_REFRESH_S`) for a grid of live tiles, whose frames
    are thumbnails and whose numbers a worker publishes every 0.5 s; every :data:`OFFLINE_REFRESH_S` when no camera
    shown is live (or connected but not segmenting), since then only the ages change."""
    if not any(c.status.health(stale_after_s)[0] not in OFFLINE for c in cameras):
        return max(live_refresh_s, OFFLINE_REFRESH_S)
    return live_refresh_s if full_screen else max(live_refresh_s, GRID_REFRESH_S)


def grid_columns(cameras: int, choice: str) -> int:
    """Tiles per row: the choice, or by count (one camera wide, up to four two by two, more three a row)."""
    if choice != "Auto":
        return int(choice)
    return 1 if cameras <= 1 else 2 if cameras <= 4 else 3


def render() -> None:
    settings, _ = context()
    clock, stale_after_s = settings.clock, settings.dashboard.stale_after_s
    files = live_files(str(settings.live_dir))
    freeze_imports()
    title, control = st.columns([4, 1], vertical_alignment="bottom")
    title.title("Live")
    per_row = control.selectbox("Tiles per row", ("Auto", "1", "2", "3", "4"), key=COLUMNS_KEY)

    def shown() -> tuple[list[LiveCamera], str | None, LiveCamera | None, float]:
        """Every camera, the one asked for full screen (and whether it exists), and how often to refresh them."""
        cameras = files.cameras()
        wanted = st.query_params.get(CAMERA_PARAM)
        chosen = next((c for c in cameras if c.camera == wanted), None)
        fast = settings.dashboard.live_refresh_s
        return cameras, wanted, chosen, refresh_s([chosen] if chosen else cameras, stale_after_s, fast, chosen is not None)

    interval = st.session_state[REFRESH_KEY] = shown()[3]

    @st.fragment(run_every=interval)
    def cameras_view() -> None:
        cameras, wanted, chosen, needed = shown()
        if needed != interval:  # the timer is set where the fragment is defined: define it again
            st.rerun()
        segmenter_line(files.segmenter(), stale_after_s)
        if not cameras:
            st.info(f"No live cameras: no status files in {settings.live_dir}. Is `maskwatch serve` running with this config?")
            return
        if chosen is not None:
            camera_full(files, chosen, stale_after_s, clock)
            return
        if wanted:
            st.warning(f"No live camera named {wanted!r}: showing all cameras.")
        width = grid_columns(len(cameras), per_row)
        for start in range(0, len(cameras), width):
            for column, camera in zip(st.columns(width), cameras[start : start + width]):
                with column:
                    camera_tile(files, camera, stale_after_s, clock)

    cameras_view()


if __name__ == "__main__":
    render()
