"""`maskwatch run` end to end on the self-generated scene: counts, outputs, interruption."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest
import yaml
from pycocotools import mask as mask_utils

from maskwatch.config import AppConfig
from maskwatch.pipeline import run_pipeline
from maskwatch.sources import FrameSource
from maskwatch.synthetic import demo_config, render_scene
from segmenter.motion import MotionSegmenter
from tracker.evaluate import evaluate_mots


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scene")
    video = folder / "scene.mp4"
    truth = render_scene(video)
    config = folder / "site.yaml"
    config.write_text(yaml.safe_dump(demo_config()))
    return video, truth, config


@pytest.fixture(scope="module")
def run_output(scene, tmp_path_factory):
    video, _, config = scene
    out = tmp_path_factory.mktemp("run")
    result = subprocess.run(
        [sys.executable, "-m", "maskwatch", "run", str(video), "--config", str(config), "--out", str(out), "--render"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return out, result.stdout


def test_run_recovers_true_object_count_per_class(scene, run_output):
    _, truth, _ = scene
    out, stdout = run_output
    summary = json.loads((out / "summary.json").read_text())
    assert truth.counts_per_class() == {"bottle": 8, "person": 1}
    assert summary["counts_per_class"] == truth.counts_per_class()
    assert summary["objects_tracked"] == 9 and summary["interrupted"] is False
    assert "bottle: 8" in stdout and "person: 1" in stdout


def test_outputs_are_complete_and_consistent(scene, run_output):
    out, _ = run_output
    tracks = pd.read_parquet(out / "tracks.parquet")
    observations = pd.read_parquet(out / "observations.parquet")
    assert set(tracks.columns) >= {"track_id", "class_name", "first_frame", "last_frame", "frames_seen", "median_area"}
    pd.testing.assert_frame_equal(tracks, pd.read_csv(out / "tracks.csv"), check_dtype=False)
    assert len(observations) == len(pd.read_csv(out / "observations.csv"))
    per_track = observations.groupby("track_id").frame.agg(["min", "max", "count"])
    for row in tracks.itertuples():
        assert (per_track.loc[row.track_id].tolist()) == [row.first_frame, row.last_frame, row.frames_seen]
    bottles = tracks[tracks.class_name == "bottle"].median_area
    assert bottles.between(550, 800).all()  # discs of radius 14: 615 px, plus the segmenter's closing
    assert (out / "annotated.mp4").stat().st_size > 10_000


def test_mots_output_is_disjoint_and_scores_well_against_truth(scene, run_output, tmp_path):
    _, truth, _ = scene
    out, _ = run_output
    by_frame: dict[int, list] = {}
    for line in (out / "tracks.mots.txt").read_text().splitlines():
        frame, _, _, h, w, rle = line.split(" ")
        by_frame.setdefault(int(frame), []).append({"size": [int(h), int(w)], "counts": rle.encode()})
    for rles in by_frame.values():
        if len(rles) > 1:
            assert mask_utils.merge(rles, intersect=True) and mask_utils.area(mask_utils.merge(rles, intersect=True)) == 0
    gt = tmp_path / "gt.txt"
    truth.write_mots(gt)
    # KITTI MOTS layout scores both classes (1 = bottle as "car", 2 = person as "pedestrian"); it counts frames from 0
    gt0, pred0 = tmp_path / "gt0.txt", tmp_path / "pred0.txt"
    for src, dst in ((gt, gt0), (out / "tracks.mots.txt", pred0)):
        dst.write_text("".join(f"{int(f) - 1} {rest}\n" for f, rest in (line.split(" ", 1) for line in src.read_text().splitlines())))
    metrics = evaluate_mots(gt0, pred0, "kitti")
    assert metrics["car/IDSW"] == 0 and metrics["pedestrian/IDSW"] == 0
    assert metrics["car/HOTA"] > 70 and metrics["car/MOTSA"] > 75


def test_interrupt_keeps_what_was_written(scene, tmp_path):
    _, _, config = scene
    video = tmp_path / "long.mp4"
    render_scene(video, frames=1500)  # long enough to be still running when interrupted
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "maskwatch", "run", str(video), "--config", str(config), "--out", str(out), "--render"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a shell's background job ignores SIGINT and children inherit that: the run must get it as a terminal would
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    observations_csv = out / "observations.csv"
    while time.time() < deadline and not (observations_csv.exists() and observations_csv.read_text().count("\n") > 20):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert 0 < summary["frames"] < 1500 and summary["interrupted"] is True and "interrupted" in stdout
    observations = pd.read_parquet(out / "observations.parquet")
    assert len(observations) > 0 and len(observations) == len(pd.read_csv(out / "observations.csv"))
    assert observations.frame.max() < summary["frames"]
    assert (out / "tracks.csv").is_file() and (out / "annotated.mp4").stat().st_size > 0


def truth_line_crossings(truth, x_line: float, top: float, bottom: float) -> dict[str, int]:
    """Objects per class whose visible-mask centroid crosses x = x_line (left to right) between top and bottom."""
    last: dict[int, float] = {}
    crossed: dict[int, str] = {}
    for instances in truth.frames:
        for inst in instances:
            cx, cy = inst.mask.centroid()
            if inst.obj_id in last and last[inst.obj_id] < x_line <= cx and top <= cy <= bottom:
                crossed.setdefault(inst.obj_id, inst.class_name)
            last[inst.obj_id] = cx
    counts: dict[str, int] = {}
    for name in crossed.values():
        counts[name] = counts.get(name, 0) + 1
    return counts


def test_line_counts_zone_events_and_store_match_the_scene(scene, run_output):
    from maskwatch.synthetic import BELT, COUNT_LINE_X
    from storage.export import load_events, load_tracks

    _, truth, _ = scene
    out, stdout = run_output
    summary = json.loads((out / "summary.json").read_text())
    expected = truth_line_crossings(truth, COUNT_LINE_X, *BELT)
    assert expected == {"bottle": 8}
    assert summary["line_counts"] == {"belt-end": {"bottle": {"in": 8, "out": 0}}}
    assert "line belt-end: bottle in=8 out=0" in stdout

    url = summary["store"]
    tracks = load_tracks(url)
    assert len(tracks) == 9 and tracks.groupby("class_name").size().to_dict() == truth.counts_per_class()
    assert (tracks.unit == "mm").all()
    # sizes come only from frames where an object touches nothing: the lone pill, the last bottle and the person at least;
    # bottles of a touching pair that the belt never separates have none
    sized = tracks[tracks.area_median.notna()]
    assert len(sized) >= 3 and "person" in set(sized.class_name)
    bottles = sized[sized.class_name == "bottle"]
    # discs of radius 14 px at 0.4 px/mm: 29 px = 72 mm across (plus the segmenter's closing); pills 37 px = 92 mm long
    assert len(bottles) >= 2 and bottles.length_median.between(65, 100).all()

    events = load_events(url)
    csv_events = pd.read_csv(out / "events.csv")
    assert sorted(events.id) == sorted(csv_events.id)
    person_enter = events[(events.kind == "zone_enter") & (events.class_name == "person")]
    assert len(person_enter) == 1 and person_enter.iloc[0].zone == "crossing"
    assert summary["alarms"] == 1
    oversize = events[events.kind == "size_rule"]
    assert len(oversize) >= 1 and (oversize.value > 80).all() and (oversize.unit == "mm").all()
    # every event has its snapshot, but the exits made at the end of the video (there is no frame left to show)
    last_frame = summary["frames"] - 1
    without = events[events.snapshot.isna()]
    assert ((without.kind == "zone_exit") & (without.frame == last_frame)).all()
    for snapshot in events.snapshot.dropna():
        assert (out / "snapshots" / snapshot).stat().st_size > 500


def outputs_of(out) -> dict:
    """What a run wrote, less what differs from run to run (times, event ids, track uids, paths)."""
    summary = json.loads((out / "summary.json").read_text())
    events = pd.read_csv(out / "events.csv")
    media = [*events.snapshot.dropna(), *events.context_snapshot.dropna()]  # paths name the event: compared by content
    snapshots = [(out / "snapshots" / name).read_bytes() for name in media]
    return {
        "summary": {k: v for k, v in summary.items() if k not in ("elapsed_s", "processing_fps", "store", "files")},
        "tracks": pd.read_csv(out / "tracks.csv").drop(columns=["track_uid"]).to_csv(),
        "observations": pd.read_csv(out / "observations.csv").drop(columns=["track_uid"]).to_csv(),
        "events": events.drop(columns=["id", "ts", "snapshot", "context_snapshot", "clip", "track_uid"]).to_csv(),
        "snapshots": snapshots,
    }


def test_decoding_into_reused_buffers_changes_no_output(scene, tmp_path, monkeypatch):
    """The segmenter, tracker and snapshots see the very pixels they saw when every frame had an array of its own."""
    video, _, config_path = scene
    config = AppConfig.model_validate(yaml.safe_load(config_path.read_text()))
    with monkeypatch.context() as patch:
        unpooled = FrameSource.frames
        patch.setattr(FrameSource, "frames", lambda self, pool=None: unpooled(self))
        run_pipeline(video, config, tmp_path / "fresh", show_progress=False)

    allocated: list[np.ndarray] = []
    segment = MotionSegmenter.segment

    def host_frame(self, shape):
        allocated.append(np.empty(shape, np.uint8))
        return allocated[-1]

    def pooled_segment(self, frames):
        assert all(any(frame is buffer for buffer in allocated) for frame in frames)
        return segment(self, frames)

    monkeypatch.setattr(MotionSegmenter, "host_frame", host_frame, raising=False)  # the pool's allocator, if offered
    monkeypatch.setattr(MotionSegmenter, "segment", pooled_segment)
    summary = run_pipeline(video, config, tmp_path / "pooled", show_progress=False)
    assert summary["frames"] == 170 and summary["objects_tracked"] == 9
    assert len(allocated) <= 8 + 16 + 1  # one call's frames, those decoded ahead of it, the one being decoded
    assert outputs_of(tmp_path / "pooled") == outputs_of(tmp_path / "fresh")


def test_a_run_stopped_early_leaves_no_decoder_waiting(scene, tmp_path):
    video, _, config_path = scene
    config = AppConfig.model_validate(yaml.safe_load(config_path.read_text()))
    assert run_pipeline(video, config, tmp_path, max_frames=10, show_progress=False)["frames"] == 10
    for thread in threading.enumerate():
        if thread.name == "decode":
            thread.join(timeout=2)
    assert not any(thread.name == "decode" for thread in threading.enumerate())
