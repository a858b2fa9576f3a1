"""The analytics stage end to end on hand-made tracks: counts, sizes, rules, alarms, snapshots, sampling, time, ids."""

import uuid

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
RATE = 10.0  # frames/s of the hand-made clips: frame i is at pts i / RATE
EPOCH = 1000.0  # wall clock at pts 0


def rect(x0, y0, w, h):
    return CropMask(np.ones((h, w), bool), x0, y0)


def uid(track_id):
    return f"uid-{track_id}"


def obs(frame, mask, track_id, name="bottle", pts=None, track_uid=None):
    return TrackObservation(frame=frame, pts=frame / RATE if pts is None else pts, track_id=track_id,
                            track_uid=track_uid or uid(track_id), class_id=0, class_name=name, mask=mask,
                            box=mask.box(), score=0.9, age=1, hits=1, state=TrackState.CONFIRMED)


def feed(analyzer, frames, removed=None):
    """``frames[i]``: list of (track_id, mask, class); returns every FrameAnalytics."""
    removed = removed or {}
    return [
        analyzer.update(i, i / RATE, EPOCH + i / RATE, IMAGE,
                        FrameTracks(frame=i, pts=i / RATE, tracks=[obs(i, m, tid, name) for tid, m, name in items],
                                    removed_ids=removed.get(i, [])))
        for i, items in enumerate(frames)
    ]


def events(results, kind=None):
    return [e for r in results for e in r.events if kind is None or e.kind == kind]


def test_flickers_never_count_only_confirmed_tracks_do():
    tracker = MaskTracker(TrackerConfig(min_hits=3))
    analyzer = Analyzer(CameraConfig())
    steady, flicker = rect(20, 20, 20, 20), rect(200, 100, 20, 20)
    for i in range(12):
        masks = [steady] + ([flicker] if i in (4, 5, 8) else [])  # never 3 frames in a row
        dets = Detections.from_masks(masks, [0] * len(masks), [0.9] * len(masks), ["bottle"] * len(masks), SIZE)
        out = analyzer.update(i, i / RATE, EPOCH + i / RATE, IMAGE, tracker.update(dets, i / RATE))
    assert analyzer.unique == {"bottle": 1} and out.visible == {"bottle": 1}


def test_size_rule_uses_the_median_of_clean_measurements_once_per_track():
    rules = RulesConfig(sizes=[SizeRule(name="big", measure="area", max=500.0, min_samples=5)])
    analyzer = Analyzer(CameraConfig(calibration={"px_per_mm": 1.0}), rules, sampling=EVERY_FRAME)
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
    analyzer = Analyzer(CameraConfig(), sampling=EVERY_FRAME)
    feed(analyzer, [[(1, rect(0, 50, 10, 20), "bottle")]] * 3 + [[(1, rect(5, 50, 20, 20), "bottle")]] * 3)
    record = analyzer.track_record(1)
    assert record.size_samples == 3 and record.sizes["area"] == (400.0, 0.0) and record.unit == "px"


def test_count_rule_fires_when_exceeded_and_rearms():
    camera = CameraConfig(zones=[{"name": "pit", "polygon": [(0, 0), (150, 0), (150, 199), (0, 199)], "enter_frames": 1,
                                  "exit_frames": 1}])
    rules = RulesConfig(counts=[CountRule(name="crowd", zone="pit", classes=["person"], above=1)])
    analyzer = Analyzer(camera, rules)
    a, b, away = rect(10, 10, 20, 20), rect(60, 10, 20, 20), rect(250, 10, 20, 20)
    plan = [[a], [a, b], [a, b], [a, away], [a, b], [a, b]]
    frames = [[(i + 1, m, "person") for i, m in enumerate(step)] for step in plan]
    counted = events(feed(analyzer, frames), "count_threshold")
    assert [(e.frame, e.value, e.zone, e.rule) for e in counted] == [(1, 2.0, "pit", "crowd"), (4, 2.0, "pit", "crowd")]


