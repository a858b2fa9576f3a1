"""Tracker cost per frame at 10/50/200 objects on 1920x1080, beside ByteTrack (boxes only).

Both trackers get the same moving, partly touching elliptic objects; maskwatch
associates by mask IoU on crops, ByteTrack (Roboflow ``trackers``) by box IoU.
Prints ms/frame for each (the best of alternating rounds, so a busy machine
hurts both alike) and the ratio. Usage: python bench/tracker_speed.py [--frames 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from segmenter import CropMask, Detections
from tracker import MaskTracker, TrackerConfig

H, W = 1080, 1920
FPS = 30.0  # the scene's frame rate: timestamps for maskwatch, frame_rate for ByteTrack


def make_scene(n_objects: int, n_frames: int, seed: int = 0) -> list[Detections]:
    """Ellipses drifting with constant velocity, bouncing off the borders; masks drawn once per frame."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform([100, 100], [W - 100, H - 100], (n_objects, 2))
    vel = rng.uniform(-8, 8, (n_objects, 2))
    axes = rng.uniform(12, 45, (n_objects, 2))
    frames = []
    for _ in range(n_frames):
        masks = []
        for (x, y), (a, b) in zip(pos, axes):
            w, h = int(2 * a + 3), int(2 * b + 3)
            crop = np.zeros((h, w), np.uint8)
            cv2.ellipse(crop, (w // 2, h // 2), (int(a), int(b)), 0, 0, 360, 1, -1)
            masks.append(CropMask(crop.astype(bool), int(x - w // 2), int(y - h // 2)))
        scores = rng.uniform(0.3, 1.0, n_objects)
        frames.append(Detections.from_masks(masks, [0] * n_objects, scores, ["obj"] * n_objects, (H, W)))
        pos += vel
        bounce = (pos < 60) | (pos > [W - 60, H - 60])
        vel[bounce] *= -1
    return frames


def time_maskwatch(frames: list[Detections]) -> float:
    tracker = MaskTracker(TrackerConfig())
    start = time.perf_counter()
    for index, det in enumerate(frames):
        tracker.update(det, index / FPS)
    return (time.perf_counter() - start) / len(frames) * 1000


def time_bytetrack(frames: list[Detections]) -> float:
    import supervision as sv
    from trackers import ByteTrackTracker

    tracker = ByteTrackTracker(frame_rate=FPS)
    boxes = [sv.Detections(xyxy=d.boxes.astype(np.float32), confidence=d.scores, class_id=d.class_ids) for d in frames]
    start = time.perf_counter()
    for det in boxes:
        tracker.update(det)
    return (time.perf_counter() - start) / len(frames) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"tracker cost per frame, {W}x{H}, {args.frames} frames")
    print(f"{'objects':>8} {'maskwatch ms':>13} {'bytetrack ms':>13} {'ratio':>6}")
    for n in (10, 50, 200):
        frames = make_scene(n, args.frames, seed=n)
        rounds = [(time_maskwatch(frames), time_bytetrack(frames)) for _ in range(args.rounds)]
        ours, theirs = min(r[0] for r in rounds), min(r[1] for r in rounds)
        print(f"{n:>8} {ours:>13.3f} {theirs:>13.3f} {ours / theirs:>6.2f}")
    print("target: at or below ByteTrack's time (ratio <= 1) at 50 and 200 objects")


if __name__ == "__main__":
    main()
