"""Track explorer: one track's path over the camera's frame, its size over time, and the zones it entered.

Observations come through the store's (run, track) index and events through
the (camera, time) index over the track's lifetime, so a track is found as
fast in a month-old store as in a fresh one.
"""

from __future__ import annotations

import altair as alt
import cv2
import pandas as pd
import streamlit as st

from analytics.records import SIZE_FIELDS
from dashboard import queries
from dashboard.drawing import camera_background, draw_geometry, draw_path
from dashboard.sizes import unit_of
from dashboard.widgets import context, fmt_ts, pick_cameras, show_snapshot


def _run_label(runs: pd.DataFrame, run_id: int) -> str:
    run = runs.set_index("id").loc[run_id]
    return f"run {run_id} · {run.started:%Y-%m-%d %H:%M} · {run.tracks} tracks · {run.status}"


def render() -> None:
    settings, _ = context()
    url = settings.store_url
    st.title("Track explorer")
    left, middle, right = st.columns(3)
    with left:
        names, ids = pick_cameras(url, "tracks-camera", allow_all=False)
    if not ids:
        st.info("The store has no cameras yet.")
        return
    camera, camera_id = names[0], ids[0]
    runs = queries.camera_runs(url, camera_id)
    if runs.empty:
        st.info("This camera has no runs yet.")
        return
    with middle:
        run_id = st.selectbox("Run", list(runs.id), format_func=lambda r: _run_label(runs, r), key="tracks-run")
    candidates = queries.run_tracks(url, run_id)
    if candidates.empty:
        st.info("This run has no confirmed tracks.")
        return
    labels = dict(zip(candidates.track_id, candidates.class_name + " · " + candidates.frames_seen.astype(str) + " frames"))
    with right:
        track_id = st.selectbox("Track", list(labels), format_func=lambda t: f"{t} · {labels[t]}", key="tracks-track")
    track = queries.track_summary(url, run_id, track_id)
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
            st.dataframe(pd.DataFrame([{"measure": f, "median": v, "IQR": track[f"{f}_iqr"], "unit": unit_of(f, track["unit"])}
                                       for f, v in sizes.items()]), hide_index=True, key="tracks-sizes")  # fmt: skip

    st.subheader("Size over time")
    measure = st.selectbox("Measure", SIZE_FIELDS, index=SIZE_FIELDS.index("length"), key="tracks-measure")
    measured = path.dropna(subset=[measure])
    if measured.empty:
        st.caption(f"No {measure} measured for this track.")
    else:
        unit = unit_of(measure, measured.unit.iloc[0])
        chart = (
            alt.Chart(measured.assign(clean=measured.clean.map({True: "clean", False: "touching"}).fillna("?")))
            .mark_line(point=True)
            .encode(x=alt.X("time:T", title="time (UTC)"), y=alt.Y(f"{measure}:Q", title=f"{measure} ({unit})"),
                    color=alt.Color("clean:N", title="measurement"), tooltip=["time:T", f"{measure}:Q", "clean:N"])
        )  # fmt: skip
        st.altair_chart(chart, width="stretch")

    st.subheader("Zones and events")
    if events.empty:
        st.caption("No events for this track.")
    else:
        st.dataframe(events.drop(columns=["values_json", "snapshot"]), hide_index=True, key="tracks-events")
        enters = events[events.kind == "zone_enter"]
        if not enters.empty:
            st.caption("Zones entered: " + ", ".join(f"{z} at {t:%H:%M:%S} UTC" for z, t in zip(enters.zone, enters.time)))

if __name__ == "__main__":
    render()
