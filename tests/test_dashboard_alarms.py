"""The Alarms page at scale, through Streamlit's AppTest on a copy of a real demo store with 150 more alarms.

The demo run gives one real alarm (with its event, snapshot and track); :func:`seed`
adds a second camera and 150 alarms of varied rule, severity, zone or line,
class and state over the two hours before it. Expected rows are always read from
the store with plain SQL, never through the dashboard's own queries.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import sqlite3
import time
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from streamlit.testing.v1 import AppTest
from test_dashboard import PASSWORDS, configure, copy_store, open_app, rows, run_demo, texts, with_users

from dashboard.passwords import hash_password

SEEDED = 150
RULES, SEVERITIES = ("intrusion", "loitering", "too-long"), ("critical", "warning", "info")
PLACES = (("zone", "loading"), ("zone", "aisle"), ("line", "door"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def hashes() -> dict[str, str]:
    return {name: hash_password(password) for name, password in PASSWORDS.items()}


def insert_alarm(conn: sqlite3.Connection, camera_id: int, run_id: int, ts: float, *, rule: str = "intrusion",
                 severity: str = "critical", place: tuple[str, str] = ("zone", "loading"), class_name: str = "person",
                 state: str = "open", by: str | None = None, by_ts: float | None = None, track: int = 1) -> str:  # fmt: skip
    """One event and its alarm, as the pipeline writes them."""
    event_id, alarm_id, uid = str(uuid.uuid4()), str(uuid.uuid4()), uuid.uuid4().hex
    kind = "line_cross" if place[0] == "line" else "zone_enter"
    conn.execute(
        "INSERT INTO events (id, run_id, camera_id, ts, frame, pts, kind, track_id, track_uid, class_name, zone, line, "
        "rule, value, unit, values_json, snapshot) VALUES (?, ?, ?, ?, 0, 0.0, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, NULL)",
        (event_id, run_id, camera_id, ts, kind, track, uid, class_name, place[1] if place[0] == "zone" else None,
         place[1] if place[0] == "line" else None, rule, json.dumps({})),
    )  # fmt: skip
    conn.execute(
        "INSERT INTO alarms (id, event_id, run_id, camera_id, ts, rule, severity, track_id, track_uid, state, "
        "acknowledged_by, acknowledged_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (alarm_id, event_id, run_id, camera_id, ts, rule, severity, track, uid, state, by, by_ts),
    )
    return alarm_id


def seed(db: Path) -> None:
    """A second camera ("dock") and 150 alarms over the two hours before the demo's data."""
    rng = random.Random(11)
    with sqlite3.connect(db) as conn:
        [(demo_camera, demo_run, first)] = conn.execute("SELECT camera_id, id, started_ts FROM runs").fetchall()
        conn.execute("INSERT INTO cameras (name, unit, created_ts) VALUES ('dock', 'px', ?)", (first - 7200,))
        dock = conn.execute("SELECT id FROM cameras WHERE name = 'dock'").fetchone()[0]
        conn.execute("INSERT INTO runs (camera_id, source, segmenter, started_ts, status, config_json) "
                     "VALUES (?, 'rtsp://dock/s', 'motion', ?, 'finished', '{}')", (dock, first - 7200))  # fmt: skip
        dock_run = conn.execute("SELECT id FROM runs WHERE camera_id = ?", (dock,)).fetchone()[0]
        for i in range(SEEDED):
            camera, run = (dock, dock_run) if i % 3 else (demo_camera, demo_run)
            acked = rng.random() < 0.3
            insert_alarm(conn, camera, run, first - 7200 + i * 45.0 + rng.random(), rule=rng.choice(RULES),
                         severity=rng.choice(SEVERITIES), place=rng.choice(PLACES),
                         class_name=rng.choice(("person", "forklift")), state="acknowledged" if acked else "open",
                         by="earlier" if acked else None, by_ts=first - 60.0 if acked else None, track=i)  # fmt: skip


