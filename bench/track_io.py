"""Frames/s of ``maskwatch track`` end to end (read, validate, decode, track, write) on a 1080p MOTS file.

The detection file holds MOTS20-05's ground-truth masks scaled to 1920x1080 (about
ten per frame; synthetic ellipses when the shared data is absent). References in
the same run: a plain read of the file, and decoding every mask of it to a full
frame with pycocotools and cropping, as the replay segmenter did before.
Usage: python bench/track_io.py [--frames 525] [--rounds 3] [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from maskwatch.offline import track_file
from segmenter.masks import CropMask
from segmenter.motsio import format_detection_line, read_mots
from tracker.config import TrackerConfig

H, W = 1080, 1920
FPS = 14.0  # MOTS20-05's frame rate
GT = Path(__file__).resolve().parents[2] / "shared" / "data" / "mots20_05" / "gt.txt"


def scaled(mask: CropMask, sx: float, sy: float) -> CropMask:
    """The mask resized by ``sx``×``sy`` around the frame origin (nearest neighbour, as a label map would be)."""
    x0, y0, x1, y1 = (round(v) for v in (mask.x0 * sx, mask.y0 * sy, mask.x1 * sx, mask.y1 * sy))
    crop = cv2.resize(mask.crop.view(np.uint8), (max(x1 - x0, 1), max(y1 - y0, 1)), interpolation=cv2.INTER_NEAREST)
    return CropMask(crop.astype(bool), x0, y0)


def mots20_lines(gt: Path, frames: int) -> list[str]:
    """Detection lines from the ground truth's masks (ignore regions included), scaled to 1080p."""
    lines = []
    for r in read_mots(gt):
        if r.frame <= frames:
            mask = scaled(r.mask(), W / r.width, H / r.height).clipped(H, W)
            if mask.area:
                lines.append(format_detection_line(r.frame, r.class_id, 0.9, mask.to_rle(H, W)))
    return lines


def ellipse_lines(frames: int, objects: int = 10, seed: int = 0) -> list[str]:
    """Drifting ellipses, ``objects`` per frame, when MOTS20-05 is not at hand."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform([150, 150], [W - 150, H - 150], (objects, 2))
    vel = rng.uniform(-6, 6, (objects, 2))
    axes = rng.uniform(20, 120, (objects, 2))
    lines = []
    for frame in range(1, frames + 1):
        for (x, y), (a, b) in zip(pos, axes):
            w, h = int(2 * a + 3), int(2 * b + 3)
            crop = np.zeros((h, w), np.uint8)
            cv2.ellipse(crop, (w // 2, h // 2), (int(a), int(b)), 0, 0, 360, 1, -1)
            mask = CropMask(crop.astype(bool), int(x) - w // 2, int(y) - h // 2).clipped(H, W)
            lines.append(format_detection_line(frame, 2, 0.9, mask.to_rle(H, W)))
        pos += vel
        vel[(pos < 100) | (pos > [W - 100, H - 100])] *= -1
    return lines


def plain_read(path: Path) -> int:
    """Read and split every line: the floor any reader pays."""
    frames = set()
    with path.open() as handle:
        for line in handle:
            frames.add(line.split(" ", 1)[0])
    return len(frames)


def full_frame_decode(path: Path) -> int:
    """Every mask decoded to a full frame by pycocotools and cropped (the replay path before crops)."""
    frames = set()
    with path.open() as handle:
        for line in handle:
            frame, _, _, height, width, counts = line.split()
            full = mask_utils.decode({"size": [int(height), int(width)], "counts": counts.encode()})
            CropMask.from_full(full.astype(bool))
            frames.add(frame)
    return len(frames)


def timed(run: Callable[[], int]) -> float:
    """Frames/s of one call of ``run`` (which returns the frames it handled)."""
    start = time.perf_counter()
    frames = run()
    return frames / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=525, help="Frames of MOTS20-05 (or of ellipses) in the file.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gt", type=Path, default=GT, help="MOTS ground truth to scale up (ellipses when missing).")
    parser.add_argument("--smoke", action="store_true", help="Tiny run (CI): 20 frames of ellipses, one round.")
    args = parser.parse_args()
    if args.smoke:
        args.frames, args.rounds, args.gt = 20, 1, Path("/nonexistent")
    lines = mots20_lines(args.gt, args.frames) if args.gt.is_file() else ellipse_lines(args.frames)
    source = f"{args.gt.parent.name} ground truth" if args.gt.is_file() else "synthetic ellipses"
    with tempfile.TemporaryDirectory() as tmp:
        det = Path(tmp) / "det.txt"
        det.write_text("\n".join(lines) + "\n")
        frames = plain_read(det)
        print(f"{source} at {W}x{H}: {frames} frames, {len(lines) / frames:.1f} masks per frame, "
              f"{det.stat().st_size / 1e6:.1f} MB")
        print(f"{'round':>5} {'plain read':>12} {'full-frame decode':>18} {'maskwatch track':>16} {'vs decode':>10}")
        results = []
        for index in range(args.rounds):
            read_fps, decode_fps = timed(lambda: plain_read(det)), timed(lambda: full_frame_decode(det))
            track_fps = timed(lambda: track_file(det, Path(tmp) / "tracks.txt", TrackerConfig(), FPS)["frames"])
            results.append(track_fps)
            ratio = track_fps / decode_fps
            print(f"{index + 1:>5} {read_fps:>12.0f} {decode_fps:>18.1f} {track_fps:>16.1f} {ratio:>9.2f}x")
        print(f"maskwatch track: median {statistics.median(results):.1f} frames/s end to end (I/O included)")
        print("target: >= 150 frames/s on 2 cores")


if __name__ == "__main__":
    main()
