"""The Live page's camera grid and full-screen view, and the Heatmap page, through Streamlit's AppTest.

Live files are written here as ``maskwatch serve``'s workers write them (a fresh
status for a live camera, an hour-old one for a camera whose worker stopped);
the heatmap reads a copy of a real ``maskwatch demo`` store and is checked
against plain SQL on it.
"""

from __future__ import annotations

import gc
import re
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from test_dashboard import camera_status, configure, copy_store, open_app, rows, run_demo, texts

from storage.live import LiveFiles, write_atomic, write_status

GATE_COLOUR = (0, 0, 220)  # BGR: a red frame, so greyed is told from live by its saturation


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (320, 180)) -> bytes:
    image = np.zeros((size[1], size[0], 3), np.uint8)
    image[:] = color
    cv2.rectangle(image, (20, 20), (120, 120), (0, 200, 0), -1)
    return cv2.imencode(".jpg", image)[1].tobytes()


def write_cameras(live: Path, now: float) -> None:
    """"gate" live (status a second old), "dock" stale (its worker stopped an hour ago), "yard" disconnected."""
    live.mkdir(parents=True, exist_ok=True)
    write_status(live / "gate.json", camera_status(camera="gate", updated_ts=now - 1))
    write_atomic(live / "gate.jpg", jpeg(GATE_COLOUR))
    write_status(live / "dock.json", camera_status(camera="dock", updated_ts=now - 3600, fps_in=10.0, fps_out=10.0))
    write_atomic(live / "dock.jpg", jpeg(GATE_COLOUR))
    write_status(live / "yard.json", camera_status(camera="yard", updated_ts=now - 1, connected=False, lag_s=None, fps_in=0.0,
                                                   last_error="cannot open rtsp://viewer:***@10.0.0.13/s", backoff_s=4.0))


def saturation(data: bytes) -> float:
    """Mean HSV saturation of a JPEG (0: grey)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return float(cv2.cvtColor(image, cv2.COLOR_BGR2HSV)[..., 1].mean())


def table(at: object, column: str) -> pd.DataFrame:
    """The page's table with this column."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def video_size(path: Path) -> tuple[int, int]:
    capture = cv2.VideoCapture(str(path))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        capture.release()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    live = tmp_path / "live"
    write_cameras(live, time.time())
    configure(monkeypatch, tmp_path, tmp_path / "store.db", tmp_path / "snapshots", live_dir=live, stale_after_s=5,
              timezone="UTC")  # fmt: skip
    return live


# -- live --------------------------------------------------------------------------------------------------------


def test_live_grid_shows_every_camera_and_greys_the_offline_ones(live: Path) -> None:
    at = open_app()
    assert [s.value for s in at.subheader] == ["dock", "gate", "yard"]  # every camera, in name order
    badges = [m.value for m in at.markdown if "-badge[" in m.value]
    assert re.search(r"stale: no status for 36\d\d s", badges[0]), badges
    assert badges[1].startswith(":green-badge[") and "live: updated" in badges[1]
    assert "disconnected: the camera is not connected" in badges[2]
    metrics = [(m.label, m.value) for m in at.metric]
    assert len(metrics) == 12  # four per tile
    dock, gate, yard = metrics[:4], metrics[4:8], metrics[8:]
    assert dock == [("FPS in", "—"), ("FPS processed", "—"), ("Lag", "—"), ("In view", "—")]  # no stale FPS numbers
    assert yard == [("FPS in", "—"), ("FPS processed", "—"), ("Lag", "—"), ("In view", "—")]
    assert gate == [("FPS in", "12.5"), ("FPS processed", "12.2"), ("Lag", "0.12 s"), ("In view", "2")]
    captions = [c.value for c in at.caption]
    since = time.strftime("%Y-%m-%d %H:%M", time.gmtime(time.time() - 3600))
    assert any(c.startswith(f"Offline since {since}") and c.endswith(" UTC") for c in captions), captions
    assert any(c.startswith("Camera disconnected (1 reconnects, retrying every 4 s); last status") for c in captions)
    assert "Last error: cannot open rtsp://viewer:***@10.0.0.13/s" in captions
    assert not any("Offline since" in c for c in captions if "gate" in c)
    # the stale camera's last frame is shown greyed, the live one's as the camera sent it (yard has no frame yet)
    assert [i.proto.imgs[0].caption for i in at.image] == ["dock · last frame, offline", "gate · latest frame"]
    assert [b.label for b in at.button] == ["Full screen"] * 3
    assert gc.get_freeze_count() > 10_000  # the server's imports left out of the collection after every refresh


