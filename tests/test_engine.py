"""One engine from file to live: the same durations, identities and files whichever way frames arrive."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from analytics.analyzer import Analyzer
from analytics.config import CameraConfig
from maskwatch.cli import app
from maskwatch.config import AppConfig
from maskwatch.engine import Engine, Sink, mask_tracker
from maskwatch.pipeline import run_pipeline
from maskwatch.sources import Frame
from maskwatch.synthetic import demo_config, render_scene
from segmenter.detections import Detections
from segmenter.masks import CropMask
from storage.engine import make_engine
from tracker.config import TrackerConfig

MAX_DWELL_S = 1.5


def belt_config(tmp_path: Path) -> dict:
    """The demo scene's config with a dwell limit on the crossing zone, for bottles, and every frame observed."""
    config = demo_config()
    zone = {**config["camera"]["zones"][0], "classes": ["bottle"], "max_dwell_s": MAX_DWELL_S}
    config["camera"]["zones"] = [zone]
    config["sampling"] = {"measure_every": 1, "observe_every": 1}
    config["store"] = {"url": f"sqlite:///{tmp_path / 'store.db'}"}
    config["alarms"] = []
    return config


def dwell_delays(url: str) -> list[tuple[float, float]]:
    """Per track: seconds from zone_enter to dwell_exceeded (by pts), and the longest gap between its frames in between.

    Dwell is judged when the track is seen, so a bottle hidden by the person is judged late by the length of its gap.
    """
    from storage.schema import events, observations

    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(select(events.c.kind, events.c.track_uid, events.c.pts)).all()
        seen = conn.execute(select(observations.c.track_uid, observations.c.pts)).all()
    engine.dispose()
    enter = {r.track_uid: r.pts for r in rows if r.kind == "zone_enter"}
    dwell = {r.track_uid: r.pts for r in rows if r.kind == "dwell_exceeded"}
    delays = []
    for uid in set(dwell) & set(enter):
        pts = sorted(p for u, p in seen if u == uid and enter[uid] <= p <= dwell[uid])
        delays.append((dwell[uid] - enter[uid], float(max(np.diff(pts)))))
    return delays


WORKER = """
import json, sys
from pathlib import Path
from maskwatch.camera_worker import run_camera
from maskwatch.config import AppConfig, LiveCameraConfig
config, camera, out = json.loads(Path(sys.argv[1]).read_text())
run_camera(AppConfig.model_validate(config), LiveCameraConfig.model_validate(camera), Path(out))
"""


def run_live(tmp_path: Path, video: Path, config: dict, fps: float) -> None:
    """The clip through the live camera worker (its own process, as under serve) until the file has played."""
    camera = {**config["camera"], "source": str(video), "fps": fps}
    out = tmp_path / "live-out"
    args = tmp_path / "worker.json"
    args.write_text(json.dumps([config, camera, str(out)]))
    process = subprocess.Popen([sys.executable, "-c", WORKER, str(args)], cwd=Path(__file__).resolve().parents[1],
                               stderr=subprocess.PIPE, text=True)
    status = out / "live" / "demo-belt.json"
    ended, deadline = False, time.monotonic() + 300
    try:
        while not ended and time.monotonic() < deadline and process.poll() is None:
            try:
                ended = json.loads(status.read_text()).get("ended")
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert ended, f"the live worker did not play the clip to its end: {stderr[-2000:]}"
    assert process.returncode == 0, stderr[-2000:]


@pytest.mark.parametrize("mode", ["run", "live full rate", "live one frame in three"])
def test_dwell_exceeded_comes_max_dwell_after_enter_however_frames_arrive(tmp_path, mode):
    video = tmp_path / "belt.mp4"
    render_scene(video)
    config = belt_config(tmp_path)
    if mode == "run":
        run_pipeline(video, AppConfig.model_validate(config), tmp_path / "out", show_progress=False)
    else:
        run_live(tmp_path, video, config, fps=10.0 if mode == "live full rate" else 10.0 / 3)
    delays = dwell_delays(config["store"]["url"])
    assert delays, "no bottle both entered the zone and overstayed"
    interval = 0.3 if mode == "live one frame in three" else 0.1
    assert min(gap for _, gap in delays) >= interval - 0.01  # frames really were processed at that rate
    for delay, gap in delays:
        assert MAX_DWELL_S <= delay + 1e-6 and delay <= MAX_DWELL_S + gap + 1e-6


