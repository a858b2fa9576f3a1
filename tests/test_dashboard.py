"""The dashboard, page by page, through Streamlit's AppTest on stores filled by real runs.

The store comes from a real ``maskwatch demo`` run (once per module); tests that
write (acknowledge, save zones) work on a copy of it. The Live page reads the
files of a real ``maskwatch serve`` run on the demo video, with a second
camera whose RTSP server does not exist. Expected numbers are read from the
store with plain SQL, independently of the dashboard's queries.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import ValidationError
from streamlit.testing.v1 import AppTest

from dashboard.drawing import camera_background
from dashboard.passwords import hash_password, verify_password
from dashboard.settings import SettingsError, load_settings
from storage.geometry import load_geometry, save_geometry
from storage.live import CameraStatus, find_camera, read_cameras, read_frame, read_status, write_status

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "dashboard" / "app.py"
PASSWORDS = {"olivia": "operator-pass", "victor": "viewer-pass"}


def run_demo(out: Path) -> Path:
    done = subprocess.run([sys.executable, "-m", "maskwatch", "demo", "--out", str(out), "--no-render"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Output folder of one real demo run: maskwatch.db, snapshots/, scene.mp4, site.yaml."""
    return run_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def hashes() -> dict[str, str]:
    return {name: hash_password(password) for name, password in PASSWORDS.items()}


def rows(db: Path, sql: str, *params: object) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def copy_store(demo: Path, to: Path) -> Path:
    """A private copy of the demo store (SQLite's backup API: consistent even with a WAL beside it)."""
    target = to / "store.db"
    with sqlite3.connect(demo / "maskwatch.db") as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return target


def configure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db: Path, snapshots: Path, live_dir: Path | None = None,
              users: dict | None = None, **dashboard: object) -> Path:  # fmt: skip
    """Point the dashboard at ``db`` through a site YAML and environment variables, as a deployment would."""
    section = dict(dashboard)
    if users:
        section["auth"] = {"users": users}
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump({"store": {"url": f"sqlite:///{db}", "snapshot_dir": str(snapshots)},
                                      "service": {"live_dir": str(live_dir or tmp_path / "no-live")},
                                      "dashboard": section}))  # fmt: skip
    monkeypatch.setenv("MASKWATCH_CONFIG", str(config))
    for name in ("MASKWATCH_OUT", "MASKWATCH_STORE_URL", "MASKWATCH_LIVE_DIR", "MASKWATCH_SNAPSHOT_DIR"):
        monkeypatch.delenv(name, raising=False)
    return config


def with_users(monkeypatch: pytest.MonkeyPatch, hashes: dict[str, str]) -> dict:
    """An operator with an inline hash and a viewer whose hash comes from the environment."""
    monkeypatch.setenv("TEST_VIEWER_HASH", hashes["victor"])
    return {"olivia": {"role": "operator", "password_hash": hashes["olivia"]},
            "victor": {"role": "viewer", "password_hash_env": "TEST_VIEWER_HASH"}}  # fmt: skip