def test_live_grid_columns_follow_the_camera_count_or_the_choice(live: Path) -> None:
    from dashboard.live import grid_columns

    assert [grid_columns(n, "Auto") for n in (1, 2, 4, 5, 9)] == [1, 2, 2, 3, 3]
    assert grid_columns(7, "4") == 4
    at = open_app()
    at.selectbox(key="live-columns").select("1").run()
    assert not at.exception and [s.value for s in at.subheader] == ["dock", "gate", "yard"]


def test_live_full_screen_by_query_param_and_button(live: Path) -> None:
    at = open_app()
    at.query_params["camera"] = "gate"
    at.run()
    assert [s.value for s in at.subheader] == ["gate"]
    page = texts(at)
    assert {"FPS in", "FPS processed", "Lag", "Dropped", "Reconnects", "Frames", "Alarms"} <= {m.label for m in at.metric}
    assert "Visible now" in page and "In zones now" in page and "source: rtsp://viewer:***@10.0.0.12/s" in page
    tables = [m.value for m in at.markdown if m.value.startswith("|")]
    assert tables == ["| class | visible |\n|:--|--:|\n| person | 2 |", "| zone | class | inside |\n|:--|--:|--:|\n| dock | person | 1 |",
                      "| line | class | in | out |\n|:--|--:|--:|--:|\n| door | person | 3 | 1 |"]  # fmt: skip
    at.button(key="live-all").click().run()  # back to the grid
    assert [s.value for s in at.subheader] == ["dock", "gate", "yard"] and "camera" not in at.query_params
    at.button(key="live-full-dock").click().run()
    assert [s.value for s in at.subheader] == ["dock"] and at.query_params["camera"] in ("dock", ["dock"])
    assert any(c.value.startswith("Offline since") for c in at.caption)
    assert {m.label: m.value for m in at.metric}["FPS in"] == "—" and "Visible now" not in texts(at)  # nothing current
    assert at.session_state["live-refresh-s"] == 2.0  # one stale camera shown: nothing but its age changes
    at.query_params["camera"] = "gate"
    at.run()
    assert at.session_state["live-refresh-s"] == 0.3  # a live one: dashboard.live_refresh_s (its default)
    at.query_params["camera"] = "nowhere"
    at.run()
    assert any("No live camera named 'nowhere'" in w.value for w in at.warning) and len(at.subheader) == 3


def test_live_refreshes_slowly_while_no_camera_shown_is_live(tmp_path: Path) -> None:
    from dashboard.live import refresh_s

    write_cameras(tmp_path, time.time())
    dock, gate, yard = LiveFiles(tmp_path).cameras()
    assert refresh_s([gate], 5, 0.3, full_screen=True) == 0.3  # dashboard.live_refresh_s
    assert refresh_s([dock, gate, yard], 5, 0.3) == 1.0  # a grid of thumbnails: once a second
    assert refresh_s([dock, yard], 5, 0.3) == refresh_s([], 5, 0.3) == refresh_s([dock], 5, 0.3, True) == 2.0
    assert refresh_s([gate], 5, 3.0) == refresh_s([dock], 5, 3.0) == 3.0  # never faster than configured


def test_live_files_are_read_again_only_when_replaced(tmp_path: Path) -> None:
    live = tmp_path / "live"
    write_cameras(live, time.time())
    files = LiveFiles(live)
    cameras = files.cameras()
    assert [c.camera for c in cameras] == ["dock", "gate", "yard"] and files.reads == 3
    assert files.frame(cameras[0])[1] == (live / "dock.jpg").read_bytes() and files.reads == 4
    assert files.frame(cameras[2]) is None  # no frame yet: nothing to read
    for _ in range(5):  # nothing changed: a stat per file, no reads
        files.cameras()
        files.frame(cameras[0])
        files.segmenter()
    assert files.reads == 4
    write_status(live / "gate.json", camera_status(camera="gate", updated_ts=time.time(), frames=999))
    assert next(c for c in files.cameras() if c.camera == "gate").status.frames == 999 and files.reads == 5
    (live / "yard.json").unlink()
    assert [c.camera for c in files.cameras()] == ["dock", "gate"]


def test_offline_frames_are_desaturated_and_dimmed() -> None:
    from dashboard.live import greyed

    colour = jpeg(GATE_COLOUR)
    grey = greyed(("dock.jpg", (1, 2, 3)), colour)
    assert saturation(colour) > 100 and saturation(grey) < 3
    assert cv2.imdecode(np.frombuffer(grey, np.uint8), cv2.IMREAD_GRAYSCALE).max() < 160  # dimmed: no bright pixel


# -- heatmap -----------------------------------------------------------------------------------------------------


