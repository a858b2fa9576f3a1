"""Bad input through the real command line: one error line, exit code 2, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from bench.reference import gt_as_detections
from tests.test_serve import free_port


def maskwatch(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "maskwatch", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_missing_video(tmp_path):
    assert_one_line_error(maskwatch("run", str(tmp_path / "nope.mp4"), "--segmenter", "motion", "--out", str(tmp_path / "o")), "nope.mp4", "not found")


def test_corrupt_video(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    assert_one_line_error(maskwatch("run", str(bad), "--segmenter", "motion", "--out", str(tmp_path / "o")), "broken.mp4")


def test_empty_image_folder(tmp_path):
    (tmp_path / "imgs").mkdir()
    assert_one_line_error(maskwatch("run", str(tmp_path / "imgs"), "--segmenter", "motion", "--out", str(tmp_path / "o")), "no images")


def test_corrupt_image_in_folder_keeps_earlier_results(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        cv2.imwrite(str(folder / f"{i:03d}.png"), rng.integers(0, 255, (64, 80, 3), dtype=np.uint8))
    (folder / "012.png").write_bytes(b"not a png")
    out = tmp_path / "o"
    assert_one_line_error(maskwatch("run", str(folder), "--segmenter", "motion", "--out", str(out)), "012.png", "12 frames kept")
    assert (out / "summary.json").is_file() and (out / "observations.csv").is_file()
    from sqlalchemy import select

    from storage.engine import make_engine
    from storage.schema import runs

    with make_engine(f"sqlite:///{out / 'maskwatch.db'}").connect() as conn:  # the store keeps the run, marked failed
        assert conn.execute(select(runs.c.status, runs.c.frames)).one() == ("failed", 12)


def test_malformed_detection_line_reports_file_and_line(tmp_path):
    det = tmp_path / "det.txt"
    det.write_text("1 2 0.9 4 4 `0\n2 2 0.9 4 4 notrle\n")  # line 1: an empty 4x4 mask, valid
    assert_one_line_error(maskwatch("track", str(det), "--out", str(tmp_path / "t.txt")), "det.txt:2")


def test_invalid_config_key_and_value_are_named(tmp_path):
    cfg = tmp_path / "site.yaml"
    cfg.write_text("tracker:\n  min_hits: 0\n  colour: red\n")
    result = maskwatch("run", "whatever.mp4", "--config", str(cfg))
    assert_one_line_error(result, "tracker.min_hits", "tracker.colour", "unknown key")


def test_unknown_segmenter_in_config(tmp_path):
    cfg = tmp_path / "site.yaml"
    cfg.write_text("segmenter:\n  name: yolo\n")
    assert_one_line_error(maskwatch("run", "x.mp4", "--config", str(cfg)), "segmenter.name")


def test_unknown_segmenter_on_command_line(tmp_path):
    result = maskwatch("run", "x.mp4", "--segmenter", "yolo")
    assert result.returncode == 2 and "Traceback" not in result.stderr and "yolo" in result.stderr


def test_weights_file_that_is_not_a_checkpoint(tmp_path):
    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    for _ in range(3):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    weights = tmp_path / "model.pth"
    weights.write_text("these are not weights")
    result = maskwatch("run", str(video), "--weights", str(weights), "--out", str(tmp_path / "o"))
    assert_one_line_error(result, "model.pth", "checkpoint")


def test_debug_shows_the_traceback(tmp_path):
    result = maskwatch("--debug", "run", str(tmp_path / "nope.mp4"), "--segmenter", "motion")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_track_and_eval_commands_with_tracker_config(tmp_path):
    from maskwatch.synthetic import render_scene

    truth = render_scene(tmp_path / "scene.mp4")
    gt = tmp_path / "gt.txt"
    truth.write_mots(gt)
    det = tmp_path / "det.txt"
    gt_as_detections(gt, det, score=0.9)
    true_ids = len({line.split(" ")[1] for line in gt.read_text().splitlines()})
    cfg = tmp_path / "tracker.yaml"
    out = tmp_path / "tracks.txt"
    ids = {}
    for min_hits in (2, 500):  # 500 matched frames cannot happen in 170: the config must reach the tracker
        cfg.write_text(f"tracker:\n  min_hits: {min_hits}\n  lost_seconds: 3.0\n")
        result = maskwatch("track", str(det), "--out", str(out), "--fps", "10", "--config", str(cfg))
        assert result.returncode == 0, result.stderr
        ids[min_hits] = len({line.split(" ")[1] for line in out.read_text().splitlines()})
    assert ids[500] == 0 and true_ids <= ids[2] <= true_ids + 1
    cfg.write_text("min_hits: 2\n")  # bare keys work too
    assert maskwatch("track", str(det), "--out", str(out), "--fps", "10", "--config", str(cfg)).returncode == 0
    result = maskwatch("eval", "--gt", str(gt), "--pred", str(out), "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["IDSW"] == 0 and metrics["HOTA"] > 90  # the person (pedestrian class) from its own masks


def test_run_replays_precomputed_masks(tmp_path):
    from maskwatch.synthetic import render_scene

    truth = render_scene(tmp_path / "scene.mp4", frames=60)
    gt = tmp_path / "gt.txt"
    truth.write_mots(gt)
    det = tmp_path / "det.txt"
    gt_as_detections(gt, det, score=0.9)
    out = tmp_path / "o"
    result = maskwatch("run", str(tmp_path / "scene.mp4"), "--detections", str(det), "--out", str(out))
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["segmenter"] == "replay" and summary["frames"] == 60
    assert sum(summary["counts_per_class"].values()) == len({line.split(" ")[1] for line in gt.read_text().splitlines()})


def test_invalid_analytics_config_is_named(tmp_path):
    cfg = tmp_path / "site.yaml"
    cfg.write_text(
        "camera:\n  calibration: {px_per_mm: 2, px_per_m: 2000}\n  zones:\n    - {name: a, circle: [10, 10, -1]}\n"
        "rules:\n  sizes:\n    - {name: big, measure: area}\nalarms:\n  - {name: x, kinds: [explosion]}\n"
    )
    assert_one_line_error(maskwatch("run", "whatever.mp4", "--config", str(cfg)), "camera.calibration", "only one",
                          "camera.zones.0", "radius", "rules.sizes.0", "min, max", "alarms.0.kinds.0")


def test_export_ack_and_purge_commands(tmp_path):
    from analytics.records import AlarmRecord, EventRecord, ObservationRecord
    from storage.store import Store

    url = f"sqlite:///{tmp_path / 'site.db'}"
    event = EventRecord("zone_enter", "gate", 1000.0, 5, 0.5, track_id=3, track_uid="a" * 32, class_name="person", zone="pit")
    alarm = AlarmRecord(event.id, "intrusion", "critical", "gate", 1000.0, 3, "a" * 32)
    with Store(url) as store:
        run = store.start_run("gate", "gate.mp4", segmenter="motion", unit="px", started_ts=1000.0)
        old = ObservationRecord(1000.0, 5, 0.5, 3, "a" * 32, "person", 0.9, (0, 0, 1, 1), 0.5, 0.5, 1)
        store.write(run, observations=[old], events=[event], alarms=[alarm])

    result = maskwatch("export", "events", "--db", url, "--out", str(tmp_path / "e.parquet"), "--camera", "gate")
    assert result.returncode == 0 and "1 events rows" in result.stdout, result.stderr
    import pandas as pd

    assert list(pd.read_parquet(tmp_path / "e.parquet").id) == [event.id]
    assert "0 events rows" in maskwatch("export", "events", "--db", url, "--out", str(tmp_path / "e.csv"), "--since", "2001-01-01").stdout

    assert maskwatch("ack", alarm.id, "--db", url, "--user", "ana").returncode == 0
    assert_one_line_error(maskwatch("ack", alarm.id, "--db", url, "--user", "ana"), "already acknowledged")
    assert maskwatch("export", "alarms", "--db", url, "--out", str(tmp_path / "a.csv")).returncode == 0
    alarms = pd.read_csv(tmp_path / "a.csv")
    assert alarms.state.tolist() == ["acknowledged"] and alarms.acknowledged_by.tolist() == ["ana"]

    assert "1 observations deleted" in maskwatch("purge", "--db", url, "--older-than-days", "1").stdout
    assert "1 events rows" in maskwatch("export", "events", "--db", url, "--out", str(tmp_path / "e2.csv")).stdout  # kept

    assert_one_line_error(maskwatch("export", "events", "--db", f"sqlite:///{tmp_path / 'nope.db'}", "--out", str(tmp_path / "x.csv")),
                          "store not found")
    assert_one_line_error(maskwatch("export", "events", "--db", url, "--out", str(tmp_path / "x.xlsx")), ".csv or .parquet")
    assert_one_line_error(maskwatch("export", "events", "--db", "postgresql+psycopg://u:secret@127.0.0.1:1/x", "--out",
                                    str(tmp_path / "x.csv")), "u:***@")


def write_site(tmp_path: Path, config: dict) -> str:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def small_video(tmp_path: Path) -> Path:
    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    for _ in range(3):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    return video


@pytest.mark.parametrize(("source", "fragment"), [
    ("rtsp//viewer:CamPw-71@10.0.0.12/stream1", "lacks the ':' after 'rtsp'"),  # not a file called "rtsp//viewer..."
    ("rstp://viewer:CamPw-71@10.0.0.12/stream1", "unknown scheme 'rstp'"),
    ("viewer:CamPw-71@10.0.0.12/stream1", "not a URL"),
])
def test_serve_rejects_a_mistyped_camera_source_naming_the_camera(tmp_path, source, fragment):
    site = write_site(tmp_path, {"segmenter": {"name": "motion"}, "cameras": [
        {"name": "belt", "source": str(small_video(tmp_path))}, {"name": "gate", "source": source}]})
    result = maskwatch("serve", "--config", site, "--out", str(tmp_path / "o"))
    assert_one_line_error(result, "cameras.1", "camera gate", fragment, "viewer:***@")
    assert "CamPw-71" not in result.stderr


def unreachable_stores() -> dict[str, str]:
    """Store URLs that cannot be opened, each with a password that must never be shown."""
    return {
        "closed port": f"postgresql+psycopg://root:StorePw-72@127.0.0.1:{free_port()}/test",
        "missing database": "postgresql+psycopg://root:StorePw-72@127.0.0.1:5432/no_such_database_mw",
        "misspelt dialect": "postgresq+psycopg://root:StorePw-72@127.0.0.1:5432/test",
    }


@pytest.mark.parametrize("command", ["serve", "run", "dashboard"])
@pytest.mark.parametrize("store", ["closed port", "missing database", "misspelt dialect"])
def test_startup_with_a_store_that_cannot_be_opened_is_one_line(tmp_path, command, store):
    video = small_video(tmp_path)
    site = write_site(tmp_path, {"segmenter": {"name": "motion"}, "store": {"url": unreachable_stores()[store]},
                                 "cameras": [{"name": "belt", "source": str(video)}]})
    args = {"serve": ["serve", "--config", site], "run": ["run", str(video), "--config", site],
            "dashboard": ["dashboard", "--config", site, "--port", str(free_port())]}[command]
    result = maskwatch(*args, "--out", str(tmp_path / "o"))
    assert_one_line_error(result, "cannot open store", "root:***@127.0.0.1")
    assert "StorePw-72" not in result.stderr


def test_startup_store_failure_with_debug_shows_the_traceback(tmp_path):
    site = write_site(tmp_path, {"store": {"url": unreachable_stores()["closed port"]},
                                 "cameras": [{"name": "belt", "source": str(small_video(tmp_path))}]})
    result = maskwatch("--debug", "serve", "--config", site, "--out", str(tmp_path / "o"))
    assert result.returncode != 0 and "Traceback" in result.stderr and "cannot open store" in result.stderr


@pytest.mark.parametrize("command", ["serve", "run"])
def test_startup_with_missing_weights_is_one_line(tmp_path, command):
    video = small_video(tmp_path)
    site = write_site(tmp_path, {"segmenter": {"name": "maskrcnn", "maskrcnn": {"weights": str(tmp_path / "gone.pth")}},
                                 "cameras": [{"name": "belt", "source": str(video)}]})
    args = ["serve", "--config", site] if command == "serve" else ["run", str(video), "--config", site]
    assert_one_line_error(maskwatch(*args, "--out", str(tmp_path / "o")), "weights not found", "gone.pth")


@pytest.mark.parametrize("command", ["serve", "dashboard"])
def test_startup_with_a_bad_config_is_one_line(tmp_path, command):
    site = write_site(tmp_path, {"dashboard": {"stale_after_s": -1}, "cameras": [{"name": "belt", "source": "0"}]})
    args = [command, "--config", site, "--out", str(tmp_path / "o")] + (["--port", str(free_port())] if command == "dashboard" else [])
    assert_one_line_error(maskwatch(*args), "dashboard.stale_after_s")