def open_app(page: str | None = None, login: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    if login is not None:
        at.text_input(key="login_username").input(login)
        at.text_input(key="login_password").input(PASSWORDS[login])
        at.button[0].click().run()
        assert not at.exception, [e.value for e in at.exception]
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    """Everything a user reads on the page, to check what is (and is not) shown."""
    parts = [e.value for kind in ("title", "subheader", "markdown", "caption", "error", "info", "warning", "success")
             for e in getattr(at, kind)]  # fmt: skip
    parts += [f"{m.label} {m.value}" for m in at.metric]
    parts += [d.value.to_string() for d in at.dataframe]
    return "\n".join(str(p) for p in parts)


@pytest.fixture
def store(demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the demo store, configured without auth (everyone an operator)."""
    db = copy_store(demo, tmp_path)
    configure(monkeypatch, tmp_path, db, demo / "snapshots")
    return db


# -- pages -------------------------------------------------------------------------------------------------------


def test_counts_page_shows_the_stores_numbers(store: Path) -> None:
    at = open_app("counts.py")
    totals = next(d.value for d in at.dataframe if "unique objects" in d.value.columns)
    shown = dict(zip(totals["class"], totals["unique objects"]))
    assert shown == dict(rows(store, "SELECT class_name, COUNT(*) FROM tracks GROUP BY class_name"))
    assert shown == {"bottle": 8, "person": 1}  # the demo scene's truth
    lines = next(d.value for d in at.dataframe if "line" in d.value.columns)
    expected = rows(store, "SELECT line, class_name, json_extract(values_json, '$.direction'), COUNT(*) FROM events "
                           "WHERE kind = 'line_cross' GROUP BY 1, 2, 3")  # fmt: skip
    assert [(r.line, r["class"], "in", r["in"]) for _, r in lines.iterrows()] == expected
    assert len(at.get("vega_lite_chart")) == 3  # visible per class, inside the zone, line crossings
    assert {b.label for b in at.get("download_button")} >= {"Counts series", "Raw counts rows"}


def test_sizes_page_lists_every_measured_track_and_flags_size_rules(store: Path) -> None:
    at = open_app("sizes.py")
    table = at.dataframe(key="sizes-tracks").value
    measured = rows(store, "SELECT run_id, track_id FROM tracks WHERE length_median IS NOT NULL")
    assert sorted(zip(table.run_id, table.track_id)) == sorted(measured)
    assert list(table.length_median) == sorted(table.length_median, reverse=True)
    broken = {t for (t,) in rows(store, "SELECT track_id FROM events WHERE kind = 'size_rule'")}
    assert broken and {t for t, v in zip(table.track_id, table.violations) if v} == broken
    assert set(table.unit) == {"mm"}
    percentiles = next(d.value for d in at.dataframe if "p50" in d.value.columns)
    per_class = dict(rows(store, "SELECT class_name, COUNT(*) FROM tracks WHERE length_median IS NOT NULL GROUP BY 1"))
    assert dict(zip(percentiles.class_name, percentiles.tracks)) == per_class
    assert "Size-rule violations" in texts(at)


def test_alarms_page_lists_alarms_and_an_operator_acknowledges(store: Path) -> None:
    [(alarm_id, rule, state)] = rows(store, "SELECT id, rule, state FROM alarms")
    assert state == "open"
    at = open_app("alarms.py")
    page = texts(at)
    assert rule in page and "critical" in " ".join(m.value for m in at.markdown) and "State: **open**" in page
    assert "crossing" in page and "track **6**" in page  # the zone and the person's track
    at.button(key=f"ack-{alarm_id}").click().run()
    assert not at.exception
    assert rows(store, "SELECT state, acknowledged_by FROM alarms") == [("acknowledged", "anonymous")]
    assert "acknowledged by **anonymous**" in texts(at)
    assert not [b for b in at.button if b.key and b.key.startswith("ack-")]


def test_zone_editor_saves_a_new_zone_and_rejects_a_bad_one(store: Path) -> None:
    url = f"sqlite:///{store}"
    assert load_geometry(url, "demo-belt") is None
    at = open_app("zones.py")
    assert "from the config of run" in texts(at)
    at.selectbox(key="zones-item").select("new polygon zone").run()
    next(t for t in at.text_input if t.label == "Name").input("dock").run()  # a new draft's widgets are keyed per draft
    editor = at.data_editor[0].key
    at.session_state[editor] = {"edited_rows": {}, "deleted_rows": [],
                                "added_rows": [{"x": 10.0, "y": 20.0}, {"x": 200.0, "y": 20.0}, {"x": 200.0, "y": 120.0}]}  # fmt: skip
    at.run()
    at.button(key="zones-save").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    geometry, _ = load_geometry(url, "demo-belt")
    zones = {z["name"]: z for z in geometry["zones"]}
    assert set(zones) == {"crossing", "dock"}  # the run's zone kept, the new one added
    assert zones["dock"]["polygon"] == [[10.0, 20.0], [200.0, 20.0], [200.0, 120.0]]
    assert [line["name"] for line in geometry["lines"]] == ["belt-end"]
    assert at.selectbox(key="zones-item").value == "zone: dock"

    at.selectbox(key="zones-item").select("new polygon zone").run()
    next(t for t in at.text_input if t.label == "Name").input("half").run()
    at.session_state[at.data_editor[0].key] = {"edited_rows": {}, "deleted_rows": [], "added_rows": [{"x": 1.0, "y": 2.0}]}
    at.run()
    at.button(key="zones-save").click().run()
    assert [e.value for e in at.error] == ["“half” was not saved. A zone needs at least 3 points."]
    assert {z["name"] for z in load_geometry(url, "demo-belt")[0]["zones"]} == {"crossing", "dock"}


def test_track_explorer_shows_a_tracks_path_sizes_and_zones(store: Path) -> None:
    at = open_app("tracks.py")
    picker = next(s for s in at.selectbox if s.label == "Track")  # keyed by camera and run
    person = next(t for t in picker.options if "person" in t)
    picker.select(int(person.split(" · ")[0])).run()
    [(track_id, n_obs)] = rows(store, "SELECT t.track_id, COUNT(o.id) FROM tracks t JOIN observations o ON "
                                      "o.run_id = t.run_id AND o.track_id = t.track_id WHERE t.class_name = 'person'")  # fmt: skip
    [(track_uid,)] = rows(store, "SELECT track_uid FROM tracks WHERE class_name = 'person'")
    page = texts(at)
    assert f"**Track {track_id}** (person)" in page and f"{n_obs} stored observations" in page
    assert f"uid `{track_uid}`" in page
    assert "Zones entered: crossing at" in page
    events = next(d.value for d in at.dataframe if "kind" in d.value.columns)
    assert list(events.kind) == [k for (k,) in rows(store, "SELECT kind FROM events WHERE track_id = ? ORDER BY ts", track_id)]
    assert at.image  # the path drawn over a frame of the run's source video, and the track's snapshot


# -- auth --------------------------------------------------------------------------------------------------------


def test_login_is_required_when_users_are_configured(demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     hashes: dict[str, str]) -> None:  # fmt: skip
    configure(monkeypatch, tmp_path, copy_store(demo, tmp_path), demo / "snapshots", users=with_users(monkeypatch, hashes))
    at = open_app()
    assert [t.value for t in at.title] == ["maskwatch"] and at.text_input(key="login_password")
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("counts.py")  # no page but the login exists yet
    at.text_input(key="login_username").input("olivia")
    at.text_input(key="login_password").input("not-her-password")
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["Wrong username or password."]
    at = open_app("counts.py", login="olivia")
    assert [t.value for t in at.title] == ["Counts"]
    page = texts(at) + "\n".join(c.value for c in at.sidebar.caption)
    assert "olivia · operator" in page and hashes["olivia"] not in page and "operator-pass" not in page


def test_viewer_cannot_acknowledge_or_edit_zones(demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 hashes: dict[str, str]) -> None:  # fmt: skip
    db = copy_store(demo, tmp_path)
    configure(monkeypatch, tmp_path, db, demo / "snapshots", users=with_users(monkeypatch, hashes))
    at = open_app("alarms.py", login="victor")
    assert "person-on-belt" in texts(at) and "acknowledging needs an operator" in texts(at)
    assert not [b for b in at.button if b.key and b.key.startswith("ack-")]
    at.switch_page("zones.py").run()
    assert "Signed in as a viewer" in texts(at)
    assert not [b for b in at.button if b.key in ("zones-save", "zones-delete")] and not at.data_editor
    assert rows(db, "SELECT state FROM alarms") == [("open",)]
    assert load_geometry(f"sqlite:///{db}", "demo-belt") is None


def test_operator_acknowledgement_records_who(demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              hashes: dict[str, str]) -> None:  # fmt: skip
    db = copy_store(demo, tmp_path)
    configure(monkeypatch, tmp_path, db, demo / "snapshots", users=with_users(monkeypatch, hashes))
    at = open_app("alarms.py", login="olivia")
    [(alarm_id,)] = rows(db, "SELECT id FROM alarms")
    before = time.time()
    at.button(key=f"ack-{alarm_id}").click().run()
    [(state, by, when)] = rows(db, "SELECT state, acknowledged_by, acknowledged_ts FROM alarms")
    assert (state, by) == ("acknowledged", "olivia") and before <= when <= time.time()


def test_password_hashes_are_salted_and_plain_passwords_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = subprocess.run([sys.executable, "-m", "dashboard.auth", "hash"], input="s3cret\n", capture_output=True,
                          text=True, cwd=REPO, check=True).stdout.strip()  # fmt: skip
    assert made.startswith("scrypt$") and "s3cret" not in made
    assert verify_password("s3cret", made) and not verify_password("s3cret!", made)
    assert made != hash_password("s3cret")  # a new salt every time
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump({"dashboard": {"auth": {"users": {"ann": {"password_hash": "s3cret"}}}}}))
    with pytest.raises(SettingsError, match=r"dashboard.auth.users.ann: not a password hash"):
        load_settings(["--config", str(config)], env={})
    config.write_text(yaml.safe_dump({"dashboard": {"auth": {"users": {"ann": {"pasword_hash": made}}}}}))
    with pytest.raises(SettingsError, match=r"dashboard.auth.users.ann.pasword_hash: unknown key"):
        load_settings(["--config", str(config)], env={})


def test_settings_follow_the_services_out_folder_and_env_overrides(tmp_path: Path) -> None:
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump({"segmenter": {"name": "motion"}, "service": {"live_dir": "live", "listen": "x:1"},
                                      "store": {"batch_frames": 5}, "dashboard": None}))  # fmt: skip
    settings = load_settings(["--config", str(config), "--out", str(tmp_path / "site-out")], env={})
    assert settings.store_url == f"sqlite:///{tmp_path / 'site-out' / 'maskwatch.db'}"
    assert settings.live_dir == tmp_path / "site-out" / "live" and not settings.auth_required
    overridden = load_settings([], env={"MASKWATCH_CONFIG": str(config), "MASKWATCH_STORE_URL": "sqlite:///x.db"})
    assert overridden.store_url == "sqlite:///x.db" and overridden.live_dir == Path("serve-out/live")


# -- geometry store ----------------------------------------------------------------------------------------------


def test_geometry_store_round_trip_and_validation(store_url: str) -> None:
    assert load_geometry(store_url, "gate-cam") is None
    zone = {"name": "gate", "polygon": [[0, 0], [10, 0], [10, 10]], "classes": ["person"]}
    line = {"name": "door", "points": [[0, 5], [10, 5]]}
    dynamic = {"name": "swing", "anchor_classes": ["excavator"], "radius": 6}
    saved_ts = save_geometry(store_url, "gate-cam", [zone], [dynamic], [line], "olivia")
    geometry, ts = load_geometry(store_url, "gate-cam")
    assert ts == saved_ts and set(geometry) == {"zones", "dynamic_zones", "lines"}
    assert geometry["zones"][0]["polygon"] == [[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]]
    assert geometry["zones"][0]["min_fraction"] == 0.02  # defaults filled in, as CameraConfig validates them
    assert geometry["dynamic_zones"][0]["unit"] == "m" and geometry["lines"][0]["invert"] is False
    save_geometry(store_url, "gate-cam", [], [], [line], "olivia")  # replaces the whole geometry
    assert load_geometry(store_url, "gate-cam")[0]["zones"] == []
    with pytest.raises(ValueError, match=r"zones\.0\.circle"):
        save_geometry(store_url, "gate-cam", [{"name": "c", "circle": [1, 2]}], [], [], "olivia")
    with pytest.raises(ValueError, match=r"zone names must be unique: gate"):
        save_geometry(store_url, "gate-cam", [zone, zone], [], [], "olivia")
    with pytest.raises(ValueError, match=r"lines\.0\.colour: unknown key"):
        save_geometry(store_url, "gate-cam", [], [], [{**line, "colour": [1, 2, 3]}], "olivia")
    assert load_geometry(store_url, "gate-cam")[0]["lines"][0]["name"] == "door"  # nothing half-saved
    assert load_geometry(store_url, "other-cam") is None


# -- live --------------------------------------------------------------------------------------------------------


def camera_status(**changes: object) -> CameraStatus:
    """A connected camera's status as its worker writes it, with ``changes``."""
    fields = dict(
        camera="gate", pid=4242, updated_ts=1_700_000_000.0, run_id=7, source="rtsp://viewer:***@10.0.0.12/s",
        connected=True, fps_in=12.5, fps_out=12.25, dropped=3, reconnects=1, last_error=None, segmenter_error=None,
        backoff_s=0.0, frame_size=(1280, 720), queue_depth=0, lag_s=0.125, segment_s=0.05, frames=480, ended=False,
        visible={"person": 2}, occupancy={"dock": {"person": 1}}, unique={"person": 5},
        line_counts={"door": {"person": {"in": 3, "out": 1}}}, alarms=2,
    )  # fmt: skip
    return CameraStatus(**(fields | changes))


def test_camera_status_files_round_trip_and_others_are_skipped(tmp_path: Path) -> None:
    gate, dock = camera_status(), camera_status(camera="dock cam", connected=False, lag_s=None, frame_size=None)
    write_status(tmp_path / "gate.json", gate)
    write_status(tmp_path / "dock-cam.json", dock)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dock-cam.json", "gate.json"]  # no temporary file left
    assert read_status(tmp_path / "gate.json") == gate and gate.frame_size == (1280, 720)
    (tmp_path / "old.json").write_text(json.dumps({"camera": "old", "connected": True}))  # keys missing
    (tmp_path / "typo.json").write_text(gate.model_copy(update={"camera": "typo"}).model_dump_json()[:-1] + ',"fps_ot":1}')
    (tmp_path / "torn.json").write_text(gate.model_dump_json()[:40])
    (tmp_path / ".gate.json.99.tmp").write_text(gate.model_dump_json())
    cameras = read_cameras(tmp_path)
    assert [(c.camera, c.status, c.frame_path.name) for c in cameras] == [("dock cam", dock, "dock-cam.jpg"),
                                                                          ("gate", gate, "gate.jpg")]  # fmt: skip
    assert find_camera(tmp_path, "dock cam").status_path == tmp_path / "dock-cam.json"
    assert read_status(tmp_path / "missing.json") is None and read_frame(cameras[1]) is None
    with pytest.raises(ValidationError, match="fps_ot"):  # a misspelt field fails where the status is made
        camera_status(fps_ot=12.0)


def test_camera_health_names_the_worst_first() -> None:
    now = 1_700_000_000.0
    live = camera_status(updated_ts=now - 1)
    assert live.health(5, now) == ("live", "updated 1.0 s ago")
    assert camera_status(updated_ts=now - 1, segmenter_error="busy").health(5, now) == ("not segmenting",
                                                                                       "frames skipped: busy")
    assert camera_status(updated_ts=now - 1, connected=False).health(5, now)[0] == "disconnected"
    assert camera_status(updated_ts=now - 9, connected=False).health(5, now) == ("stale", "no status for 9 s")
    down = camera_status(updated_ts=now - 9, worker_alive=False, worker_restarts=3)
    assert down.health(5, now) == ("worker down", "worker process not running (restarts: 3)")
    unreported = CameraStatus.unreported("gate", "rtsp://viewer:***@10.0.0.12/s")
    assert unreported.health(5, now)[0] == "stale" and not unreported.connected and unreported.frames == 0


@contextmanager
def serving(demo: Path, root: Path) -> Iterator[tuple[Path, subprocess.Popen]]:
    """A real ``maskwatch serve``: the demo video looped as a camera, and a camera whose RTSP server is absent.

    Yields the service's --out folder once both cameras have published, and the process.
    """
    site = yaml.safe_load((demo / "site.yaml").read_text())
    camera = site.pop("camera") | {"source": str(demo / "scene.mp4"), "loop": True, "fps": 10}
    dead = {"name": "dock-cam", "source": "rtsp://admin:hunter2@127.0.0.1:9/stream", "stall_s": 1, "backoff_max_s": 1}
    site |= {"cameras": [camera, dead], "service": {"listen": "127.0.0.1:0", "live_dir": "live"}}
    (root / "serve.yaml").write_text(yaml.safe_dump(site))
    process = subprocess.Popen([sys.executable, "-m", "maskwatch", "serve", "--config", str(root / "serve.yaml"),
                                "--out", str(root / "out")], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    live = root / "out" / "live"
    try:
        deadline = time.monotonic() + 120
        while not ((live / "demo-belt.jpg").exists() and (live / "dock-cam.json").exists()):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"maskwatch serve wrote no live files (exit code {process.poll()})")
            time.sleep(0.5)
        yield root / "out", process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def service(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, subprocess.Popen]]:
    with serving(demo, tmp_path_factory.mktemp("serve")) as running:
        yield running


def test_live_page_shows_frames_health_and_counts_then_stale_cameras(
    service: tuple[Path, subprocess.Popen], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, process = service
    configure(monkeypatch, tmp_path, out / "maskwatch.db", out / "snapshots", live_dir=out / "live", stale_after_s=3)
    at = open_app()  # Live is the default page
    assert [s.value for s in at.subheader] == ["demo-belt", "dock-cam"]
    page = texts(at)
    badges = [m.value for m in at.markdown if "-badge[" in m.value]
    assert badges[0].startswith(":green-badge[") and "live: updated" in badges[0]
    assert "disconnected" in badges[1]
    assert "Last error: cannot open rtsp://admin:***@127.0.0.1:9/stream" in page
    assert "hunter2" not in page
    assert len(at.image) == 1 and at.image[0].proto.imgs  # the one camera with frames shows its latest JPEG
    assert at.image[0].proto.imgs[0].caption == "demo-belt · latest frame"
    # beside the annotated JPEG, the frame as the camera sees it: what the zone editor draws on
    [belt] = [c for c in read_cameras(out / "live") if c.camera == "demo-belt"]
    clean = cv2.imdecode(np.frombuffer(read_frame(belt, clean=True), np.uint8), cv2.IMREAD_COLOR)
    annotated = cv2.imdecode(np.frombuffer(read_frame(belt), np.uint8), cv2.IMREAD_COLOR)
    assert clean.shape == annotated.shape and tuple(belt.status.frame_size) == (clean.shape[1], clean.shape[0])
    background, said = camera_background(out / "live", "demo-belt", "rtsp://cam.example/stream")  # not a local file
    assert said.startswith("a clean frame of the live camera") and background.shape == clean.shape
    tiles = [(m.label, m.value) for m in at.metric]
    assert [label for label, _ in tiles] == ["FPS in", "FPS processed", "Lag", "In view"] * 2
    assert float(tiles[0][1]) > 0 and tiles[4:] == [(label, "—") for label in ("FPS in", "FPS processed", "Lag", "In view")]
    at.query_params["camera"] = "demo-belt"  # full screen: every number and the tables
    at.run()
    deadline = time.monotonic() + 30
    while not any(m.value.startswith("| class | visible |") for m in at.markdown) and time.monotonic() < deadline:
        time.sleep(0.5)  # a loaded machine's worker may miss stale_after_s once: the tables show while it is live
        at.run()
    assert [s.value for s in at.subheader] == ["demo-belt"]
    assert {"FPS in", "FPS processed", "Lag", "Dropped", "Reconnects"} <= {m.label for m in at.metric}
    visible = next(m.value for m in at.markdown if m.value.startswith("| class | visible |")).splitlines()[2:]
    rows_shown = [line.strip("| ").split(" | ") for line in visible]
    assert {name for name, _ in rows_shown} <= {"bottle", "person"} and all(int(n) >= 0 for _, n in rows_shown)
    del at.query_params["camera"]

    process.send_signal(signal.SIGINT)  # the service stops: its status files age
    process.wait(timeout=60)
    deadline = time.monotonic() + 60
    while True:  # past stale_after_s with no new status: both cameras turn stale
        at.run()
        badges = [m.value for m in at.markdown if "-badge[" in m.value]
        if (len(badges) == 2 and all("stale: no status for" in b for b in badges)) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(badges) == 2 and all("stale: no status for" in b for b in badges), badges
    assert {m.value for m in at.metric} == {"—"}  # no FPS numbers of a stopped service
    assert sum(c.value.startswith("Offline since ") for c in at.caption) == 2
    assert at.image[0].proto.imgs[0].caption == "demo-belt · last frame, offline"  # greyed


def test_live_page_shows_the_shared_segmenter_and_cameras_waiting_for_it(
    demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files ``maskwatch serve`` writes with a shared segmenter (as in tests/test_serve.py), read by the Live page."""
    live = tmp_path / "live"
    (live / "segmenter").mkdir(parents=True)
    now = time.time()
    segmenter = {"pid": 1, "updated_ts": now, "device": "cuda:0", "workers": 2, "batch_size": 8, "batches": 50,
                 "frames": 96, "failed_frames": 0, "busy_s": 3.2, "mean_batch": 1.92, "batch_sizes": {"1": 4, "2": 46}}
    (live / "segmenter" / "status.json").write_text(json.dumps(segmenter))
    write_status(live / "gate.json", camera_status(
        updated_ts=now, segmenter_error="shared segmenter not reachable (ConnectionRefusedError)", frames=48))
    configure(monkeypatch, tmp_path, copy_store(demo, tmp_path), demo / "snapshots", live_dir=live, stale_after_s=5)
    at = open_app()
    assert [s.value for s in at.subheader] == ["gate"]  # the segmenter's status file is not taken for a camera
    assert any(c.value.startswith("Shared segmenter on cuda:0: 96 frames in 50 batches (mean batch 1.92), 2 cameras")
               for c in at.caption)
    badges = [m.value for m in at.markdown if "-badge[" in m.value]
    assert badges == [":orange-badge[:material/pause_circle: not segmenting: frames skipped: shared segmenter not "
                      "reachable (ConnectionRefusedError)]"]

    (live / "segmenter" / "status.json").write_text(json.dumps(segmenter | {"updated_ts": now - 60}))
    at.run()
    assert any(w.value.startswith("Shared segmenter silent for 6") for w in at.warning)


def test_live_page_without_a_service_says_so(store: Path) -> None:
    at = open_app("live.py")
    assert any("No live cameras" in i.value for i in at.info)


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_pages_on_postgresql(store_url: str, demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SQL that differs by dialect (floor, JSON fields, least, window functions) on a real PostgreSQL store."""
    site = yaml.safe_load((demo / "site.yaml").read_text()) | {"store": {"url": store_url}}
    (tmp_path / "pg.yaml").write_text(yaml.safe_dump(site))
    done = subprocess.run([sys.executable, "-m", "maskwatch", "run", str(demo / "scene.mp4"), "--config",
                           str(tmp_path / "pg.yaml"), "--out", str(tmp_path / "out")], cwd=REPO, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    configure(monkeypatch, tmp_path, tmp_path / "unused.db", tmp_path / "out" / "snapshots")
    monkeypatch.setenv("MASKWATCH_STORE_URL", store_url)
    at = open_app("counts.py")
    totals = next(d.value for d in at.dataframe if "unique objects" in d.value.columns)
    assert dict(zip(totals["class"], totals["unique objects"])) == {"bottle": 8, "person": 1}
    lines = next(d.value for d in at.dataframe if "line" in d.value.columns)
    assert list(lines["in"]) == [8]
    for page in ("sizes.py", "alarms.py", "zones.py", "tracks.py"):
        at.switch_page(page).run()
        assert not at.exception and not at.error, (page, [e.value for e in [*at.exception, *at.error]])
    at.switch_page("sizes.py").run()
    percentiles = next(d.value for d in at.dataframe if "p50" in d.value.columns)
    sqlite_run = rows(demo / "maskwatch.db", "SELECT class_name, COUNT(*) FROM tracks WHERE length_median IS NOT NULL GROUP BY 1")
    assert dict(zip(percentiles.class_name, percentiles.tracks)) == dict(sqlite_run)  # the same video, the same tracks


def test_site_clock_shows_the_configured_zone_on_a_24_hour_clock(tmp_path):
    """``dashboard.timezone`` decides every shown time; charts get wall clock on a UTC scale, so browsers cannot shift it."""
    from dashboard.clock import Clock, zone

    config = tmp_path / "site.yaml"
    config.write_text("dashboard:\n  timezone: America/New_York\n")
    clock = load_settings(["--config", str(config)], env={}).clock
    assert clock.label == "America/New_York"
    assert clock.fmt(1_700_000_000) == "2023-11-14 17:13:20"  # 22:13:20 UTC, EST is UTC-5: a 24-hour clock
    times = pd.Series(pd.to_datetime([1_700_000_000], unit="s", utc=True))
    assert Clock(zone("Asia/Tokyo")).local(times).iloc[0] == pd.Timestamp("2023-11-15 07:13:20", tz="UTC")
    config.write_text("dashboard:\n  timezone: Mars/Olympus\n")
    with pytest.raises(SettingsError, match="dashboard.timezone: .*unknown time zone 'Mars/Olympus'"):
        load_settings(["--config", str(config)], env={})