@pytest.fixture
def store(demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    db = copy_store(demo, tmp_path)
    configure(monkeypatch, tmp_path, db, demo / "snapshots")
    return db


def test_heatmap_page_draws_occupancy_and_dwell_times_matching_sql(store: Path, demo: Path) -> None:
    at = open_app("heatmap.py")
    assert not at.error, [e.value for e in at.error]
    at.selectbox(key="heatmap-window").select("All").run()
    assert [s.value for s in at.subheader] == ["Occupancy", "Dwell time per zone"]
    heat = at.image[0].proto.imgs[0]
    assert heat.caption.startswith("demo-belt · occupancy over") and "64×36 cells" in heat.caption
    assert at.image[1].proto.imgs[0].caption == "observations per cell (log scale)"

    width, height = video_size(demo / "scene.mp4")  # the frame the heatmap is drawn on: the run's source video
    # "All" spans the counts and events, as every page's window does (dashboard.widgets.pick_window)
    (since, last), = rows(store, "SELECT MIN(ts), MAX(ts) FROM (SELECT ts FROM counts UNION ALL SELECT ts FROM events)")
    window = "FROM observations WHERE ts >= ? AND ts < ?"
    cells = rows(store, f"SELECT CAST(cx * 64 / ? AS INTEGER), CAST(cy * 36 / ? AS INTEGER), COUNT(*) {window} GROUP BY 1, 2",
                 width, height, since, last + 1)  # fmt: skip
    assert all(0 <= x < 64 and 0 <= y < 36 for x, y, _ in cells)
    summary = table(at, "cells occupied").iloc[0]
    assert summary.observations == rows(store, f"SELECT COUNT(*) {window}", since, last + 1)[0][0] > 100
    assert summary["cells occupied"] == len(cells) and summary["busiest cell"] == max(n for *_, n in cells)

    exits = rows(store, "SELECT zone, value FROM events WHERE kind = 'zone_exit' ORDER BY value")
    assert exits, "the demo's objects leave its zone"
    dwell = table(at, "mean dwell (s)")
    assert dwell.to_dict("list") == {"zone": ["crossing"], "exits": [len(exits)],
                                     "mean dwell (s)": [pytest.approx(sum(v for _, v in exits) / len(exits))],
                                     "longest dwell (s)": [exits[-1][1]]}  # fmt: skip
    bins = table(at, "from (s)")
    width_s = float(bins["to (s)"].iloc[0] - bins["from (s)"].iloc[0])
    expected: dict[float, int] = {}
    for _, value in exits:
        start = (value // width_s) * width_s
        expected[start] = expected.get(start, 0) + 1
    assert dict(zip(bins["from (s)"], bins.exits)) == pytest.approx(expected)
    charts = at.get("vega_lite_chart")
    assert len(charts) == 1
    spec = charts[0].proto.spec
    assert f"dwell time in zone (s), bins of {width_s:g} s" in spec and "zone exits (count)" in spec

    at.selectbox(key="heatmap-class").select("person").run()  # one class: only its observations
    person = table(at, "cells occupied").iloc[0]
    assert person.observations == rows(store, f"SELECT COUNT(*) {window} AND class_name = 'person'", since, last + 1)[0][0] > 0


def test_heat_image_colours_only_occupied_cells() -> None:
    from dashboard.heatmap import heat_image

    background = np.full((360, 640, 3), 100, np.uint8)
    counts = np.zeros((36, 64), np.int64)
    counts[0, 0], counts[35, 63] = 1, 1000
    image = heat_image(background, counts)
    assert (image[100:200, 100:200] == 100).all()  # empty cells: the frame as it was
    assert not (image[:10, :10] == 100).all() and not (image[-10:, -10:] == 100).all()
    assert saturation(cv2.imencode(".png", image[-10:, -10:])[1].tobytes()) > saturation(cv2.imencode(".png", image[:10, :10])[1].tobytes())


# -- in a browser ------------------------------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
MEAN_SATURATION_JS = """img => {
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const context = canvas.getContext("2d");
    context.drawImage(img, 0, 0);
    const d = context.getImageData(0, 0, canvas.width, canvas.height).data;
    let sum = 0;
    for (let i = 0; i < d.length; i += 4) sum += Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]);
    return sum / (d.length / 4);
}"""


def test_chromium_shows_a_stale_camera_greyed(tmp_path: Path) -> None:
    """``streamlit run`` in a real Chromium: the stopped camera's tile has a grey picture and no numbers."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian's chromium package; .ci/services.sh installs it)")
    from test_dashboard_browser import SCREENSHOTS, dashboard_served, streamlit_run  # noqa: PLC0415 (skips the module without Chromium)

    live = tmp_path / "live"
    write_cameras(live, time.time())
    site = tmp_path / "site.yaml"
    site.write_text(f"store: {{url: 'sqlite:///{tmp_path / 'store.db'}'}}\nservice: {{live_dir: '{live}'}}\n"
                    "dashboard: {stale_after_s: 5, timezone: UTC}\n")  # fmt: skip
    fresh = threading.Event()

    def keep_gate_live() -> None:  # gate's worker keeps publishing; dock's stopped an hour ago
        while not fresh.wait(0.5):
            write_status(live / "gate.json", camera_status(camera="gate", updated_ts=time.time()))

    writer = threading.Thread(target=keep_gate_live, daemon=True)
    writer.start()
    try:
        with dashboard_served(streamlit_run(site)) as url, sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1500, "height": 1000})
                page.set_default_timeout(60_000)
                page.goto(f"{url}/")
                dock, gate = page.locator(".st-key-live-tile-dock"), page.locator(".st-key-live-tile-gate")
                dock.get_by_text("Offline since").wait_for()
                gate.get_by_text("live: updated").wait_for()
                page.wait_for_function("() => [...document.images].filter(i => i.complete && i.naturalWidth).length >= 2")
                page.wait_for_timeout(1000)  # a few refreshes: still the same
                assert dock.locator("img").evaluate(MEAN_SATURATION_JS) < 3  # desaturated
                assert gate.locator("img").evaluate(MEAN_SATURATION_JS) > 100  # the camera's own red
                assert dock.get_by_test_id("stMetricValue").all_inner_texts() == ["—"] * 4
                assert gate.get_by_test_id("stMetricValue").all_inner_texts() == ["12.5", "12.2", "0.12 s", "2"]
                assert gate.get_by_text("Offline since").count() == 0
                assert page.get_by_test_id("stException").count() == 0
                page.get_by_role("button", name="Full screen").nth(2).wait_for()  # the third tile (yard) is drawn
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=SCREENSHOTS / "live-grid-offline.png", full_page=True)
                dock.get_by_role("button", name="Full screen").click()  # one camera, and an address to share
                page.get_by_role("button", name="All cameras").wait_for()
                page.wait_for_url("**/?camera=dock")
                assert page.get_by_role("heading", name="gate").count() == 0
                page.goto(f"{url}/live?camera=gate")
                page.get_by_text("Visible now").wait_for()
                assert page.get_by_role("heading", name="dock").count() == 0
            finally:
                browser.close()
    finally:
        fresh.set()


def test_occupancy_of_a_long_window_is_sampled_and_scaled(store: Path, demo: Path) -> None:
    from dashboard.heatmap_queries import occupancy_grid

    url, size = f"sqlite:///{store}", video_size(demo / "scene.mp4")
    (total,), = rows(store, "SELECT COUNT(*) FROM observations")
    exact = occupancy_grid(url, 1, 0.0, 4e9, size)
    assert (exact.total, exact.step, int(exact.counts.sum())) == (total, 1, total)
    sampled = occupancy_grid(url, 1, 0.0, 4e9, size, max_rows=total // 3, block=8)
    assert sampled.total == total and sampled.step == 4  # every 4th block of 8 consecutive ids
    (picked,), = rows(store, "SELECT COUNT(*) FROM observations WHERE (id / 8) % 4 = 0")
    assert int(sampled.counts.sum()) == picked * 4 and abs(picked * 4 - total) <= 32


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_heatmap_queries_agree_on_postgresql(store_url: str, demo: Path) -> None:
    """The dialect-dependent SQL (cell index by floor or CAST, integer division of ids) gives SQLite's numbers."""
    from sqlalchemy import create_engine

    from dashboard.heatmap_queries import dwell_histogram, dwell_summary, occupancy_grid
    from storage.engine import open_engine
    from storage.schema import cameras, counts, events, observations, runs, tracks

    sqlite_url = f"sqlite:///{demo / 'maskwatch.db'}"
    source, target = create_engine(sqlite_url), open_engine(store_url)
    try:
        with source.connect() as read, target.begin() as write:
            for table in (cameras, runs, tracks, observations, events, counts):  # parents first
                found = [dict(r._mapping) for r in read.execute(table.select())]
                if found:
                    write.execute(table.insert(), found)
    finally:
        source.dispose()
        target.dispose()
    size, window = video_size(demo / "scene.mp4"), (0.0, 4e9)
    for kwargs in ({}, {"max_rows": 40, "block": 8}):
        lite, pg = occupancy_grid(sqlite_url, 1, *window, size, **kwargs), occupancy_grid(store_url, 1, *window, size, **kwargs)
        assert (pg.total, pg.step) == (lite.total, lite.step) and (pg.counts == lite.counts).all()
    assert occupancy_grid(store_url, 1, *window, size, "person").total == occupancy_grid(sqlite_url, 1, *window, size, "person").total
    pd.testing.assert_frame_equal(dwell_summary(store_url, (1,), *window), dwell_summary(sqlite_url, (1,), *window))
    pd.testing.assert_frame_equal(dwell_histogram(store_url, (1,), *window, 0.5), dwell_histogram(sqlite_url, (1,), *window, 0.5))
