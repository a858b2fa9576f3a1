"""Frames/s and memory of ``maskwatch run --segmenter motion`` on vtest.avi (no rendering).

Reference in the same run: decoding the clip alone with OpenCV. Prints decode fps,
pipeline fps (decode + segment + track + zones + outputs), their ratio, and RSS
sampled through the run (first quarter vs last quarter, to show it stays flat).
Usage: python bench/pipeline_speed.py [VIDEO] [--repeat N]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import cv2
from procstat import rss_mb  # bench/procstat.py: scripts run from bench/

from maskwatch.config import AppConfig
from maskwatch.pipeline import run_pipeline

DEFAULT_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "vtest.avi"


def decode_fps(video: Path) -> float:
    capture = cv2.VideoCapture(str(video))
    frames, start = 0, time.perf_counter()
    while capture.read()[0]:
        frames += 1
    capture.release()
    return frames / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("video", nargs="?", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--repeat", type=int, default=1, help="Run the clip this many times (memory over longer runs).")
    args = parser.parse_args()
    if not args.video.is_file():
        raise SystemExit(f"video not found: {args.video}")

    reference = decode_fps(args.video)
    config = AppConfig.model_validate({"segmenter": {"name": "motion"}})
    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            samples.append(rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    total_frames, total_time = 0, 0.0
    with tempfile.TemporaryDirectory() as out:
        for i in range(args.repeat):
            summary = run_pipeline(args.video, config, Path(out) / str(i), show_progress=False)
            total_frames += summary["frames"]
            total_time += summary["elapsed_s"]
    done.set()
    sampler.join()
    fps = total_frames / total_time
    quarter = max(len(samples) // 4, 1)
    print(f"clip: {args.video.name} x{args.repeat}, {total_frames} frames")
    print(f"decode only (reference): {reference:8.1f} frames/s")
    print(f"maskwatch run --segmenter motion: {fps:8.1f} frames/s  ({fps / reference:.2f}x of decode)")
    print(f"objects tracked (last run): {summary['objects_tracked']}  counts: {summary['counts_per_class']}")
    print(f"RSS MB: first quarter max {max(samples[:quarter]):.0f}, last quarter max {max(samples[-quarter:]):.0f}, peak {max(samples):.0f}")
    print("target: >= 60 frames/s on 2 cores, flat memory")


if __name__ == "__main__":
    main()
