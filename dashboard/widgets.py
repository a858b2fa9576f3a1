"""Controls every page shares: the page context, camera and time-window pickers, snapshot display."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import streamlit as st

from dashboard import queries
from dashboard.settings import Settings, User

SETTINGS_KEY, CONTEXT_USER_KEY = "dashboard_settings", "dashboard_page_user"
ALL_CAMERAS = "All cameras"
WINDOWS_S = {"Last hour": 3600, "Last 6 hours": 6 * 3600, "Last 24 hours": 86400, "Last 7 days": 7 * 86400,
             "Last 30 days": 30 * 86400, "All": None, "Custom dates": None}  # fmt: skip
BUCKETS_S = (1, 10, 60, 300, 900, 3600, 6 * 3600, 86400)


def set_context(settings: Settings, user: User) -> None:
    """app.py's hand-over to the page it runs (both run in the same script run)."""
    st.session_state[SETTINGS_KEY], st.session_state[CONTEXT_USER_KEY] = settings, user


def context() -> tuple[Settings, User]:
    return st.session_state[SETTINGS_KEY], st.session_state[CONTEXT_USER_KEY]


def pick_cameras(url: str, key: str, allow_all: bool = True) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Camera names and ids chosen (every camera under "All cameras"); empty when the store has none."""
    known = queries.camera_ids(url)
    if not known:
        return (), ()
    options = ([ALL_CAMERAS] if allow_all and len(known) > 1 else []) + list(known)
    choice = st.selectbox("Camera", options, key=key)
    names = tuple(known) if choice == ALL_CAMERAS else (choice,)
    return names, tuple(known[n] for n in names)


def pick_window(url: str, ids: tuple[int, ...], key: str, default: str = "Last 24 hours") -> tuple[float, float] | None:
    """``[since, until)`` in epoch seconds, anchored at the latest data: a store whose service stopped last week
    still opens on its last day, not on an empty chart. None when the cameras have no data."""
    extent = queries.data_extent(url, ids)
    if extent is None:
        return None
    first, last = extent
    until = last + 1.0
    clock = context()[0].clock
    choice = st.selectbox("Time window", list(WINDOWS_S), index=list(WINDOWS_S).index(default), key=key)
    if choice == "Custom dates":
        last_day = dt.datetime.fromtimestamp(last, clock.tz).date()
        dates = st.date_input(f"Dates ({clock.label})", value=(last_day - dt.timedelta(days=1), last_day), key=f"{key}-dates")
        if len(dates) != 2:
            st.stop()  # the second date is still being picked
        start = dt.datetime.combine(dates[0], dt.time(), clock.tz)
        end = dt.datetime.combine(dates[1] + dt.timedelta(days=1), dt.time(), clock.tz)
        return start.timestamp(), end.timestamp()
    span = WINDOWS_S[choice]
    since = first if span is None else max(first, until - span)
    st.caption(f"{clock.fmt(since)} → {clock.fmt(until)} {clock.label} (ends at the latest data)")
    return since, until


def bucket_for(since: float, until: float, points: int = 200) -> int:
    """The finest bucket that keeps a chart under ``points`` points."""
    return next((b for b in BUCKETS_S if (until - since) / b <= points), BUCKETS_S[-1])


def fmt_ts(ts: float | None) -> str:
    """``ts`` on the site's clock, with its zone: what every page shows for a single time."""
    clock = context()[0].clock
    return f"{clock.fmt(ts)} {clock.label}"


def snapshot_path(settings: Settings, relative: str | None) -> Path | None:
    """A stored snapshot's file, only if it lies inside the snapshot folder (a path in the store is not trusted)."""
    if not relative:
        return None
    root = settings.snapshot_dir.resolve()
    path = (root / relative).resolve()
    return path if path.is_relative_to(root) and path.is_file() else None


def show_snapshot(settings: Settings, relative: str | None, caption: str | None = None, width: int | str = "content") -> None:
    path = snapshot_path(settings, relative)
    if path is None:
        st.caption("no snapshot" if not relative else f"snapshot not found: {relative}")
    else:
        st.image(path.read_bytes(), caption=caption, width=width)
