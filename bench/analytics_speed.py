"""Analytics cost per frame: 50 tracks moving through 10 zones (plus 2 lines) on 1920x1080.

Prints ms/frame for the analytics stage (zones by mask pixels, lines, counts,
rules, observation sampling; no snapshots) with sizes measured every frame
and every 5th frame, beside a naive reference that tests zone membership by
ANDing each full-frame mask with each full-frame zone raster, in the same run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from analytics.analyzer import Analyzer
from analytics.config import CameraConfig, RulesConfig, SamplingConfig
from segmenter.masks import CropMask
from tracker.tracker import FrameTracks, TrackObservation, TrackState

HEIGHT, WIDTH = 1080, 1920
RATE = 25.0  # frames/s of the synthetic clip: frame f is at pts f / RATE


def scene(frames: int, objects: int, seed: int = 0) -> list[list[TrackObservation]]:
    """Elliptic masks (20-60 px radii) drifting across the frame, one track each."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform([100, 100], [WIDTH - 100, HEIGHT - 100], (objects, 2))
    vel = rng.uniform(-6, 6, (objects, 2))
    radii = rng.uniform(20, 60, (objects, 2)).astype(int)
    yy = [np.mgrid[-ry : ry + 1, -rx : rx + 1] for rx, ry in radii]
    shapes = [(x / rx) ** 2 + (y / ry) ** 2 <= 1 for (y, x), (rx, ry) in zip(yy, radii)]
    out = []
    for f in range(frames):
        p = pos + vel * f
        p[:, 0] = np.abs((p[:, 0] - 80) % (2 * (WIDTH - 160)) - (WIDTH - 160)) + 80  # bounce inside the frame
        p[:, 1] = np.abs((p[:, 1] - 80) % (2 * (HEIGHT - 160)) - (HEIGHT - 160)) + 80
        tracks = []
        for i, (shape, (rx, ry)) in enumerate(zip(shapes, radii)):
            mask = CropMask(shape, int(p[i, 0]) - rx, int(p[i, 1]) - ry)
            tracks.append(TrackObservation(f, f / RATE, i + 1, f"bench-{i + 1}", 0, "person" if i % 3 else "bottle", mask,
                                           mask.box(), 0.9, f + 1, f + 1, TrackState.CONFIRMED))
        out.append(tracks)
    return out


def camera(zones: int) -> CameraConfig:
    rng = np.random.default_rng(1)
    shapes = []
    for i in range(zones):
        x, y = rng.uniform([0, 0], [WIDTH - 400, HEIGHT - 300])
        if i % 2:
            shapes.append({"name": f"z{i}", "circle": (x + 150, y + 150, 150)})
        else:
            shapes.append({"name": f"z{i}", "polygon": [(x, y), (x + 400, y + 40), (x + 360, y + 300), (x + 20, y + 260)]})
    lines = [{"name": "l1", "points": [(WIDTH / 2, 0), (WIDTH / 2, HEIGHT)]}, {"name": "l2", "points": [(0, HEIGHT / 2), (WIDTH, HEIGHT / 2)]}]
    return CameraConfig(name="bench", calibration={"px_per_mm": 2.0}, zones=shapes, lines=lines)


def time_analyzer(frames: list[list[TrackObservation]], cam: CameraConfig, sampling: SamplingConfig) -> float:
    rules = RulesConfig.model_validate({"sizes": [{"name": "big", "measure": "area", "max": 1e9}],
                                        "counts": [{"name": "crowd", "zone": "z0", "above": 5}]})
    analyzer = Analyzer(cam, rules, sampling=sampling)
    started = time.perf_counter()
    for i, tracks in enumerate(frames):
        analyzer.update(i, i / RATE, 1e9 + i / RATE, None, FrameTracks(i, i / RATE, tracks))
    return (time.perf_counter() - started) / len(frames) * 1000


def time_naive_zones(frames: list[list[TrackObservation]], cam: CameraConfig) -> float:
    rasters = [z.raster(HEIGHT, WIDTH) for z in cam.zones]
    started = time.perf_counter()
    for tracks in frames:
        for t in tracks:
            full = t.mask.to_full(HEIGHT, WIDTH)
            for raster in rasters:
                np.count_nonzero(full & raster)
    return (time.perf_counter() - started) / len(frames) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--objects", type=int, default=50)
    parser.add_argument("--zones", type=int, default=10)
    args = parser.parse_args()
    frames, cam = scene(args.frames, args.objects), camera(args.zones)
    print(f"{args.objects} tracks x {args.zones} zones + 2 lines on {WIDTH}x{HEIGHT}, {args.frames} frames")
    every_frame = time_analyzer(frames, cam, SamplingConfig(measure_every=1, observe_every=5))
    every_5th = time_analyzer(frames, cam, SamplingConfig(measure_every=5, observe_every=5))
    no_sizes = time_analyzer(frames, cam, SamplingConfig(measure_every=10**9, observe_every=10**9))
    naive = time_naive_zones(frames[: max(args.frames // 10, 5)], cam)
    print(f"analytics, sizes every frame:     {every_frame:7.3f} ms/frame")
    print(f"analytics, sizes every 5th frame: {every_5th:7.3f} ms/frame")
    print(f"analytics, zones/lines/counts:    {no_sizes:7.3f} ms/frame")
    print(f"reference: full-frame mask x zone AND, zones only: {naive:7.2f} ms/frame ({naive / no_sizes:.0f}x the zone stage above)")


if __name__ == "__main__":
    main()
