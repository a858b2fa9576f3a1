"""Tracking quality on MOTS20-05 ground truth: maskwatch vs ByteTrack, clean and noisy input.

Both trackers get the same detection masks (the ground truth, then the same
ground truth through the simulated segmenter of ``segmenter.noise``) and are
scored by TrackEval. Usage: python bench/tracker_quality.py [GT.txt] [--fps 14]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.reference import bytetrack_mots, noisy_detections
from maskwatch.offline import track_file
from segmenter.noise import NoiseModel
from tracker.config import TrackerConfig
from tracker.evaluate import evaluate_mots

DEFAULT_GT = Path(__file__).resolve().parents[2] / "shared" / "data" / "mots20_05" / "gt.txt"
KEYS = ("HOTA", "DetA", "AssA", "MOTSA", "IDF1", "IDSW")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("gt", nargs="?", type=Path, default=DEFAULT_GT)
    parser.add_argument("--fps", type=float, default=14.0)
    parser.add_argument("--format", default="mots20", choices=["mots20", "kitti"])
    args = parser.parse_args()
    print(f"{'input':<10} {'tracker':<10} " + " ".join(f"{k:>7}" for k in KEYS))
    with tempfile.TemporaryDirectory() as tmp:
        for label, noise in (("clean", NoiseModel()), ("noisy", NoiseModel.realistic(seed=3))):
            det = Path(tmp) / f"{label}.txt"
            noisy_detections(args.gt, det, noise)
            ours, theirs = Path(tmp) / f"{label}_ours.txt", Path(tmp) / f"{label}_bt.txt"
            track_file(det, ours, TrackerConfig(), args.fps)
            bytetrack_mots(det, theirs, args.fps)
            for name, path in (("maskwatch", ours), ("bytetrack", theirs)):
                m = evaluate_mots(args.gt, path, args.format)
                print(f"{label:<10} {name:<10} " + " ".join(f"{m[k]:>7.1f}" if k != "IDSW" else f"{m[k]:>7d}" for k in KEYS))


if __name__ == "__main__":
    main()
