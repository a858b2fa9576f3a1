"""Track explorer: one track's path over the camera's frame, its size over time, and the zones it entered.

Observations come through the store's (run, track) index and events through
the (camera, time) index over the track's lifetime, so a track is found as
fast in a month-old store as in a fresh one.

A track can be linked to: ``/tracks?camera=<name>&track=<track_uid>`` opens
it (the page keeps those parameters up to date as tracks are picked, so the
address bar can be copied). The run and track pickers are keyed by camera and
run, so switching camera never keeps the previous camera's track.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import cv2
import pandas as pd
import streamlit as st
from sqlalchemy import select

from analytics.records import SIZE_FIELDS
from dashboard import queries
from dashboard.charts import NUMBER, significant, site_times
from dashboard.clock import TIME_TEXT, Clock
from dashboard.drawing import camera_background, draw_geometry, draw_path
from dashboard.sizes import unit_of
from dashboard.widgets import context, fmt_ts, pick_cameras, show_snapshot
from storage.schema import cameras, tracks

CAMERA_KEY, LINK_KEY = "tracks-camera", "tracks-link"


def _run_label(runs: pd.DataFrame, run_id: int, clock: Clock) -> str:
    run = runs.set_index("id").loc[run_id]
    return f"run {run_id} · {clock.fmt(run.started_ts, '%Y-%m-%d %H:%M')} · {run.tracks} tracks · {run.status}"


@st.cache_data(ttl=queries.TTL_S, show_spinner=False)
def find_track(url: str, track_uid: str) -> dict[str, Any] | None:
    """Camera, run and track id of the track with ``track_uid`` (the tracks' unique uid index); None if unknown."""
    stmt = (
        select(cameras.c.name.label("camera"), tracks.c.run_id, tracks.c.track_id)
        .join(cameras, cameras.c.id == tracks.c.camera_id)
        .where(tracks.c.track_uid == track_uid)
    )
    with queries.engine(url).connect() as conn:
        row = conn.execute(stmt).one_or_none()
    return None if row is None else dict(row._mapping)


def _param(name: str) -> str | None:
    """One query parameter as text; None when absent, empty, repeated oddly or unreadable (never an error)."""
    try:
        value = st.query_params.get(name)
    except Exception:  # a malformed address must not break the page
        return None
    if isinstance(value, list):
        value = value[-1] if value else None
    value = str(value).strip() if value is not None else None
    return value if value and len(value) <= 200 else None


def _open_link(url: str, known: dict[str, int]) -> None:
    """Select what ``?camera=…&track=…`` names, once per link (later picks are the user's); warn when it names nothing."""
    camera, uid = _param("camera"), _param("track")
    if (camera is None and uid is None) or st.session_state.get(LINK_KEY) == (camera, uid):
        return
    st.session_state[LINK_KEY] = (camera, uid)
    found = find_track(url, uid) if uid is not None else None
    if uid is not None and found is None:
        st.warning(f"The linked track {uid!r} is not in the store.")
    elif found is not None and camera is not None and found["camera"] != camera:
        st.warning(f"The linked track belongs to camera {found['camera']!r}, not {camera!r}: shown there.")
    target = found["camera"] if found is not None else camera
    if target is None:
        return
    if target not in known:
        st.warning(f"The link names camera {camera!r}, which the store does not have.")
        return
    st.session_state[CAMERA_KEY] = target
    if found is not None:
        st.session_state[f"tracks-run-{target}"] = found["run_id"]
        st.session_state[f"tracks-track-{target}-{found['run_id']}"] = found["track_id"]


def _share(camera: str, track_uid: str | None) -> None:
    """Keep the address bar pointing at what is shown, so it can be sent to a colleague."""
    try:
        if track_uid:
            st.query_params.update({"camera": camera, "track": track_uid})
        else:
            st.query_params.update({"camera": camera})
            st.query_params.pop("track", None)
        st.session_state[LINK_KEY] = (camera, track_uid)  # our own parameters are no new link to open
    except Exception:  # the page works without a shareable address
        pass


def render() -> None:
    settings, _ = context()
    url, clock = settings.store_url, settings.clock
    st.title("Track explorer")
    _open_link(url, queries.camera_ids(url))
    left, middle, right = st.columns(3)
    with left:
        names, ids = pick_cameras(url, CAMERA_KEY, allow_all=False)
    if not ids:
        st.info("The store has no cameras yet.")
        return
    camera, camera_id = names[0], ids[0]
    runs = queries.camera_runs(url, camera_id)
    if runs.empty:
        st.info("This camera has no runs yet.")
        return
    with middle:
        run_key = f"tracks-run-{camera}"  # keyed by camera: another camera's run is never kept
        if st.session_state.get(run_key) not in set(runs.id):
            st.session_state.pop(run_key, None)
        run_id = st.selectbox("Run", list(runs.id), format_func=lambda r: _run_label(runs, r, clock), key=run_key)
    candidates = queries.run_tracks(url, run_id)
    if candidates.empty:
        st.info("This run has no confirmed tracks.")
        return
    labels = dict(zip(candidates.track_id, candidates.class_name + " · " + candidates.frames_seen.astype(str) + " frames"))
    with right:
        track_key = f"tracks-track-{camera}-{run_id}"  # keyed by camera and run: a switch starts from their first track
        if st.session_state.get(track_key) not in labels:
            st.session_state.pop(track_key, None)
        track_id = st.selectbox("Track", list(labels), format_func=lambda t: f"{t} · {labels[t]}", key=track_key)
    track = queries.track_summary(url, run_id, track_id)
    _share(camera, track["track_uid"])
    path = queries.trajectory(url, run_id, track_id)
    events = queries.track_events(url, camera_id, run_id, track_id, track["first_ts"], track["last_ts"])

    st.markdown(
        f"**Track {track_id}** ({track['class_name']}) · seen {fmt_ts(track['first_ts'])} → {fmt_ts(track['last_ts'])}"
        f" · {track['frames_seen']} frames · {len(path)} stored observations"
        + (f" · uid `{track['track_uid']}`" if track["track_uid"] else "")  # none in runs stored before uids
    )
    picture, details = st.columns([3, 2])
    with picture:
        run = queries.latest_run(url, camera_id, camera)
        source = runs.set_index("id").loc[run_id, "source"]
        background, where = camera_background(settings.live_dir, camera, source)
        geometry = run["geometry"] if run else {}
        saved = queries.saved_geometry(url, camera)
        image = draw_path(draw_geometry(background, saved[0] if saved else geometry), path.cx.to_numpy(), path.cy.to_numpy())
        st.image(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), caption=f"Path (green: first seen, red: last) over {where}",
                 width="stretch")  # fmt: skip
    with details:
        show_snapshot(settings, track.get("snapshot"), "track snapshot")
        sizes = {f: track[f"{f}_median"] for f in SIZE_FIELDS if track.get(f"{f}_median") is not None}
        if sizes:
            st.dataframe(pd.DataFrame([{"measure": f, "median": significant(v), "IQR": significant(track[f"{f}_iqr"]),
                                        "unit": unit_of(f, track["unit"])}
                                       for f, v in sizes.items()]), hide_index=True, key="tracks-sizes")  # fmt: skip

    st.subheader("Size over time")
    measure = st.selectbox("Measure", SIZE_FIELDS, index=SIZE_FIELDS.index("length"), key="tracks-measure")
    measured = path.dropna(subset=[measure])
    if measured.empty:
        st.caption(f"No {measure} measured for this track.")
    else:
        unit = unit_of(measure, measured.unit.iloc[0])
        shown = clock.chart_frame(measured.assign(
            clean=measured.clean.map({True: "clean", False: "touching"}).fillna("?")))  # fmt: skip
        span = float(measured.ts.max() - measured.ts.min())
        chart = (
            alt.Chart(shown[["time", TIME_TEXT, measure, "clean"]])
            .mark_line(point=True)
            .encode(x=clock.x(span), y=alt.Y(f"{measure}:Q", title=f"{measure} ({unit})", axis=alt.Axis(format=NUMBER)),
                    color=alt.Color("clean:N", title="measurement"),
                    tooltip=[clock.tooltip(), alt.Tooltip(f"{measure}:Q", title=f"{measure} ({unit})", format=NUMBER),
                             alt.Tooltip("clean:N", title="measurement")])
        )  # fmt: skip
        st.altair_chart(chart, width="stretch")

    st.subheader("Zones and events")
    if events.empty:
        st.caption("No events for this track.")
    else:
        st.dataframe(site_times(events.drop(columns=["values_json", "snapshot"]), clock, "time"), hide_index=True,
                     key="tracks-events")  # fmt: skip
        enters = events[events.kind == "zone_enter"]
        if not enters.empty:
            st.caption("Zones entered: " + ", ".join(f"{z} at {clock.fmt(t.timestamp(), '%H:%M:%S')}"
                                                     for z, t in zip(enters.zone, enters.time)) + f" ({clock.label})")  # fmt: skip

if __name__ == "__main__":
    render()