def test_alarm_cooldown_is_per_rule_and_track():
    camera = CameraConfig(zones=[{"name": "pit", "polygon": [(0, 0), (150, 0), (150, 199), (0, 199)], "enter_frames": 1,
                                  "exit_frames": 1}])
    alarms = [AlarmRule(name="intrusion", kinds=["zone_enter"], zones=["pit"], severity="critical", cooldown_s=1.0)]
    analyzer = Analyzer(camera, alarms=alarms)
    inside, outside = rect(10, 10, 20, 20), rect(250, 10, 20, 20)
    frames = []
    for i in range(30):  # two workers step in and out every 2 frames (0.2 s): each gets one alarm per second
        where = inside if (i // 2) % 2 == 0 else outside
        frames.append([(1, where, "person"), (2, where, "person")])
    results = feed(analyzer, frames)
    enters = events(results, "zone_enter")
    alarms_raised = [a for r in results for a in r.alarms]
    assert len(enters) == 2 * 8
    assert sorted((a.track_id, round(a.ts - EPOCH, 1)) for a in alarms_raised) == [
        (1, 0.0), (1, 1.2), (1, 2.4), (2, 0.0), (2, 1.2), (2, 2.4)]
    assert all(a.severity == "critical" and a.state == "open" and a.event_id in {e.id for e in enters} for a in alarms_raised)
    assert analyzer.alarm_total == 6


def test_snapshots_are_jpeg_crops_with_the_mask_outlined(tmp_path):
    camera = CameraConfig(name="cam/1", zones=[{"name": "pit", "circle": (100, 100, 50), "enter_frames": 1}])
    analyzer = Analyzer(camera, snapshot_dir=tmp_path)
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
    analyzer = Analyzer(camera, sampling=SamplingConfig(observe_every=5, measure_every=5, count_every_s=0.5))
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
    final = analyzer.close(11, EPOCH + 1.1, 1.1).tracks
    assert [(t.track_id, t.frames_seen, t.last_frame) for t in final] == [(1, 12, 11), (2, 12, 11)]


def clip(kind: str) -> list[tuple[int, float]]:
    """(frame, pts) pairs of 10 s of a 30 frames/s clip as handed to analytics.

    ``full``: every frame; ``dropped``: two of every three dropped, the rest keep their timestamps, and
    frames are numbered as handed over (0, 1, 2...), so only the timestamps say time passed; ``irregular``:
    intervals from 5 ms to 250 ms.
    """
    if kind == "full":
        return [(i, i / 30) for i in range(300)]
    if kind == "dropped":
        return [(n, i / 30) for n, i in enumerate(range(0, 300, 3))]
    steps = np.random.default_rng(3).uniform(0.005, 0.25, 200)
    return [(n, float(t)) for n, t in enumerate(np.cumsum(steps)) if t < 10]


@pytest.mark.parametrize("kind", ["full", "dropped", "irregular"])
def test_dwell_exceeded_comes_max_dwell_s_after_enter_at_any_frame_rate(kind):
    pit = {"name": "pit", "polygon": [(0, 0), (150, 0), (150, 199), (0, 199)], "max_dwell_s": 2.0}
    analyzer = Analyzer(CameraConfig(zones=[pit]))
    frames = clip(kind)
    worker = rect(10, 10, 20, 20)
    results = [analyzer.update(f, pts, EPOCH + pts, IMAGE, FrameTracks(f, pts, [obs(f, worker, 1, "person", pts)]))
               for f, pts in frames]
    (enter,), (dwell,) = events(results, "zone_enter"), events(results, "dwell_exceeded")
    interval = max(b - a for (_, a), (_, b) in zip(frames, frames[1:]))
    assert 2.0 - 1e-9 <= dwell.pts - enter.pts < 2.0 + interval  # within one frame interval of max_dwell_s
    assert dwell.frame == next(f for f, pts in frames if pts - enter.pts >= 2.0 - 1e-9)  # the first frame past it
    assert dwell.value == dwell.values["dwell_s"] == round(dwell.pts - enter.pts, 3) and dwell.unit == "s"
    assert dwell.ts - EPOCH == pytest.approx(dwell.pts)
    (exit_,) = analyzer.close(frames[-1][0], EPOCH + frames[-1][1], frames[-1][1]).events
    assert exit_.kind == "zone_exit" and exit_.values["dwell_s"] == round(frames[-1][1] - enter.pts, 3)


def test_backfilled_frames_take_their_time_from_their_own_timestamps():
    """A track confirmed at frame 5 brings frames 2-4, seen at irregular times: its first_ts and the line
    crossing between frames 3 and 4 are at those frames' times, not at frame counts over a rate."""
    camera = CameraConfig(lines=[{"name": "gate", "points": [(100, 0), (100, 199)]}])
    analyzer = Analyzer(camera, sampling=SamplingConfig(count_every_s=100))
    seen = {2: (0.31, 60), 3: (0.52, 90), 4: (0.97, 110)}  # frame → (pts, x)
    backfill = [obs(f, rect(x, 50, 10, 10), 1, pts=pts) for f, (pts, x) in seen.items()]
    now = obs(5, rect(130, 50, 10, 10), 1, pts=1.12)
    out = analyzer.update(5, 1.12, EPOCH + 1.12, IMAGE, FrameTracks(frame=5, pts=1.12, tracks=[now], backfill=backfill))
    record = analyzer.track_record(1)
    assert (record.first_frame, record.frames_seen, record.last_frame) == (2, 4, 5)
    assert record.first_ts == pytest.approx(EPOCH + 0.31) and record.last_ts == pytest.approx(EPOCH + 1.12)
    (crossing,) = out.events
    assert (crossing.kind, crossing.frame, crossing.pts, crossing.track_uid) == ("line_cross", 4, 0.97, uid(1))
    assert crossing.ts == pytest.approx(EPOCH + 0.97)


def test_every_record_carries_the_track_uid():
    camera = CameraConfig(
        zones=[{"name": "pit", "polygon": [(0, 0), (150, 0), (150, 199), (0, 199)], "enter_frames": 1}],
        dynamic_zones=[{"name": "swing", "anchor_classes": ["excavator"], "classes": ["person"], "radius": 60,
                        "unit": "px", "enter_frames": 1}],
        lines=[{"name": "gate", "points": [(100, 0), (100, 199)]}],
    )
    rules = RulesConfig(sizes=[SizeRule(name="big", measure="area", max=100.0, min_samples=1)])
    alarms = [AlarmRule(name="any", kinds=["zone_enter", "line_cross", "size_rule"], cooldown_s=0)]
    analyzer = Analyzer(camera, rules, alarms, sampling=SamplingConfig(measure_every=1, observe_every=1))
    uids = {1: uuid.uuid4().hex, 2: uuid.uuid4().hex}  # a worker and an excavator
    results = []
    for i in range(4):
        worker = obs(i, rect(80 + 10 * i, 50, 20, 20), 1, "person", track_uid=uids[1])  # crosses x=100 at frame 1
        excavator = obs(i, rect(160, 40, 30, 30), 2, "excavator", track_uid=uids[2])  # swing reaches x=114
        results.append(analyzer.update(i, i / RATE, EPOCH + i / RATE, IMAGE, FrameTracks(frame=i, pts=i / RATE,
                                                                                         tracks=[worker, excavator])))
    results.append(analyzer.close(3, EPOCH + 0.3, 0.3))
    found = events(results)
    assert {(e.kind, e.zone) for e in found} >= {("zone_enter", "pit"), ("zone_enter", "swing"), ("zone_exit", "pit"),
                                                  ("zone_exit", "swing"), ("line_cross", None), ("size_rule", None)}
    assert all(e.track_uid == uids[e.track_id] for e in found)
    swing = [e for e in found if e.zone == "swing"]
    assert swing and all(e.values["anchor_track_id"] == 2 and e.values["anchor_track_uid"] == uids[2] for e in swing)
    raised = [a for r in results for a in r.alarms]
    by_id = {e.id: e for e in found}
    assert len(raised) == len([e for e in found if e.kind != "zone_exit"])
    assert all(a.track_uid == by_id[a.event_id].track_uid == uids[a.track_id] for a in raised)
    observations = [o for r in results for o in r.observations]
    assert len(observations) == 8 and all(o.track_uid == uids[o.track_id] for o in observations)
    summaries = [t for r in results for t in r.tracks]
    assert {t.track_id for t in summaries} == {1, 2} and all(t.track_uid == uids[t.track_id] for t in summaries)


def test_quartiles_match_numpy_percentile():
    from analytics.analyzer import quartiles

    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 10, 101):
        values = rng.random((n, 5))
        assert np.allclose(quartiles(values), np.percentile(values, [25, 50, 75], axis=0))
        assert np.allclose(quartiles(values[:, 0]), np.percentile(values[:, 0], [25, 50, 75]))
