"""Alarms page: filter thousands of alarms, page through them, open one, acknowledge one or the whole filtered set.

* Filters (camera, time window, severity, state, rule, zone/line, class) become one
  :class:`dashboard.queries.AlarmFilter`; its WHERE is built by
  :meth:`storage.store.Store.alarm_conditions` on the ``alarms_camera_ts`` index, and
  the list, the totals, the chart and the bulk acknowledge all use that same WHERE.
* The list is a compact table, newest first, one page at a time (LIMIT/OFFSET), in a
  fragment that re-runs every few seconds: it refreshes the rows and counts the alarms
  newer than the newest one the operator last looked at (one indexed COUNT).
* One alarm's detail: its snapshot crop beside the full-frame context, its clip, its
  delivery state (from the outbox, ``deliveries``), links to its track and clip.
  ``/alarms?alarm=<id>`` opens it; picking a row in the table sets that link.
* Acknowledging goes through :meth:`Store.acknowledge` (one alarm) or
  :meth:`Store.acknowledge_where` (the filtered set, after a confirmation naming how
  many): one conditional UPDATE each, so an alarm already acknowledged keeps who and when.
  Both callbacks check the role again: a viewer never gets the buttons, nor the effect.

Every time is shown on the site's clock (``settings.clock``), 24-hour, with its zone named.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import queries
from dashboard.links import page_link
from dashboard.queries import AlarmFilter
from dashboard.settings import Settings, User
from dashboard.widgets import bucket_for, context, pick_cameras, pick_window, show_snapshot, snapshot_path
from storage.store import Store

SEVERITIES = ("critical", "warning", "info")
STATES = ("open", "acknowledged")
SEVERITY_COLORS = {"critical": "red", "warning": "orange", "info": "blue"}
PAGE_SIZES = (25, 50, 100, 200)
REFRESH_S = 10  # how often the list re-runs and counts new alarms
MESSAGE, PENDING, SEEN, PAGE_IDS, PICKED = "alarms-message", "alarms-bulk", "alarms-seen", "alarms-page-ids", "alarms-picked"
CLIP_COLUMNS = ("event_clip",)  # events.clip (migration 0004): the alarm's MP4, relative to snapshot_dir
CONTEXT_COLUMNS = ("event_context_snapshot",)  # events.context_snapshot (0004): the whole frame, downscaled
RECORDING_S = 600  # a clip file missing this long after its alarm is reported missing, not "being recorded"


def _clear() -> None:
    queries.clear_caches(queries.alarm_page, queries.alarm_totals, queries.alarm_series, queries.alarm_detail,
                         queries.alarm_options, queries.alarm_deliveries)  # fmt: skip


def acknowledge(settings: Settings, user: User, alarm_id: str) -> None:
    """Button callback: the role is checked here too, not only by hiding the button."""
    if not user.can_edit:
        st.session_state[MESSAGE] = ("error", "Viewers cannot acknowledge alarms.")
        return
    with Store(settings.store_url) as store:
        done = store.acknowledge(alarm_id, user.name)
    _clear()
    st.session_state[MESSAGE] = (
        ("success", f"Alarm {alarm_id[:8]} acknowledged by {user.name}.") if done
        else ("warning", f"Alarm {alarm_id[:8]} was already acknowledged.")
    )  # fmt: skip


def acknowledge_filtered(settings: Settings, user: User, f: AlarmFilter, expected: int) -> None:
    """Confirm button's callback: every open alarm of ``f`` in one UPDATE; the role is checked again here."""
    st.session_state.pop(PENDING, None)
    if not user.can_edit:
        st.session_state[MESSAGE] = ("error", "Viewers cannot acknowledge alarms.")
        return
    with Store(settings.store_url) as store:
        done = store.acknowledge_where(user.name, *f.conditions())
    _clear()
    note = "" if done == expected else f" ({expected} were open when you confirmed; others changed meanwhile)"
    st.session_state[MESSAGE] = ("success", f"{done} alarm{'s' if done != 1 else ''} acknowledged by {user.name}{note}.")


def delivery_text(rows: pd.DataFrame) -> str:
    """``webhook: delivered (1 attempt) · mqtt: DEAD after 5 attempts (HTTP 500: ...)``; "" when not delivered anywhere."""
    parts = []
    for row in rows.itertuples():
        attempts = f"{row.attempts} attempt{'s' if row.attempts != 1 else ''}"
        if row.state == "delivered":
            parts.append(f"{row.channel}: delivered ({attempts})")
        else:
            status = "" if pd.isna(row.last_status) else f"HTTP {row.last_status}"
            why = ": ".join(p for p in (status, row.last_error or "") if p)
            state = "DEAD-LETTERED after" if row.state == "dead" else "pending,"
            parts.append(f"{row.channel}: {state} {attempts}" + (f" ({why})" if why else ""))
    return " · ".join(parts)


