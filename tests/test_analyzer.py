"""The analytics stage end to end on hand-made tracks: counts, sizes, rules, alarms, snapshots, sampling."""

import cv2
import numpy as np
import pytest

from analytics.analyzer import Analyzer
from analytics.config import AlarmRule, CameraConfig, CountRule, RulesConfig, SamplingConfig, SizeRule
from segmenter.detections import Detections
from segmenter.masks import CropMask
from tracker.config import TrackerConfig
from tracker.tracker import FrameTracks, MaskTracker, TrackObservation, TrackState

SIZE = (200, 300)
IMAGE = np.full((*SIZE, 3), 90, np.uint8)
EVERY_FRAME = SamplingConfig(measure_every=1)


def rect(x0, y0, w, h):
    return CropMask(np.ones((h, w), bool), x0, y0)


def obs(frame, mask, track_id, name="bottle"):
    return TrackObservation(frame, track_id, 0, name, mask, mask.box(), 0.9, 1, 1, TrackState.CONFIRMED)


def feed(analyzer, frames, removed=None):
    """``frames[i]``: list of (track_id, mask, class); returns every FrameAnalytics."""
    removed = removed or {}
    return [
        analyzer.update(i, i / analyzer.fps, 1000.0 + i / analyzer.fps, IMAGE,
                        FrameTracks(i, [obs(i, m, tid, name) for tid, m, name in items], [], removed.get(i, [])))
        for i, items in enumerate(frames)
    ]


def events(results, kind=None):
    return [e for r in results for e in r.events if kind is None or e.kind == kind]


def test_flickers_never_count_only_confirmed_tracks_do():
    tracker = MaskTracker(TrackerConfig(min_hits=3), fps=10)
    analyzer = Analyzer(CameraConfig(), fps=10)
    steady, flicker = rect(20, 20, 20, 20), rect(200, 100, 20, 20)
    for i in range(12):
        masks = [steady] + ([flicker] if i in (4, 5, 8) else [])  # never 3 frames in a row
        dets = Detections.from_masks(masks, [0] * len(masks), [0.9] * len(masks), ["bottle"] * len(masks), SIZE)
        out = analyzer.update(i, i / 10, 1000 + i / 10, IMAGE, tracker.update(dets))
    assert analyzer.unique == {"bottle": 1} and out.visible == {"bottle": 1}


def test_size_rule_uses_the_median_of_clean_measurements_once_per_track():
    rules = RulesConfig(sizes=[SizeRule(name="big", measure="area", max=500.0, min_samples=5)])
    analyzer = Analyzer(CameraConfig(calibration={"px_per_mm": 1.0}), rules, fps=10, sampling=EVERY_FRAME)
    small, big = rect(50, 50, 20, 20), rect(50, 50, 30, 30)  # 400 and 900 mm²
    # track 1: small, with two oversize frames (a merge with a neighbour): the median stays small
    # track 2: big all along, but touching track 3 for its first frames: those frames are not measured into the summary
    frames = []
    for i in range(10):
        items = [(1, big if i in (2, 3) else small, "bottle"), (2, rect(150, 50, 30, 30), "bottle")]
        if i < 4:
            items.append((3, rect(180, 50, 10, 10), "bottle"))  # flush against track 2's right edge
        frames.append(items)
    results = feed(analyzer, frames)
    sized = events(results, "size_rule")
    assert [(e.track_id, e.frame, e.value, e.unit, e.values["samples"]) for e in sized] == [(2, 8, 900.0, "mm²", 5)]
    record = analyzer.track_record(2)
    assert record.size_samples == 6 and record.sizes["area"] == (900.0, 0.0) and record.sizes["length"][0] == pytest.approx(30)
    assert analyzer.track_record(1).sizes["area"][0] == 400.0


def test_border_touching_frames_are_excluded_from_track_sizes():
    analyzer = Analyzer(CameraConfig(), fps=10, sampling=EVERY_FRAME)
    feed(analyzer, [[(1, rect(0, 50, 10, 20), "bottle")]] * 3 + [[(1, rect(5, 50, 20, 20), "bottle")]] * 3)
    record = analyzer.track_record(1)
    assert record.size_samples == 3 and record.sizes["area"] == (400.0, 0.0) and record.unit == "px"


def test_count_rule_fires_when_exceeded_and_rearms():
    camera = CameraConfig(zones=[{"name": "pit", "polygon": [(0, 0), (150, 0), (150, 199), (0, 199)], "enter_frames": 1,
                                  "exit_frames": 1}])
    rules = RulesConfig(counts=[CountRule(name="crowd", zone="pit", classes=["person"], above=1)])
    analyzer = Analyzer(camera, rules, fps=10)
    a, b, away = rect(10, 10, 20, 20), rect(60, 10, 20, 20), rect(250, 10, 20, 20)
    plan = [[a], [a, b], [a, b], [a, away], [a, b], [a, b]]
    frames = [[(i + 1, m, "person") for i, m in enumerate(step)] for step in plan]
    counted = events(feed(analyzer, frames), "count_threshold")
    assert [(e.frame, e.value, e.zone, e.rule) for e in counted] == [(1, 2.0, "pit", "crowd"), (4, 2.0, "pit", "crowd")]


