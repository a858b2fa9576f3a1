"""`maskwatch track` on MOTS20-05 ground truth, clean and with simulated segmenter noise, against ByteTrack."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.reference import bytetrack_mots, gt_as_detections, noisy_detections
from segmenter.noise import NoiseModel
from tracker.evaluate import evaluate_mots

FPS = 14.0  # MOT17-05 / MOTS20-05


def track(det, out):
    result = subprocess.run([sys.executable, "-m", "maskwatch", "track", str(det), "--out", str(out), "--fps", str(FPS)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def gt(shared_data):
    return shared_data / "mots20_05" / "gt.txt"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("quality")


def test_zero_noise_matches_feeding_ground_truth_unchanged(gt, work):
    """Sanity: the noise model at zero noise is the identity, end to end through `maskwatch track`."""
    unchanged = work / "gt_as_detections.txt"
    gt_as_detections(gt, unchanged, score=1.0, classes=(2,))
    zero = work / "zero.txt"
    noisy_detections(gt, zero, NoiseModel())
    hota_unchanged = evaluate_mots(gt, track(unchanged, work / "t_unchanged.txt"))["HOTA"]
    hota_zero = evaluate_mots(gt, track(zero, work / "t_zero.txt"))["HOTA"]
    assert abs(hota_zero - hota_unchanged) <= 1.0
    assert hota_unchanged > 70  # perfect masks, appearance-free online tracking on a moving camera


def test_noisy_input_beats_bytetrack(gt, work):
    det = work / "noisy.txt"
    noisy_detections(gt, det, NoiseModel.realistic(seed=3))
    ours = evaluate_mots(gt, track(det, work / "t_noisy.txt"))
    bytetrack_mots(det, work / "bytetrack.txt", FPS)
    theirs = evaluate_mots(gt, work / "bytetrack.txt")
    assert ours["HOTA"] > theirs["HOTA"], (ours, theirs)
    assert ours["AssA"] > theirs["AssA"]


def test_frames_carry_the_video_images_only_where_there_are_some(shared_data):
    from bench.reference import _frames

    with_images = list(_frames(3, FPS, shared_data / "mots20_05" / "img1"))
    assert [f.index for f in with_images] == [0, 1, 2] and all(f.image.shape == (480, 640, 3) for f in with_images)
    assert all(f.image is None for f in _frames(3, 10.0, None))


def test_quality_harness_on_a_short_slice(shared_data, tmp_path):
    """Every tracker, both levels, through workers' code path; perfect association is the ceiling it should be."""
    from bench.tracker_quality import TRACKERS, aggregate, derive, run, sequences, tables
    from tracker.config import TrackerConfig

    seqs = [s for s in sequences(shared_data) if s.name in ("MOTS20-05", "KITTI-0011")]
    assert [s.split for s in seqs] == ["tune", "tune"] and seqs[0].images is not None and seqs[1].images is None
    results = run(seqs, TRACKERS, (0, 1), TrackerConfig(), jobs=1, work=tmp_path, max_frames=20)
    assert len(results) == 2 * 3 * len(TRACKERS)  # clean once, noisy twice
    rows = aggregate(results, {s.name: s.split for s in seqs})
    assert rows[("tune", "MOTS20", "clean", "perfect")].hota == [100.0]
    assert rows[("tune", "KITTI car", "clean", "perfect")].idf1 == [100.0]
    noisy = rows[("tune", "MOTS20", "noisy", "perfect")]
    assert len(noisy.hota) == 2 and noisy.idsw == [0, 0]
    for tracker in TRACKERS:
        assert all(a <= b for a, b in zip(rows[("tune", "MOTS20", "noisy", tracker)].idf1, noisy.idf1)), tracker
    metrics, gaps = tables(rows, derive(rows))
    assert any("| tune | MOTS20 | noisy | 2 |" in line for line in gaps)
    assert len(metrics) == 2 + len(rows)