def delivery_summary(rows: pd.DataFrame) -> str:
    """One word per alarm for the table: the worst state of its channels."""
    if rows.empty:
        return "—"
    states = set(rows.state)
    return "DEAD" if "dead" in states else "pending" if "pending" in states else "delivered"


def _where(alarm: dict[str, Any]) -> str:
    return alarm.get("zone") or alarm.get("line") or "—"


def _first(alarm: dict[str, Any], names: tuple[str, ...]) -> str | None:
    return next((alarm[n] for n in names if alarm.get(n)), None)


def track_link(alarm: dict[str, Any]) -> dict[str, str] | None:
    """Query parameters of the Track explorer for the alarm's track (``/tracks?camera=..&track=<uid>``)."""
    if not alarm.get("track_uid"):
        return None
    return {"camera": alarm["camera"], "track": alarm["track_uid"]}


def alarm_detail(settings: Settings, user: User, alarm: dict[str, Any]) -> None:
    clock = settings.clock
    with st.container(border=True, key="alarms-detail"):
        st.markdown(f"**{alarm['rule']}** · {alarm['camera']} · {clock.fmt(alarm['ts'])} {clock.label} · alarm `{alarm['id']}`")
        st.badge(alarm["severity"], color=SEVERITY_COLORS.get(alarm["severity"], "gray"))
        track = "—" if alarm["track_id"] is None else str(alarm["track_id"])
        value = "" if alarm["value"] is None else f" · value {alarm['value']:g} {alarm['unit'] or ''}"
        st.write(f"{alarm['kind']} · zone/line **{_where(alarm)}** · track **{track}** ({alarm['class_name'] or '—'}){value}")
        if alarm["state"] == "acknowledged":
            st.write(f"State: acknowledged by **{alarm['acknowledged_by']}** at {clock.fmt(alarm['acknowledged_ts'])} {clock.label}")
        else:
            st.write("State: **open**")
            if user.can_edit:
                st.button("Acknowledge", key=f"ack-{alarm['id']}", on_click=acknowledge, args=(settings, user, alarm["id"]))
        text = delivery_text(queries.alarm_deliveries(settings.store_url, (alarm["id"],)))
        if "DEAD" in text:
            st.error(f"Delivery: {text}")
        else:
            st.caption(f"Delivery: {text or 'no channels'}")
        crop, frame = st.columns([1, 2])
        with crop:
            show_snapshot(settings, alarm["snapshot"], caption="snapshot (crop)")
        with frame:
            context_image = _first(alarm, CONTEXT_COLUMNS)
            if context_image:
                show_snapshot(settings, context_image, caption="full frame")
            else:
                st.caption("no full-frame context stored for this alarm")
        show_clip(settings, alarm)
        link = track_link(alarm)
        if link:
            st.page_link("tracks.py", label=f"Track {track} in the Track explorer", icon=":material/timeline:",
                         query_params=link)  # fmt: skip
            st.caption(page_link("tracks", **link))


def show_clip(settings: Settings, alarm: dict[str, Any]) -> None:
    """The event's clip: played when its file exists, "being recorded" until then, offered as a download."""
    relative = _first(alarm, CLIP_COLUMNS)
    if relative is None:
        st.caption("no clip for this alarm")
        return
    path = snapshot_path(settings, relative)
    if path is None:  # the path is stored when the alarm is raised, the file appears once encoded
        if time.time() - alarm["ts"] < RECORDING_S:
            st.info(f"Clip being recorded: {relative}")
        else:
            st.warning(f"Clip file not found: {relative} (never written, or deleted)")
        return
    st.video(path.read_bytes(), format="video/mp4")
    st.download_button("Clip file", data=path.read_bytes, file_name=path.name, mime="video/mp4",
                       key=f"alarms-clip-{alarm['id']}", on_click="ignore", icon=":material/download:")  # fmt: skip


