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