@pytest.fixture
def big(demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A seeded copy of the demo store, configured without auth (everyone an operator)."""
    db = copy_store(demo, tmp_path)
    seed(db)
    configure(monkeypatch, tmp_path, db, demo / "snapshots")
    return db


def table(at: AppTest):
    return at.dataframe(key="alarms-table").value


def shown_total(at: AppTest) -> int:
    found = [re.search(r"of \*\*(\d+)\*\*", m.value) for m in at.markdown]
    found = [m for m in found if m]
    if not found:
        assert any("**0** alarms match" in m.value for m in at.markdown)
        return 0
    return int(found[0].group(1))


def newest_first(db: Path, where: str = "1 = 1", *params: object, limit: int = 1000, offset: int = 0) -> list[str]:
    """Alarm ids matching ``where`` (on alarms a joined with events e), newest first, as 8-character prefixes."""
    found = rows(db, f"SELECT a.id FROM alarms a JOIN events e ON e.id = a.event_id WHERE {where} "
                     "ORDER BY a.ts DESC, a.id LIMIT ? OFFSET ?", *params, limit, offset)  # fmt: skip
    return [i[:8] for (i,) in found]


def test_filter_options_come_from_the_store_and_filters_narrow_the_list(big: Path) -> None:
    at = open_app("alarms.py")
    assert not at.exception
    assert shown_total(at) == SEEDED + 1 and "151 alarms match the filters" in texts(at)
    assert at.multiselect(key="alarms-rule").options == sorted({r for (r,) in rows(big, "SELECT DISTINCT rule FROM alarms")})
    places = rows(big, "SELECT zone FROM events e JOIN alarms a ON a.event_id = e.id WHERE zone IS NOT NULL UNION "
                       "SELECT line FROM events e JOIN alarms a ON a.event_id = e.id WHERE line IS NOT NULL")  # fmt: skip
    assert at.multiselect(key="alarms-zone").options == sorted(p for (p,) in places)
    classes = rows(big, "SELECT DISTINCT class_name FROM events e JOIN alarms a ON a.event_id = e.id")
    assert at.multiselect(key="alarms-class").options == sorted(c for (c,) in classes)

    at.selectbox(key="alarms-page-size").select(200).run()
    at.selectbox(key="alarms-camera").select("dock").run()
    at.multiselect(key="alarms-severity").set_value(["critical", "warning"]).run()
    at.multiselect(key="alarms-zone").set_value(["loading", "door"]).run()
    at.multiselect(key="alarms-class").set_value(["person"]).run()
    at.multiselect(key="alarms-state").set_value(["open"]).run()
    at.multiselect(key="alarms-rule").set_value(["intrusion", "loitering"]).run()
    assert not at.exception, [e.value for e in at.exception]
    expected = newest_first(
        big, "a.camera_id = (SELECT id FROM cameras WHERE name = 'dock') AND a.severity IN ('critical', 'warning') "
             "AND (e.zone IN ('loading', 'door') OR e.line IN ('loading', 'door')) AND e.class_name = 'person' "
             "AND a.state = 'open' AND a.rule IN ('intrusion', 'loitering')",
    )  # fmt: skip
    assert 3 <= len(expected) < 40  # narrowed, not emptied
    assert list(table(at).alarm) == expected and shown_total(at) == len(expected)
    assert set(table(at).camera) == {"dock"} and set(table(at).state) == {"open"}
    assert at.get("vega_lite_chart"), "alarms-over-time chart"


def test_paging_shows_the_right_slice_and_the_total(big: Path) -> None:
    at = open_app("alarms.py")
    at.selectbox(key="alarms-page-size").select(25).run()
    assert list(table(at).alarm) == newest_first(big, limit=25)
    at.number_input(key="alarms-page").set_value(3).run()
    assert list(table(at).alarm) == newest_first(big, limit=25, offset=50)
    assert shown_total(at) == SEEDED + 1 and "Alarms **51–75** of **151** · page 3 of 7" in texts(at)
    at.number_input(key="alarms-page").set_value(7).run()
    assert list(table(at).alarm) == newest_first(big, limit=25, offset=150) and len(table(at)) == 1
    times = list(table(at).iloc[:, 0])
    assert times == sorted(times, reverse=True)


def _all_alarms(db: Path) -> dict[str, tuple]:
    return {r[0]: r[1:] for r in rows(db, "SELECT id, state, acknowledged_by, acknowledged_ts FROM alarms")}


def test_bulk_acknowledge_changes_exactly_the_filtered_open_alarms(demo: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  hashes: dict[str, str]) -> None:  # fmt: skip
    db = copy_store(demo, tmp_path)
    seed(db)
    configure(monkeypatch, tmp_path, db, demo / "snapshots", users=with_users(monkeypatch, hashes))
    at = open_app("alarms.py", login="olivia")
    at.selectbox(key="alarms-camera").select("dock").run()
    at.multiselect(key="alarms-severity").set_value(["critical"]).run()
    at.multiselect(key="alarms-zone").set_value(["loading"]).run()
    where = ("a.camera_id = (SELECT id FROM cameras WHERE name = 'dock') AND a.severity = 'critical' "
             "AND (e.zone = 'loading' OR e.line = 'loading')")  # fmt: skip
    matching = {i for (i,) in rows(db, f"SELECT a.id FROM alarms a JOIN events e ON e.id = a.event_id WHERE {where}")}
    before = _all_alarms(db)
    to_ack = {i for i in matching if before[i][0] == "open"}
    assert to_ack and matching - to_ack, "the filter must hold open and already-acknowledged alarms"
    at.button(key="alarms-bulk").click().run()
    assert f"Acknowledge **{len(to_ack)}** open alarms as **olivia**?" in texts(at)
    assert _all_alarms(db) == before  # nothing before the confirmation
    start = time.time()
    at.button(key="alarms-bulk-confirm").click().run()
    assert not at.exception, [e.value for e in at.exception]
    after = _all_alarms(db)
    changed = {i for i in after if after[i] != before[i]}
    assert changed == to_ack
    assert all(after[i][:2] == ("acknowledged", "olivia") and start <= after[i][2] <= time.time() for i in to_ack)
    assert all(after[i] == before[i] for i in matching - to_ack)  # already acknowledged: who and when kept
    assert f"{len(to_ack)} alarms acknowledged by olivia." in texts(at)
    assert "alarms-bulk" not in [b.key for b in at.button]  # nothing open is left in the filter
    assert "0 of them open" in texts(at)


def test_a_viewer_cannot_bulk_acknowledge(demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          hashes: dict[str, str]) -> None:  # fmt: skip
    from dashboard import alarms as page
    from dashboard.queries import AlarmFilter
    from dashboard.settings import User, load_settings

    db = copy_store(demo, tmp_path)
    seed(db)
    config = configure(monkeypatch, tmp_path, db, demo / "snapshots", users=with_users(monkeypatch, hashes))
    at = open_app("alarms.py", login="victor")
    keys = {b.key for b in at.button}
    assert not keys & {"alarms-bulk", "alarms-bulk-confirm"} and not [k for k in keys if k and k.startswith("ack-")]
    assert "acknowledging needs an operator" in texts(at)
    before = _all_alarms(db)
    settings = load_settings(["--config", str(config)])
    viewer = User("victor", settings.role("victor"))
    page.acknowledge_filtered(settings, viewer, AlarmFilter(tuple(c for (c,) in rows(db, "SELECT id FROM cameras")),
                                                            0.0, float("inf")), len(before))  # fmt: skip
    assert _all_alarms(db) == before  # the callback checks the role itself


def test_deep_link_opens_the_alarm(big: Path) -> None:
    old = newest_first(big, "a.state = 'open'", limit=1, offset=100)[0]
    [(alarm_id, ts, rule)] = rows(big, "SELECT id, ts, rule FROM alarms WHERE id LIKE ?", old + "%")
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py"), default_timeout=60).run()
    at.switch_page("alarms.py")
    at.query_params["alarm"] = alarm_id
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert old not in list(table(at).alarm)  # not on the first page, opened all the same
    assert any(alarm_id in m.value and rule in m.value for m in at.markdown)
    assert at.button(key=f"ack-{alarm_id}")
    at.button(key=f"ack-{alarm_id}").click().run()
    assert rows(big, "SELECT state, acknowledged_by FROM alarms WHERE id = ?", alarm_id) == [("acknowledged", "anonymous")]
    at.query_params["alarm"] = "no-such-alarm"
    at.run()
    assert "No alarm no-such-alarm in the store." in texts(at)


def test_new_alarm_count_grows_when_an_alarm_arrives(big: Path) -> None:
    at = open_app("alarms.py")
    assert "0 new alarms since" in texts(at)
    with sqlite3.connect(big) as conn:
        camera, run, newest = conn.execute("SELECT camera_id, run_id, MAX(ts) FROM alarms").fetchone()
        insert_alarm(conn, camera, run, newest + 5.0)
        insert_alarm(conn, camera, run, newest + 6.0)
    at.run()
    assert "2 new alarms since" in texts(at)
    at.button(key="alarms-show-new").click().run()
    assert "0 new alarms since" in texts(at) and shown_total(at) == SEEDED + 3


def test_times_are_shown_in_the_configured_zone(demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = copy_store(demo, tmp_path)
    seed(db)
    configure(monkeypatch, tmp_path, db, demo / "snapshots", timezone="Asia/Kolkata")  # UTC+5:30: no hour-only shift
    at = open_app("alarms.py")
    zone = ZoneInfo("Asia/Kolkata")
    ts = [t for (t,) in rows(db, "SELECT ts FROM alarms ORDER BY ts DESC, id LIMIT 50")]
    shown = table(at)["time (Asia/Kolkata)"]
    assert list(shown) == [dt.datetime.fromtimestamp(t, zone).strftime("%Y-%m-%d %H:%M:%S") for t in ts]
    [(first, by_ts)] = rows(db, "SELECT ts, acknowledged_ts FROM alarms WHERE state = 'acknowledged' LIMIT 1")
    assert f"earlier {dt.datetime.fromtimestamp(by_ts, zone):%Y-%m-%d %H:%M:%S}" in set(table(at).acknowledged)
    assert any(f"{dt.datetime.fromtimestamp(ts[0], zone):%Y-%m-%d %H:%M:%S} Asia/Kolkata" in m.value for m in at.markdown)
    assert "UTC" not in " ".join(m.value for m in at.markdown)




# -- in a real browser -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served_demo(demo: Path, tmp_path_factory: pytest.TempPathFactory):
    """``streamlit run dashboard/app.py`` over the demo store (with its alarm's clip), as test_dashboard_browser serves it."""
    browser = pytest.importorskip("test_dashboard_browser")  # skips, saying why, without Playwright or Chromium

    import yaml

    site = tmp_path_factory.mktemp("site") / "site.yaml"
    site.write_text(yaml.safe_dump({
        "store": {"url": f"sqlite:///{demo / 'maskwatch.db'}", "snapshot_dir": str(demo / "snapshots")},
        "service": {"live_dir": str(tmp_path_factory.mktemp("no-live"))},
        "dashboard": {"auth": {"users": {"olivia": {"role": "operator", "password_hash": hash_password(PASSWORDS["olivia"])}}}},
    }))  # fmt: skip
    with browser.dashboard_served(browser.streamlit_run(site)) as url:
        yield browser, url


def test_a_clip_plays_in_chromium(demo: Path, served_demo) -> None:
    browser, url = served_demo
    if "clip" not in {c for (_, c, *_) in rows(demo / "maskwatch.db", "PRAGMA table_info(events)")}:
        pytest.skip("event clips have not landed: the store has no events.clip (migration 0004)")
    clips = rows(demo / "maskwatch.db", "SELECT e.clip FROM alarms a JOIN events e ON e.id = a.event_id")
    assert clips and all(c and (demo / "snapshots" / c).is_file() for (c,) in clips), clips
    with browser.sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=browser.CHROMIUM, args=["--no-sandbox"])
        try:
            page = chromium.new_page(viewport={"width": 1500, "height": 1000})
            page.set_default_timeout(30_000)
            page.goto(url)
            page.get_by_label("Username").fill("olivia")
            page.get_by_label("Password", exact=True).fill(PASSWORDS["olivia"])
            page.get_by_role("button", name="Log in").click()
            page.get_by_test_id("stSidebarNav").get_by_role("link", name="Alarms").click()
            page.get_by_role("heading", name="Alarms", exact=True).wait_for()
            page.locator("video").first.wait_for()
            # read in the same call that saw it ready: a rerun may replace the element (readyState back to 1) just after
            state = page.wait_for_function(
                "() => { const v = document.querySelector('video');"
                " return v && (v.readyState >= 2 || v.error)"
                " ? {ready: v.readyState, error: v.error && v.error.code, duration: v.duration} : null; }"
            ).json_value()
            browser.SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.locator("video").first.scroll_into_view_if_needed()
            page.screenshot(path=browser.SCREENSHOTS / "alarms-clip.png")
            assert state["error"] is None and state["ready"] >= 2 and state["duration"] > 1, state
            assert page.get_by_test_id("stException").count() == 0
            [(alarm_id,)] = rows(demo / "maskwatch.db", "SELECT id FROM alarms")
            grid = page.get_by_test_id("stDataFrame").first
            grid.scroll_into_view_if_needed()
            box = grid.bounding_box()
            page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)  # the first row's selection box
            page.wait_for_function(f"() => location.search === '?alarm={alarm_id}'")  # a picked row: the alarm's address
        finally:
            chromium.close()


