"""Alarms page: the newest alarms with their snapshot, event and delivery state; operators acknowledge them.

Acknowledging goes through :meth:`storage.store.Store.acknowledge` (one
conditional UPDATE: two operators cannot both win) and records who and when.
Delivery state comes from the alarm outbox (``deliveries``, see
:mod:`delivery.outbox`): per channel, delivered, pending with its attempts,
or dead-lettered.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import queries
from dashboard.settings import Settings, User
from dashboard.widgets import context, pick_cameras, pick_window, show_snapshot
from storage.store import Store

SEVERITIES = ("critical", "warning", "info")
STATES = ("open", "acknowledged")
SEVERITY_COLORS = {"critical": "red", "warning": "orange", "info": "blue"}
PAGE_SIZES = (20, 50, 100)


def acknowledge(settings: Settings, user: User, alarm_id: str) -> None:
    """Button callback: the role is checked here too, not only by hiding the button."""
    if not user.can_edit:
        st.session_state["alarms-message"] = ("error", "Viewers cannot acknowledge alarms.")
        return
    with Store(settings.store_url) as store:
        done = store.acknowledge(alarm_id, user.name)
    queries.clear_caches(queries.alarm_feed)
    st.session_state["alarms-message"] = (
        ("success", f"Alarm {alarm_id[:8]} acknowledged by {user.name}.") if done
        else ("warning", f"Alarm {alarm_id[:8]} was already acknowledged.")
    )  # fmt: skip


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


def alarm_card(settings: Settings, user: User, alarm: pd.Series, delivery: pd.DataFrame) -> None:
    with st.container(border=True):
        picture, details, action = st.columns([1, 3, 1])
        with picture:
            show_snapshot(settings, alarm.snapshot)
        with details:
            st.markdown(f"**{alarm.rule}** · {alarm.camera} · {alarm.time:%Y-%m-%d %H:%M:%S} UTC")
            st.badge(alarm.severity, color=SEVERITY_COLORS.get(alarm.severity, "gray"))
            where = alarm.zone or alarm.line or "—"
            track = "—" if pd.isna(alarm.track_id) else str(alarm.track_id)
            value = "" if pd.isna(alarm.value) else f" · value {alarm.value:g} {alarm.unit or ''}"
            st.write(f"{alarm.kind} · zone/line **{where}** · track **{track}** ({alarm.class_name or '—'}){value}")
            if alarm.state == "acknowledged":
                st.write(f"State: acknowledged by **{alarm.acknowledged_by}** at {alarm.acknowledged:%Y-%m-%d %H:%M:%S} UTC")
            else:
                st.write("State: **open**")
            text = delivery_text(delivery)
            if "DEAD" in text:
                st.error(f"Delivery: {text}")
            elif text:
                st.caption(f"Delivery: {text}")
            else:
                st.caption("Delivery: no channels")
        with action:
            if alarm.state == "open" and user.can_edit:
                st.button("Acknowledge", key=f"ack-{alarm.id}", on_click=acknowledge, args=(settings, user, alarm.id))


def render() -> None:
    settings, user = context()
    url = settings.store_url
    st.title("Alarms")
    message = st.session_state.pop("alarms-message", None)
    if message:
        getattr(st, message[0])(message[1])
    cols = st.columns(5)
    with cols[0]:
        names, ids = pick_cameras(url, "alarms-camera")
    if not ids:
        st.info("The store has no cameras yet.")
        return
    with cols[1]:
        window = pick_window(url, ids, "alarms-window", default="Last 7 days")
    if window is None:
        st.info("No data for this camera yet.")
        return
    with cols[2]:
        states = st.multiselect("State", STATES, default=list(STATES), key="alarms-state")
    with cols[3]:
        severities = st.multiselect("Severity", SEVERITIES, default=list(SEVERITIES), key="alarms-severity")
    with cols[4]:
        limit = st.selectbox("Show", PAGE_SIZES, key="alarms-limit")
    if not user.can_edit:
        st.caption("Signed in as a viewer: acknowledging needs an operator.")

    feed, total = queries.alarm_feed(url, ids, *window, tuple(states), tuple(severities), limit)
    st.caption(f"{total} alarms match; the newest {len(feed)} shown.")
    deliveries = queries.alarm_deliveries(url, tuple(feed.id))
    for alarm in feed.itertuples(index=False):
        row = pd.Series(alarm._asdict())
        alarm_card(settings, user, row, deliveries[deliveries.alarm_id == row.id])

    dead = queries.dead_letters(url, names)
    if not dead.empty:
        with st.expander(f"Dead-lettered deliveries ({len(dead)})", expanded=False):
            st.dataframe(dead, hide_index=True, key="alarms-dead")


if __name__ == "__main__":
    render()
