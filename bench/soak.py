"""Soak of live ingestion: RSS and lag must stay flat for minutes when the consumer is slower than the camera.

A LiveSource feeds a deliberately slow consumer (--consumer-ms per frame, default
200 ms, against a 25 fps source: 4 of every 5 frames must be dropped, never queued).
Every --report-s (default 10 s) it prints the process RSS and the lag (each frame's
age when read: time.time() - capture ts), then a summary of the first minute beside
the last one: flat RSS means nothing leaks, flat lag means no backlog builds up.
Default source: a generated 640x480 clip at 25 fps, looped (so it runs anywhere);
or give a camera URL (credentials are shown redacted).
Independent of the rest of the pipeline on purpose: it measures the ingestion alone.
Usage: python bench/soak.py [SOURCE] [--minutes 5] [--consumer-ms 200] [--report-s 10]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from procstat import rss_mb  # bench/procstat.py: scripts run from bench/

from maskwatch.live import LiveSource


def make_clip(path: Path, seconds: float = 10.0, fps: float = 25.0) -> Path:
    """A moving square on a noisy background: decoding costs about what a camera frame costs."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
    rng = np.random.default_rng(0)
    background = rng.integers(0, 60, (480, 640, 3), np.uint8)
    for i in range(int(seconds * fps)):
        frame = background.copy()
        x = int(i * 4) % 560
        frame[200:280, x : x + 80] = (0, 200, 255)
        writer.write(frame)
    writer.release()
    return path


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def soak(source: LiveSource, minutes: float, consumer_s: float, report_s: float) -> None:
    samples: list[tuple[float, float, float]] = []  # (seconds since start, RSS MB, lag s) per frame read
    start = time.monotonic()
    end, next_report, reported = start + minutes * 60, start + report_s, 0
    while time.monotonic() < end:
        frame = source.read(timeout=1.0)
        if frame is not None:
            read_at = time.monotonic()
            samples.append((read_at - start, rss_mb(), time.time() - frame.ts))
            cv2.GaussianBlur(frame.image, (9, 9), 0)  # touch the image, as a consumer would
            time.sleep(max(0.0, consumer_s - (time.monotonic() - read_at)))
        if time.monotonic() >= next_report:
            window = samples[reported:]
            reported, next_report = len(samples), next_report + report_s
            state = source.state()
            lags = [s[2] * 1000 for s in window]
            print(
                f"{time.monotonic() - start:6.0f} s  RSS {rss_mb():7.1f} MB  lag p50 {percentile(lags, 50):6.1f} ms"
                f"  max {max(lags, default=float('nan')):6.1f} ms  read {len(window):4d}  fps in {state.fps_in:5.1f}"
                f" out {state.fps_out:4.1f}  dropped {state.dropped:7d}  reconnects {state.reconnects}"
                f"  {'connected' if state.connected else 'DISCONNECTED: ' + str(state.last_error)}",
                flush=True,
            )
    summarize(samples, minutes * 60, source)


def summarize(samples: list[tuple[float, float, float]], duration_s: float, source: LiveSource) -> None:
    window = min(60.0, duration_s / 2)  # a short run compares its halves
    first = [s for s in samples if s[0] < window]
    last = [s for s in samples if s[0] >= duration_s - window]
    state = source.state()
    print(f"\nsummary of {state.source}: {duration_s:.0f} s, {len(samples)} frames read")
    print(f"  frames in {state.frames_in}, dropped {state.dropped}, reconnects {state.reconnects}")
    print(f"  first minute → last minute (windows of {window:.0f} s):")
    print(f"    RSS MB mean  {mean([s[1] for s in first]):8.1f} → {mean([s[1] for s in last]):8.1f}")
    first_lag, last_lag = [s[2] * 1000 for s in first], [s[2] * 1000 for s in last]
    for q in (50, 95, 100):
        print(f"    lag ms p{q:<3d}  {percentile(first_lag, q):8.1f} → {percentile(last_lag, q):8.1f}")


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", help="camera URL, device index or video file (default: a generated clip)")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--consumer-ms", type=float, default=200.0, help="time the consumer spends per frame")
    parser.add_argument("--report-s", type=float, default=10.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        target = args.source or str(make_clip(Path(tmp) / "soak.avi"))
        with LiveSource(target, loop=True) as source:  # loop only applies to files
            print(f"soak: {source.state().source} for {args.minutes:g} min, consumer {args.consumer_ms:g} ms/frame")
            soak(source, args.minutes, args.consumer_ms / 1000, args.report_s)


if __name__ == "__main__":
    main()