def test_alarm_cooldown_is_per_rule_and_track():
    camera = CameraConfig(zones=[{"name": "pit", "polygon": [(0, 0), (150, 0), (150, 199), (0, 199)], "enter_frames": 1,
                                  "exit_frames": 1}])
    alarms = [AlarmRule(name="intrusion", kinds=["zone_enter"], zones=["pit"], severity="critical", cooldown_s=1.0)]
    analyzer = Analyzer(camera, alarms=alarms, fps=10)
    inside, outside = rect(10, 10, 20, 20), rect(250, 10, 20, 20)
    frames = []
    for i in range(30):  # two workers step in and out every 2 frames (0.2 s): each gets one alarm per second
        where = inside if (i // 2) % 2 == 0 else outside
        frames.append([(1, where, "person"), (2, where, "person")])
    results = feed(analyzer, frames)
    enters = events(results, "zone_enter")
    alarms_raised = [a for r in results for a in r.alarms]
    assert len(enters) == 2 * 8
    assert sorted((a.track_id, round(a.ts - 1000, 1)) for a in alarms_raised) == [
        (1, 0.0), (1, 1.2), (1, 2.4), (2, 0.0), (2, 1.2), (2, 2.4)]
    assert all(a.severity == "critical" and a.state == "open" and a.event_id in {e.id for e in enters} for a in alarms_raised)
    assert analyzer.alarm_total == 6


def test_snapshots_are_jpeg_crops_with_the_mask_outlined(tmp_path):
    camera = CameraConfig(name="cam/1", zones=[{"name": "pit", "circle": (100, 100, 50), "enter_frames": 1}])
    analyzer = Analyzer(camera, fps=10, snapshot_dir=tmp_path)
    results = feed(analyzer, [[(1, rect(90, 90, 20, 20), "person")]])
    (event,) = events(results)
    assert event.snapshot.startswith("cam_1/") and event.snapshot.endswith(f"{event.id}.jpg")
    image = cv2.imread(str(tmp_path / event.snapshot))
    assert image.shape == (84, 84, 3)  # the 20 px box grown by 32 px on each side
    assert (np.abs(image[32, 40:50].astype(int) - (0, 0, 255)).sum(axis=1) < 80).all()  # red outline on the mask's top edge
    assert analyzer.track_record(1).snapshot == event.snapshot


def test_sampling_of_observations_counts_and_measurements():
    camera = CameraConfig(calibration={"px_per_mm": 2.0}, zones=[{"name": "left", "polygon": [(0, 0), (150, 0), (150, 199), (0, 199)],
                                                                 "enter_frames": 1}])
    analyzer = Analyzer(camera, fps=10, sampling=SamplingConfig(observe_every=5, measure_every=5, count_every_s=0.5))
    frames = [[(1, rect(10 + 4 * i, 20, 20, 10), "bottle"), (2, rect(200, 100, 10, 10), "person")] for i in range(12)]
    results = feed(analyzer, frames)
    observed = [o for r in results for o in r.observations]
    assert [o.frame for o in observed] == [0, 0, 5, 5, 10, 10]
    first = observed[0]
    assert first.size.unit == "mm" and first.size.area == 50.0 and first.size.length == 10.0 and first.zones == ("left",)
    assert observed[2].speed == pytest.approx(20 / 2 / 0.5)  # 20 px in 0.5 s at 2 px/mm: 20 mm/s
    counts = [(c.frame, c.class_name, c.zone, c.visible) for r in results for c in r.counts]
    assert (0, "bottle", None, 1) in counts and (5, "bottle", "left", 1) in counts and (10, "person", "left", 0) in counts
    assert sorted({c[0] for c in counts}) == [0, 5, 10]
    records = [(r.frame, t.track_id, t.frames_seen) for r in results for t in r.tracks]  # summaries every 0.5 s
    assert records == [(0, 1, 1), (0, 2, 1), (5, 1, 6), (5, 2, 6), (10, 1, 11), (10, 2, 11)]
    final = analyzer.close(11, 1001.1, 1.1).tracks
    assert [(t.track_id, t.frames_seen, t.last_frame) for t in final] == [(1, 12, 11), (2, 12, 11)]


def test_quartiles_match_numpy_percentile():
    from analytics.analyzer import quartiles

    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 10, 101):
        values = rng.random((n, 5))
        assert np.allclose(quartiles(values), np.percentile(values, [25, 50, 75], axis=0))
        assert np.allclose(quartiles(values[:, 0]), np.percentile(values[:, 0], [25, 50, 75]))