class Collect(Sink):
    def __init__(self) -> None:
        self.steps, self.completed, self.finals, self.status = [], [], [], None

    def on_frame(self, step) -> None:
        self.steps.append(step)

    def on_completed(self, frame, observations) -> None:
        self.completed.append((frame, observations))

    def on_final(self, analysis) -> None:
        self.finals.append(analysis)

    def close(self, status) -> None:
        self.status = status


class Discs:
    """A stand-in segmenter: one disc per given centre, on frames of the image's size."""

    def __init__(self, centres) -> None:
        self.centres = centres

    def segment(self, images):
        out = []
        for image in images:
            h, w = image.shape[:2]
            yy, xx = np.mgrid[:h, :w]
            cx, cy = self.centres(w)
            masks = [CropMask.from_full((xx - cx) ** 2 + (yy - cy) ** 2 <= 100)]
            out.append(Detections.from_masks(masks, [1], [0.9], ["thing"], (h, w)))
        return out


def test_a_stream_that_changes_size_ends_its_tracks_and_numbers_on(tmp_path):
    zone = {"name": "all", "polygon": [[0, 0], [400, 0], [400, 400], [0, 400]]}
    camera = CameraConfig.model_validate({"name": "cam", "zones": [zone]})
    sink = Collect()
    engine = Engine(Discs(lambda w: (w // 2, 40)), mask_tracker(TrackerConfig(min_hits=1)), lambda: Analyzer(camera), [sink])
    for i in range(6):
        size = (100, 160) if i < 3 else (120, 200)
        engine.process([Frame(i, i * 0.1, 1000 + i * 0.1, np.zeros((*size, 3), np.uint8))])
    engine.close()
    first = {o.track_uid: o.track_id for s in sink.steps[:3] for o in s.tracks.tracks}
    second = {o.track_uid: o.track_id for s in sink.steps[3:] for o in s.tracks.tracks}
    assert len(first) == len(second) == 1
    assert set(first).isdisjoint(second) and set(first.values()).isdisjoint(second.values())
    assert len(sink.finals) == 2  # the size change closed the first tracks, the end closed the second
    exits = [e for final in sink.finals for e in final.events if e.kind == "zone_exit"]
    assert {e.track_uid for e in exits} == set(first) | set(second)
    assert engine.unique() == {"thing": 2} and sink.status == "finished"


def test_two_runs_into_one_store_never_share_a_track_uid(tmp_path):
    video = tmp_path / "belt.mp4"
    render_scene(video, frames=60)
    config = AppConfig.model_validate(belt_config(tmp_path))
    for run in ("a", "b"):
        run_pipeline(video, config, tmp_path / run, show_progress=False)
    from storage.schema import tracks

    engine = make_engine(config.store.url)
    with engine.connect() as conn:
        rows = conn.execute(select(tracks.c.run_id, tracks.c.track_id, tracks.c.track_uid)).all()
    engine.dispose()
    by_run = {run: {r.track_uid for r in rows if r.run_id == run} for run in {r.run_id for r in rows}}
    assert len(by_run) == 2 and all(by_run.values())
    first, second = by_run.values()
    assert first.isdisjoint(second)
    assert {r.track_id for r in rows if r.track_uid in first} & {r.track_id for r in rows if r.track_uid in second}
    exported = (tmp_path / "a" / "tracks.csv").read_text().splitlines()[0].split(",")
    assert "track_uid" in exported


def shared_sequence(shared_data: Path, name: str) -> Path:
    path = shared_data / name
    if not path.exists():
        pytest.skip(f"{path} not found (the shared data set is not beside this checkout)")
    return path


def test_track_and_run_detections_write_the_same_mots_from_one_and_from_zero(tmp_path, shared_data):
    """MOTS20-05 numbers frames from 1 (with images); KITTI MOTS from 0 (masks alone): both ways give one file.

    The tracker is told not to look at the frames (camera motion, appearance), the
    one thing ``run`` has that ``track`` has not, so any difference is the path's.
    """
    from bench.reference import gt_as_detections

    runner = CliRunner()
    site = tmp_path / "blind.yaml"
    site.write_text("tracker:\n  camera_motion: 'off'\n  appearance_weight: 0\n  relink_appearance: 0\n")
    cases = [
        (shared_sequence(shared_data, "mots20_05/gt.txt"), shared_data / "mots20_05" / "img1", 1),
        (shared_sequence(shared_data, "kitti_mots_train/0003.txt"), None, 0),
    ]
    for gt, images, first in cases:
        detections = tmp_path / f"{gt.parent.name}-{gt.stem}.det.txt"
        gt_as_detections(gt, detections, score=0.9)
        tracked = tmp_path / f"{detections.stem}.track.txt"
        result = runner.invoke(app, ["track", str(detections), "--out", str(tracked), "--fps", "10", "--config", str(site)])
        assert result.exit_code == 0, result.output
        out = tmp_path / f"{detections.stem}-run"
        args = ["run", *([str(images)] if images else []), "--detections", str(detections), "--fps", "10", "--out", str(out),
                "--config", str(site)]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        ran = (out / "tracks.mots.txt").read_text()
        assert ran == tracked.read_text() and ran
        assert min(int(line.split()[0]) for line in ran.splitlines()) >= first
        fmt = "kitti" if first == 0 else "mots20"
        result = runner.invoke(app, ["eval", "--gt", str(gt), "--pred", str(out / "tracks.mots.txt"), "--format", fmt, "--json"])
        assert result.exit_code == 0, result.output


def test_an_image_folder_plays_at_its_fps_and_replayed_masks_keep_the_config_keys(tmp_path):
    """``run FOLDER --fps N`` times frames 1/N apart; ``--detections`` keeps the config's class names and threshold."""
    import cv2
    import yaml

    from segmenter.motsio import format_detection_line
    from tests.test_cli import assert_one_line_error, maskwatch

    folder = tmp_path / "img1"
    folder.mkdir()
    rows = []
    for i in range(8):
        image = np.zeros((60, 80, 3), np.uint8)
        cv2.imwrite(str(folder / f"{i:06d}.png"), image)
        mask = np.zeros((60, 80), bool)
        mask[20:30, 10 + 4 * i : 20 + 4 * i] = True
        rle = CropMask.from_full(mask).to_rle(60, 80)
        rows += [format_detection_line(i, 7, 0.9, rle), format_detection_line(i, 7, 0.2, rle)]  # from 0; a faint copy
    detections = tmp_path / "det.txt"
    detections.write_text("\n".join(rows) + "\n")
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({"segmenter": {"replay": {"class_names": {7: "pill"}, "score_threshold": 0.5}},
                                    "tracker": {"min_hits": 1}, "sampling": {"observe_every": 1}}))
    out = tmp_path / "out"
    result = maskwatch("run", str(folder), "--detections", str(detections), "--fps", "4", "--config", str(site), "--out", str(out))
    assert result.returncode == 0, result.stderr
    import pandas as pd

    observations = pd.read_csv(out / "observations.csv")
    assert list(observations.pts) == [i / 4 for i in range(8)] and set(observations.class_name) == {"pill"}
    assert json.loads((out / "summary.json").read_text())["fps_from"] == "--fps"
    assert [line.split()[0] for line in (out / "tracks.mots.txt").read_text().splitlines()] == [str(i) for i in range(8)]
    assert_one_line_error(maskwatch("run", "--out", str(tmp_path / "none")), "video or image folder")