def test_acknowledge_where_is_one_conditional_update(store_url: str) -> None:
    """Store.acknowledge_where on both dialects: only the open alarms matching every condition; who and when kept."""
    from sqlalchemy import select

    from storage.schema import alarms, events
    from storage.store import Store

    with Store(store_url) as store:
        run = store.start_run("gate", "rtsp://gate/s", segmenter="motion", unit="px", started_ts=1000.0)
        with store.engine.connect() as conn:
            camera = conn.execute(select(alarms.c.camera_id).limit(1)).scalar() or 1
        ev, al = [], []
        for i in range(24):
            ev.append({"id": f"e{i}", "run_id": run, "camera_id": camera, "ts": 1000.0 + i, "frame": i, "pts": 0.0,
                       "kind": "zone_enter", "track_id": i, "class_name": ("person", "forklift")[i % 2],
                       "zone": ("dock", "aisle", None)[i % 3], "line": "door" if i % 3 == 2 else None,
                       "values_json": "{}"})  # fmt: skip
            acked = i % 4 == 0
            al.append({"id": f"a{i}", "event_id": f"e{i}", "run_id": run, "camera_id": camera, "ts": 1000.0 + i,
                       "rule": ("intrusion", "loitering")[i % 2 == 0 and i % 8 == 0], "severity": ("critical", "info")[i % 5 == 0],
                       "track_id": i, "state": "acknowledged" if acked else "open", "acknowledged_by": "earlier" if acked else None,
                       "acknowledged_ts": 5.0 if acked else None})  # fmt: skip
        with store.engine.begin() as conn:
            conn.execute(events.insert(), ev)
            conn.execute(alarms.insert(), al)
        conditions = Store.alarm_conditions([camera], 1002.0, 1020.0, severities=["critical"], zones=["dock", "door"],
                                            classes=["person"])  # fmt: skip
        expected = {a["id"] for a, e in zip(al, ev) if 1002 <= a["ts"] < 1020 and a["severity"] == "critical"
                    and (e["zone"] in ("dock", "door") or e["line"] in ("dock", "door")) and e["class_name"] == "person"}  # fmt: skip
        to_ack = {a["id"] for a in al if a["id"] in expected and a["state"] == "open"}
        assert to_ack and expected - to_ack
        assert store.acknowledge_where("olivia", *conditions, ts=7.0) == len(to_ack)
        assert store.acknowledge_where("olivia", *conditions, ts=8.0) == 0  # nothing open is left: nobody re-stamped
        with store.engine.connect() as conn:
            after = {r.id: (r.state, r.acknowledged_by, r.acknowledged_ts) for r in conn.execute(select(alarms))}
    before = {a["id"]: (a["state"], a["acknowledged_by"], a["acknowledged_ts"]) for a in al}
    assert {i for i in after if after[i] != before[i]} == to_ack
    assert all(after[i] == ("acknowledged", "olivia", 7.0) for i in to_ack)


