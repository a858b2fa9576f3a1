"""Camera-motion compensation: cost per frame, and whether it helps before any tracking runs.

For a few settings of ``CameraMotion`` (working width, corners per frame):

- cost: ms per ``update`` on MOTS20-05 frames (640x480, their ground-truth masks as
  foreground) and on the same frames upscaled to 1920x1080, beside references from
  the same run: decoding the JPEG (``cv2.imread``) and ``cvtColor`` + ``resize`` to 480 wide;
- quality: mean IoU of each ground-truth object's mask in frame t-1 with its own mask in
  frame t, as is and moved by the estimated camera motion (the gain is what the tracker's
  predicted masks would gain from compensation);
- static camera: on vtest.avi (no masks given), how far the estimate moves the frame's
  corners (per frame, and accumulated over the whole video).

Usage: python bench/camera_motion.py [--data ../shared/data] [--frames 837]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from segmenter.masks import CropMask, mask_iou
from segmenter.motsio import read_mots
from tracker.camera_motion import CameraMotion, apply_to_points, is_identity, warp_mask

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETTINGS = {"320 px, 150 corners": (320, 150), "320 px, 300 corners": (320, 300), "480 px, 300 corners": (480, 300)}
BIG = (1920, 1080)


def load_mots(root: Path, n_frames: int) -> tuple[list[np.ndarray], list[dict[int, CropMask]]]:
    """Decoded frames and, per frame, ground-truth masks by object id (ignore regions included: they are foreground)."""
    masks: list[dict[int, CropMask]] = [{} for _ in range(n_frames)]
    for record in read_mots(root / "gt.txt"):
        if record.frame <= n_frames:
            masks[record.frame - 1][record.obj_id] = record.mask()
    frames = [cv2.imread(str(root / "img1" / f"{i:06d}.jpg")) for i in range(1, n_frames + 1)]
    return frames, masks


def upscale(mask: CropMask, sx: float, sy: float) -> CropMask:
    return mask.moved(round(mask.x0 * sx), round(mask.y0 * sy), round(mask.crop.shape[1] * sx), round(mask.crop.shape[0] * sy))


def timed_updates(estimator: CameraMotion, frames: list[np.ndarray], masks: list[list[CropMask]]) -> tuple[float, list]:
    """Median ms per update, and the affines."""
    times, affines = [], []
    for image, fg in zip(frames, masks):
        start = time.perf_counter()
        affines.append(estimator.update(image, fg))
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), affines


def median_ms(fn, items: list) -> float:
    times = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def iou_gain(affines: list[np.ndarray], masks: list[dict[int, CropMask]]) -> tuple[float, float]:
    """Mean IoU of each pedestrian's mask in t-1 with its mask in t: as is, and moved by the camera motion."""
    plain, moved = [], []
    for t in range(1, len(masks)):
        for obj_id, previous in masks[t - 1].items():
            current = masks[t].get(obj_id)
            if current is not None and obj_id < 10000:  # ids of 10000 and up are ignore regions
                plain.append(mask_iou(previous, current))
                moved.append(mask_iou(warp_mask(previous, affines[t]), current))
    return float(np.mean(plain)), float(np.mean(moved))


def corner_drift(affines: list[np.ndarray], width: int, height: int) -> tuple[float, float, float]:
    """Per-frame mean and max corner displacement (px), and the displacement of all frames' motions composed."""
    corners = np.array([[0, 0], [width, 0], [0, height], [width, height]], dtype=np.float64)
    per_frame = [np.abs(apply_to_points(a, corners) - corners).max() for a in affines]
    total = np.eye(3)
    for a in affines:
        total = np.vstack([a, [0, 0, 1]]) @ total
    return float(np.mean(per_frame)), float(np.max(per_frame)), float(np.abs(apply_to_points(total[:2], corners) - corners).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--frames", type=int, default=837, help="MOTS20-05 frames used (all 837 by default)")
    args = parser.parse_args()

    frames, masks = load_mots(args.data / "mots20_05", args.frames)
    fg = [list(m.values()) for m in masks]
    height, width = frames[0].shape[:2]
    sx, sy = BIG[0] / width, BIG[1] / height
    big_frames = [cv2.resize(f, BIG, interpolation=cv2.INTER_LINEAR) for f in frames]
    big_fg = [[upscale(m, sx, sy) for m in ms] for ms in fg]
    paths = [str(args.data / "mots20_05" / "img1" / f"{i:06d}.jpg") for i in range(1, len(frames) + 1)]

    capture = cv2.VideoCapture(str(args.data / "vtest.avi"))
    static = []
    while (ok_frame := capture.read())[0]:
        static.append(ok_frame[1])
    capture.release()

    def gray_resize(image: np.ndarray) -> np.ndarray:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        return cv2.resize(gray, (480, gray.shape[0] * 480 // gray.shape[1]), interpolation=cv2.INTER_AREA)

    print(f"OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads; MOTS20-05 {len(frames)} frames, vtest {len(static)}")
    print(f"references (median ms/frame): imread 640x480 {median_ms(cv2.imread, paths):.2f}, "
          f"cvtColor+resize to 480 wide: 640x480 {median_ms(gray_resize, frames):.2f}, "
          f"1920x1080 {median_ms(gray_resize, big_frames):.2f}")
    header = (f"{'setting':<22} {'ms 640x480':>10} {'ms 1080p':>9} {'IoU t-1,t':>9} {'IoU comp':>9} {'failed':>7} "
              f"{'vtest mean':>10} {'vtest max':>9} {'vtest sum':>9}")
    print(header)
    print("-" * len(header))
    for label, (work_width, corners) in SETTINGS.items():
        ms_small, affines = timed_updates(CameraMotion(work_width, corners), frames, fg)
        ms_big, _ = timed_updates(CameraMotion(work_width, corners), big_frames, big_fg)
        plain, moved = iou_gain(affines, masks)
        failed = sum(is_identity(a) for a in affines[1:])
        _, vtest_affines = timed_updates(CameraMotion(work_width, corners), static, [[] for _ in static])
        mean_drift, max_drift, total_drift = corner_drift(vtest_affines, static[0].shape[1], static[0].shape[0])
        print(f"{label:<22} {ms_small:>10.2f} {ms_big:>9.2f} {plain:>9.4f} {moved:>9.4f} {failed:>7d} "
              f"{mean_drift:>10.3f} {max_drift:>9.3f} {total_drift:>9.2f}")
    print("IoU columns: mean over pedestrian pairs (t-1, t); failed: MOTS frames where the estimate fell back to identity;")
    print("vtest: corner displacement in px per frame (mean, max) and of all frames' motions composed (sum).")


if __name__ == "__main__":
    main()