def alarm_chart(settings: Settings, f: AlarmFilter) -> None:
    bucket = bucket_for(f.since, f.until)
    series = queries.alarm_series(settings.store_url, f, bucket)
    if series.empty:
        return
    clock = settings.clock
    order = [s for s in SEVERITIES if s in set(series.severity)] + sorted(set(series.severity) - set(SEVERITIES))
    colors = [SEVERITY_COLORS.get(s, "gray") for s in order]
    chart = (
        alt.Chart(clock.chart_frame(series), title=f"Alarms per {_span(bucket)}")
        .mark_bar()
        .encode(
            x=clock.x(f.until - f.since),
            y=alt.Y("alarms:Q", title="alarms", stack=True),
            color=alt.Color("severity:N", scale=alt.Scale(domain=order, range=colors)),
            tooltip=[clock.tooltip(), "severity:N", "alarms:Q"],
        )
    )
    st.altair_chart(chart, width="stretch")


def _span(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            n = int(seconds // size)
            return unit if n == 1 else f"{n} {unit}s"
    return f"{seconds:g} s"


def page_table(settings: Settings, page: pd.DataFrame) -> pd.DataFrame:
    """The compact rows the table shows: one line per alarm, times on the site clock."""
    clock = settings.clock
    deliveries = queries.alarm_deliveries(settings.store_url, tuple(page.id))
    return pd.DataFrame({
        f"time ({clock.label})": page.ts.map(clock.fmt),
        "camera": page.camera,
        "rule": page.rule,
        "severity": page.severity,
        "state": page.state,
        "zone/line": page.zone.fillna(page.line).fillna("—"),
        "class": page.class_name.fillna("—"),
        "track": page.track_id.astype("string").fillna("—"),
        "delivery": [delivery_summary(deliveries[deliveries.alarm_id == i]) for i in page.id],
        "acknowledged": [f"{by} {clock.fmt(ts)}" if pd.notna(by) else "" for by, ts in zip(page.acknowledged_by, page.acknowledged_ts)],
        "alarm": page.id.str[:8],
    })  # fmt: skip


def _picked_row(ids: list[str]) -> str | None:
    """The alarm of a row newly picked in the table (a pick is read once: later refreshes do not repeat it)."""
    state = st.session_state.get("alarms-table")
    rows = list(state.selection.rows) if state is not None else []
    if rows == st.session_state.get(PICKED):
        return None
    st.session_state[PICKED] = rows
    return ids[rows[0]] if rows and rows[0] < len(ids) else None


@st.fragment(run_every=REFRESH_S)
def alarm_list(settings: Settings, f: AlarmFilter) -> None:
    """The auto-refreshing part: new-alarm count and one page of the table (a store error is one line, as on a page)."""
    from dashboard.app import store_errors_shown  # app.py runs main() only as __main__

    with store_errors_shown():
        _alarm_list(settings, f)


def _alarm_list(settings: Settings, f: AlarmFilter) -> None:
    url = settings.store_url
    clock = settings.clock
    picked = _picked_row(st.session_state.get(PAGE_IDS, []))
    if picked is not None and picked != st.query_params.get("alarm"):
        st.query_params["alarm"] = picked
        st.rerun()  # the detail below the fragment shows the picked alarm
    signature = dataclasses.replace(f, since=0.0, until=0.0)
    seen = st.session_state.get(SEEN)
    if seen is None or seen[0] != signature:
        seen = (signature, queries.newest_alarm_ts(url, f) or f.since)
        st.session_state[SEEN] = seen
    new = queries.alarms_after(url, f, seen[1])
    line, button = st.columns([4, 1], vertical_alignment="center")
    with line:
        st.caption(f"{new} new alarm{'s' if new != 1 else ''} since {clock.fmt(seen[1])} {clock.label}"
                   f" (checked every {REFRESH_S} s)", help="Alarms matching the filters newer than the newest you saw.")  # fmt: skip
    with button:
        if new and st.button("Show new alarms", key="alarms-show-new"):
            st.session_state.pop(SEEN, None)
            queries.clear_caches(queries.data_extent)
            _clear()
            st.rerun()
    total, _ = queries.alarm_totals(url, f)
    size_col, number_col, summary_col = st.columns([1, 1, 3], vertical_alignment="bottom")
    with size_col:
        size = st.selectbox("Page size", PAGE_SIZES, index=1, key="alarms-page-size")
    pages = max(1, math.ceil(total / size))
    with number_col:
        number = st.number_input("Page", min_value=1, value=1, step=1, key="alarms-page")
    number = min(int(number), pages)
    page = queries.alarm_page(url, f, (number - 1) * size, size)
    first = (number - 1) * size + 1
    with summary_col:
        if total:
            st.markdown(f"Alarms **{first}–{first + len(page) - 1}** of **{total}** · page {number} of {pages} · newest first")
        else:
            st.markdown("**0** alarms match these filters.")
    st.session_state[PAGE_IDS] = list(page.id)
    if not page.empty:
        st.dataframe(page_table(settings, page), hide_index=True, key="alarms-table", on_select="rerun",
                     selection_mode="single-row", height=min(38 + 35 * len(page), 560))  # fmt: skip
        st.caption("Pick a row to open its alarm below.")


def filters(settings: Settings) -> tuple[tuple[str, ...], AlarmFilter] | None:
    url = settings.store_url
    cols = st.columns(4)
    with cols[0]:
        names, ids = pick_cameras(url, "alarms-camera")
    if not ids:
        st.info("The store has no cameras yet.")
        return None
    with cols[1]:
        window = pick_window(url, ids, "alarms-window", default="Last 7 days")
    if window is None:
        st.info("No data for this camera yet.")
        return None
    options = queries.alarm_options(url, ids, *window)
    with cols[2]:
        severities = st.multiselect("Severity", sorted({*SEVERITIES, *options["severities"]}, key=_severity_rank),
                                    key="alarms-severity", placeholder="any")  # fmt: skip
    with cols[3]:
        states = st.multiselect("State", STATES, key="alarms-state", placeholder="any")
    cols = st.columns(3)
    with cols[0]:
        rules = st.multiselect("Rule", options["rules"], key="alarms-rule", placeholder="any")
    with cols[1]:
        zones = st.multiselect("Zone / line", options["zones"], key="alarms-zone", placeholder="any")
    with cols[2]:
        classes = st.multiselect("Class", options["classes"], key="alarms-class", placeholder="any")
    return names, AlarmFilter(ids, *window, tuple(states), tuple(severities), tuple(rules), tuple(zones), tuple(classes))


def _severity_rank(severity: str) -> tuple[int, str]:
    return (SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES), severity)


def bulk_acknowledge(settings: Settings, user: User, f: AlarmFilter, still_open: int) -> None:
    """Operators: acknowledge every open alarm of the filter, after a confirmation that says how many."""
    if not user.can_edit:
        st.caption("Signed in as a viewer: acknowledging needs an operator.")
        return
    if not still_open:
        return
    pending = st.session_state.get(PENDING)
    if pending is not None and pending != f:
        st.session_state.pop(PENDING)  # the filters changed: ask again
        pending = None
    if pending is None:
        st.button(f"Acknowledge all {still_open} open alarms matching these filters…", key="alarms-bulk",
                  on_click=lambda: st.session_state.update({PENDING: f}))  # fmt: skip
        return
    with st.container(border=True):
        st.warning(f"Acknowledge **{still_open}** open alarm{'s' if still_open != 1 else ''} as **{user.name}**? "
                   "Every open alarm matching the filters above is marked acknowledged; this cannot be undone.")  # fmt: skip
        yes, no = st.columns(2)
        with yes:
            st.button(f"Yes, acknowledge {still_open}", key="alarms-bulk-confirm", type="primary",
                      on_click=acknowledge_filtered, args=(settings, user, f, still_open))  # fmt: skip
        with no:
            st.button("Cancel", key="alarms-bulk-cancel", on_click=lambda: st.session_state.pop(PENDING, None))


def render() -> None:
    settings, user = context()
    url = settings.store_url
    st.title("Alarms")
    message = st.session_state.pop(MESSAGE, None)
    if message:
        getattr(st, message[0])(message[1])
    chosen = filters(settings)
    if chosen is None:
        return
    names, f = chosen
    total, still_open = queries.alarm_totals(url, f)
    st.caption(f"{total} alarms match the filters, {still_open} of them open. Times in {settings.clock.label}, 24-hour clock.")
    bulk_acknowledge(settings, user, f, still_open)
    alarm_list(settings, f)

    wanted = st.query_params.get("alarm") or next(iter(st.session_state.get(PAGE_IDS, [])), None)
    if wanted:
        alarm = queries.alarm_detail(url, wanted)
        if alarm is None:
            st.warning(f"No alarm {wanted} in the store.")
        else:
            alarm_detail(settings, user, alarm)

    alarm_chart(settings, f)
    dead = queries.dead_letters(url, f.camera_ids)
    if not dead.empty:
        with st.expander(f"Dead-lettered deliveries ({len(dead)})", expanded=False):
            dead = dead.assign(created=dead.created.map(lambda t: settings.clock.fmt(t.timestamp())))
            st.dataframe(dead.rename(columns={"created": f"created ({settings.clock.label})"}), hide_index=True,
                         key="alarms-dead")  # fmt: skip


if __name__ == "__main__":
    render()