def test_detail_plays_the_clip_or_says_it_is_being_recorded(demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    db = copy_store(demo, tmp_path)
    if "clip" not in {c for (_, c, *_) in rows(db, "PRAGMA table_info(events)")}:
        pytest.skip("event clips have not landed: the store has no events.clip (migration 0004)")
    [(snapshot, context_image, clip)] = rows(db, "SELECT e.snapshot, e.context_snapshot, e.clip FROM alarms a "
                                                 "JOIN events e ON e.id = a.event_id")  # fmt: skip
    snapshots = tmp_path / "snapshots"
    shutil.copytree(demo / "snapshots", snapshots)
    configure(monkeypatch, tmp_path, db, snapshots)
    at = open_app("alarms.py")
    assert len(at.get("image")) == 2  # the crop beside the full frame
    assert len(at.get("video")) == 1 and not any("being recorded" in i.value for i in at.info)
    assert {b.label for b in at.get("download_button")} >= {"Clip file"}
    assert "no full-frame context" not in texts(at) and "no snapshot" not in texts(at)
    assert any("Track 6 in the Track explorer" in str(p.proto) for p in at.get("page_link"))
    (snapshots / clip).unlink()  # the recorder writes the file seconds after the alarm
    at.run()
    assert not at.get("video") and any(f"Clip being recorded: {clip}" in i.value for i in at.info)
    assert snapshot and context_image
