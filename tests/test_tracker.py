"""Tracker core: Kalman prediction, assignment, two-stage matching and the track lifecycle."""

import cv2
import numpy as np
import pytest

from segmenter import CropMask, Detections
from tracker import MaskTracker, TrackerConfig, TrackState
from tracker.association import assign
from tracker.kalman import KalmanBank
from tracker.mots_output import mots_lines, resolve_overlaps

H, W = 120, 240
FPS = 10.0


def disc(cx, cy, r=8):
    yy, xx = np.mgrid[:H, :W]
    return CropMask.from_full((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r)


def dets(masks, scores=None, classes=None):
    n = len(masks)
    classes = classes or [0] * n
    return Detections.from_masks(masks, classes, scores or [0.9] * n, [f"c{c}" for c in classes], (H, W))


class Feed:
    """A tracker fed one frame at a time at FPS, timestamps from the frame numbers."""

    def __init__(self, config, fps=FPS, **kwargs):
        self.tracker, self.fps, self.frame = MaskTracker(config, **kwargs), fps, 0

    def __call__(self, detections, skip=0):
        """The next frame's detections, after ``skip`` frames that never reach the tracker."""
        self.frame += skip
        result = self.tracker.update(detections, self.frame / self.fps, self.frame)
        self.frame += 1
        return result


def test_kalman_learns_constant_velocity_per_second():
    bank = KalmanBank()
    bank.add(np.array([[0, 0, 10, 20], [100, 50, 140, 130]], float))
    for step in range(1, 15):  # track 0: 30 px/s right, 20 px/s down; track 1 at rest; a step every 0.1 s
        bank.predict(0.1)
        bank.update(np.array([0, 1]), np.array([[3 * step, 2 * step, 3 * step + 10, 2 * step + 20], [100, 50, 140, 130]], float))
    np.testing.assert_allclose(bank.x[0, 4:], [30, 20], atol=0.5)
    np.testing.assert_allclose(bank.x[1, 4:], [0, 0], atol=0.5)
    bank.predict(0.5)  # a gap of five steps
    np.testing.assert_allclose(bank.boxes(), [[57, 38, 67, 58], [100, 50, 140, 130]], atol=0.5)


def test_kalman_rows_are_independent_and_match_one_filter_alone():
    """Batched updates give each track exactly what it would get alone, whatever subset is updated."""
    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, 200, (5, 2)).repeat(2, axis=1)[:, [0, 2, 1, 3]] + [0, 0, 30, 60]
    together, alone = KalmanBank(), [KalmanBank() for _ in boxes]
    together.add(boxes)
    for bank, box in zip(alone, boxes):
        bank.add(box[None])
    for _ in range(6):
        rows = np.flatnonzero(rng.random(5) < 0.6)
        measured = boxes[rows] + rng.normal(0, 2, (len(rows), 4))
        together.predict(0.1)
        together.update(rows, measured, noise_scale=np.where(rows % 2, 4.0, 1.0))
        for row, bank in enumerate(alone):
            bank.predict(0.1)
            if row in rows:
                bank.update(np.array([0]), measured[list(rows).index(row)][None], 4.0 if row % 2 else 1.0)
    np.testing.assert_allclose(together.x, np.concatenate([b.x for b in alone]), atol=1e-9)
    np.testing.assert_allclose(together.P, np.concatenate([b.P for b in alone]), atol=1e-9)
    together.keep(np.array([4, 1]))
    np.testing.assert_allclose(together.x, np.concatenate([alone[4].x, alone[1].x]))


def test_kalman_noise_scale_makes_a_measurement_count_less():
    """A partly seen object's box (larger measurement noise) moves the state less than a fully seen one's."""
    trusted, doubted = KalmanBank(), KalmanBank()
    for bank in (trusted, doubted):
        bank.add(np.array([[0, 0, 20, 40]], float))
        bank.predict(0.1)
    trusted.update(np.array([0]), np.array([[10, 0, 30, 40]], float), 1.0)
    doubted.update(np.array([0]), np.array([[10, 0, 30, 40]], float), 4.0)
    assert 0 < doubted.x[0, 0] - 10 < trusted.x[0, 0] - 10


def test_kalman_follows_the_camera_and_reupdates_along_a_gap():
    bank = KalmanBank()
    bank.add(np.array([[10, 10, 30, 50]], float))
    for step in range(1, 6):  # 10 px/s right
        bank.predict(0.1)
        bank.update(np.array([0]), np.array([[10 + step, 10, 30 + step, 50]], float))
    shift = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, -3.0]])  # the camera panned: everything moved by (5, -3)
    before = bank.boxes().copy()
    bank.warp(shift)
    np.testing.assert_allclose(bank.boxes(), before + [5, -3, 5, -3])
    np.testing.assert_allclose(bank.saved_boxes(), before + [5, -3, 5, -3])
    zoom = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    velocity = bank.x[0, 4:].copy()
    bank.warp(zoom)
    np.testing.assert_allclose(bank.x[0, 4:], 2 * velocity)
    np.testing.assert_allclose(bank.boxes(), 2 * (before + [5, -3, 5, -3]))
    # a gap of 10 frames (1 s) in which the object sped up to 40 px/s: the re-update learns it
    saved = bank.saved_boxes()[0]
    end = saved + [40, 0, 40, 0]
    virtual = saved + np.linspace(0, 1, 11)[1:, None] * (end - saved)
    bank.reupdate(0, virtual, np.full(10, 0.1))
    assert bank.x[0, 4] > 30
    np.testing.assert_allclose(bank.boxes()[0], end, atol=2)


def test_assign_maximises_similarity_and_respects_threshold():
    sim = np.array([[0.9, 0.8, 0.0], [0.85, 0.1, 0.0], [0.0, 0.0, 0.05]])
    matches, rows, cols = assign(sim, 0.2)
    # greedy would take (0,0); the optimum is (0,1) + (1,0)
    assert sorted(map(tuple, matches)) == [(0, 1), (1, 0)]
    assert rows.tolist() == [2] and cols.tolist() == [2]
    empty, r, c = assign(np.zeros((0, 3)), 0.2)
    assert len(empty) == 0 and c.tolist() == [0, 1, 2]


def test_ids_persist_and_confirm_after_min_hits_with_backfill():
    feed = Feed(TrackerConfig(min_hits=3))
    results = [feed(dets([disc(20 + 6 * f, 40), disc(200 - 6 * f, 80)])) for f in range(12)]
    assert results[0].tracks == [] and results[1].tracks == []
    assert {o.track_id for o in results[2].tracks} == {1, 2}
    assert sorted((o.frame, o.track_id) for o in results[2].backfill) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    for r in results[2:]:
        by_id = {o.track_id: o for o in r.tracks}
        assert by_id[1].mask.centroid()[0] < by_id[2].mask.centroid()[0] or r.frame > 14  # never swapped
        assert all(o.state is TrackState.CONFIRMED for o in r.tracks)
    last = {o.track_id: o for o in results[-1].tracks}
    assert last[1].hits == 12 and last[1].age == 12


def test_crossing_objects_keep_ids():
    """Two discs pass each other on the same line; Kalman motion carries each through."""
    feed = Feed(TrackerConfig(min_hits=1))
    first = None
    for f in range(30):
        r = feed(dets([disc(30 + 6 * f, 60, 7), disc(210 - 6 * f, 64, 7)]))
        ids = {round(o.mask.centroid()[0] - (30 + 6 * f)) == 0: o.track_id for o in r.tracks}
        first = first or ids
        if len(ids) == 2:
            assert ids == first


def test_flicker_never_confirms_and_consumes_no_id():
    feed = Feed(TrackerConfig(min_hits=3))
    for f in range(10):
        masks = [disc(50, 50)] + ([disc(150, 60)] if f % 2 == 0 else [])
        r = feed(dets(masks))
    assert {o.track_id for o in r.tracks} == {1}


def test_lost_then_removed_after_lost_seconds():
    feed = Feed(TrackerConfig(min_hits=1, lost_seconds=0.45))
    feed(dets([disc(50, 50)]))
    removed_at = []
    for _ in range(7):
        r = feed(dets([]))
        if r.removed_ids:
            removed_at.append((r.pts, r.removed_ids))
        assert all(t.state is TrackState.LOST for t in feed.tracker.active)
    assert removed_at == [(0.5, [1])] and feed.tracker.active == []


def test_zero_lost_seconds_removes_at_the_first_unmatched_frame():
    feed = Feed(TrackerConfig(min_hits=1, lost_seconds=0))
    feed(dets([disc(50, 50)]))
    assert feed(dets([])).removed_ids == [1] and feed.tracker.active == []


def make_removal_time(keep):
    """When a track lost at 1 s is removed, feeding the 30 fps frames ``keep`` selects."""
    fps, tracker = 30.0, MaskTracker(TrackerConfig(min_hits=3, lost_seconds=0.55))
    for f in filter(keep, range(90)):
        r = tracker.update(dets([disc(40 + f, 60)] if f < 30 else []), f / fps, f)
        if r.removed_ids:
            return r.pts
    raise AssertionError("the lost track was never removed")


def test_removal_time_does_not_depend_on_dropped_frames():
    full = make_removal_time(lambda f: True)
    one_in_three = make_removal_time(lambda f: f % 3 == 0)
    assert 1.5 < full < 1.6  # seen last at 29/30 s, removed at the first frame more than 0.55 s later
    assert abs(one_in_three - full) <= 3 / 30  # one frame interval of the sparser stream


def test_fast_object_keeps_its_id_across_dropped_frames():
    """The prediction covers the time that passed, not one frame: 6 px per 1/30 s, then 10 frames never arrive."""
    feed = Feed(TrackerConfig(min_hits=1), fps=30)
    for f in range(8):
        feed(dets([disc(20 + 6 * f, 60)]))
    r = feed(dets([disc(20 + 6 * 18, 60)]), skip=10)
    assert [o.track_id for o in r.tracks] == [1] and r.frame == 18


def test_lost_track_recovers_same_id_after_gap():
    feed = Feed(TrackerConfig(min_hits=1, lost_seconds=1.0))
    for f in range(5):
        feed(dets([disc(40 + 4 * f, 50)]))
    for _ in range(5, 8):
        feed(dets([]))
    r = feed(dets([disc(40 + 4 * 8, 50)]))
    assert [o.track_id for o in r.tracks] == [1]


def test_backfill_names_the_callers_frames_and_timestamps_and_shares_the_uid():
    tracker = MaskTracker(TrackerConfig(min_hits=3))
    results = [tracker.update(dets([disc(30 + frame, 50)]), pts, frame) for frame, pts in ((4, 10.0), (7, 10.3), (9, 10.5))]
    (live,) = results[-1].tracks
    assert [(o.frame, o.pts) for o in results[-1].backfill] == [(4, 10.0), (7, 10.3)]
    assert (live.frame, live.pts, results[-1].frame, results[-1].pts) == (9, 10.5, 9, 10.5)
    assert {o.track_uid for o in results[-1].backfill} == {live.track_uid}
    assert tracker.update(dets([disc(40, 50)]), 10.6).tracks[0].frame == 10  # default: the previous frame + 1


def test_track_uids_never_repeat_across_trackers():
    uids = []
    for _ in range(2):  # two cameras, or one camera restarted: both number their ids from 1
        feed = Feed(TrackerConfig(min_hits=1))
        r = feed(dets([disc(40, 50), disc(150, 60)]))
        assert sorted(o.track_id for o in r.tracks) == [1, 2]
        uids += [o.track_uid for o in r.tracks]
        assert all(o.track_uid == u for o, u in zip(feed(dets([disc(41, 50), disc(151, 60)])).tracks, uids[-2:]))
    assert len(set(uids)) == 4 and all(len(u) == 32 for u in uids)


def test_first_id_continues_numbering_after_a_restart():
    before = Feed(TrackerConfig(min_hits=1))
    before(dets([disc(40, 50), disc(150, 60)]))
    assert before.tracker.next_id == 3
    after = Feed(TrackerConfig(min_hits=1), first_id=before.tracker.next_id)
    assert sorted(o.track_id for o in after(dets([disc(40, 50), disc(150, 60)])).tracks) == [3, 4]
    assert after.tracker.next_id == 5


def test_timestamps_must_increase():
    tracker = MaskTracker(TrackerConfig(min_hits=1))
    tracker.update(dets([]), 2.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        tracker.update(dets([]), 2.0)


def test_low_score_detection_keeps_track_alive_but_never_starts_one():
    cfg = TrackerConfig(min_hits=1, high_score=0.5, low_score=0.1, lost_seconds=0.15)  # 1 frame of grace
    feed = Feed(cfg)
    feed(dets([disc(50, 50)], scores=[0.9]))
    for f in range(1, 6):  # occluded: low scores only, plus a low-score clutter blob
        r = feed(dets([disc(50 + f, 50), disc(180, 90)], scores=[0.3, 0.3]))
        assert [o.track_id for o in r.tracks] == [1]


def test_matching_is_class_consistent():
    feed = Feed(TrackerConfig(min_hits=1))
    feed(dets([disc(50, 50)], classes=[0]))
    r = feed(dets([disc(51, 50)], classes=[1]))
    assert [o.track_id for o in r.tracks] == [2]


def test_resolve_overlaps_gives_each_pixel_to_one_mask():
    a, b = disc(50, 50, 10), disc(58, 50, 10)
    first, second = resolve_overlaps([a, b], [0.5, 0.9])
    assert not np.logical_and(first.to_full(H, W), second.to_full(H, W)).any()
    assert second.area == b.area  # the higher score keeps all its pixels
    assert first.area + second.area == np.logical_or(a.to_full(H, W), b.to_full(H, W)).sum()


def test_mots_lines_are_disjoint_and_decodable():
    from pycocotools import mask as mask_utils

    r = Feed(TrackerConfig(min_hits=1))(dets([disc(50, 50, 10), disc(58, 50, 10)], scores=[0.75, 0.9]))
    lines = mots_lines(7, r.tracks, (H, W))
    decoded = []
    for line in lines:
        frame, tid, cls, h, w, rle = line.split(" ")
        assert (int(frame), int(h), int(w)) == (7, H, W)
        decoded.append(mask_utils.decode({"size": [H, W], "counts": rle.encode()}))
    assert len(decoded) == 2 and not np.logical_and(*decoded).any()


def test_config_rejects_inverted_scores():
    with pytest.raises(ValueError, match="low_score"):
        TrackerConfig(low_score=0.8, high_score=0.5)


def test_lost_track_cannot_take_a_detection_from_a_track_seen_last_frame():
    feed = Feed(TrackerConfig(min_hits=1, lost_seconds=2.0))
    feed(dets([disc(60, 50, 20), disc(100, 50, 20)]))  # ids 1 and 2, touching
    feed(dets([disc(62, 50, 20)]))  # 2 goes lost, predicted where it was, x=100
    # one detection between them: IoU ~0.25 with track 1's prediction, ~0.35 with lost track 2's;
    # a joint assignment would give it to 2, the track seen last frame chooses first
    r = feed(dets([disc(83, 50, 20)]))
    assert [o.track_id for o in r.tracks] == [1]


def test_track_predicted_out_of_the_image_is_removed_at_once():
    feed = Feed(TrackerConfig(min_hits=1, lost_seconds=5.0))
    for f in range(6):
        feed(dets([disc(W - 40 + 8 * f, 60, 8)] if W - 40 + 8 * f < W - 8 else []))
    for _ in range(3):
        feed(dets([]))
    assert feed.tracker.active == []


def painted(objects, background):
    """A BGR frame: ``background`` with each ``(mask, colour)`` painted on it."""
    image = background.copy()
    for mask, colour in objects:
        image[mask.to_full(*image.shape[:2])] = colour
    return image


def test_appearance_keeps_two_overlapping_objects_apart_where_mask_iou_alone_swaps_them():
    """Red and blue discs side by side; next frame each moved past the other's place: IoU says swap, colours do not."""
    background = np.full((H, W, 3), 128, np.uint8)
    red, blue = (0, 0, 255), (255, 0, 0)
    frames = [[(disc(50, 60), red), (disc(60, 60), blue)], [(disc(58, 54), red), (disc(52, 66), blue)]]

    def red_id_per_frame(with_images):
        tracker = MaskTracker(TrackerConfig(min_hits=1, camera_motion="off", match_iou=0.1))
        ids = []
        for index, objects in enumerate(frames):
            image = painted(objects, background) if with_images else None
            result = tracker.update(dets([m for m, _ in objects]), index / FPS, index, image=image)
            ids.append({o.mask.centroid()[0]: o.track_id for o in result.tracks}[objects[0][0].centroid()[0]])
        return ids

    assert red_id_per_frame(with_images=True) == [1, 1]
    assert red_id_per_frame(with_images=False) == [1, 2]  # the swap appearance prevents


def test_camera_motion_keeps_ids_when_the_camera_shakes_further_than_objects_are_wide():
    """Still objects on a textured scene filmed by a shaking camera: only compensating the shake keeps their ids."""
    rng = np.random.default_rng(1)
    world = cv2.GaussianBlur(rng.integers(0, 255, (H + 80, W + 80, 3), dtype=np.uint8), (9, 9), 0)
    spots = [(80, 40), (160, 40), (120, 80)]
    shakes = [(0, 0), (11, -5), (0, 6), (12, 2), (1, -8), (12, 4), (-1, 0), (10, -6)]  # jumps of 10-12 px

    def ids(camera_motion):
        tracker = MaskTracker(TrackerConfig(min_hits=1, camera_motion=camera_motion, rescue_iou=0.9))
        seen = set()
        for index, (dx, dy) in enumerate(shakes):
            view = world[40 + dy : 40 + dy + H, 40 + dx : 40 + dx + W]
            masks = [disc(x - dx, y - dy, 5) for x, y in spots]
            image = painted([(m, (0, 255, 0)) for m in masks], view)
            seen |= {o.track_id for o in tracker.update(dets(masks), index / FPS, index, image=image).tracks}
        return seen

    assert len(ids("on")) == len(spots)
    assert len(ids("off")) > len(spots)
    assert len(ids("auto")) == len(spots)  # it probes first, sees the camera move and follows it


def test_camera_motion_auto_stops_estimating_on_a_still_camera():
    rng = np.random.default_rng(2)
    image = cv2.GaussianBlur(rng.integers(0, 255, (H, W, 3), dtype=np.uint8), (5, 5), 0)
    tracker = MaskTracker(TrackerConfig(min_hits=1, camera_motion="auto"))
    calls = []
    estimate = tracker._camera.update
    tracker._camera.update = lambda *a: calls.append(1) or estimate(*a)
    for index in range(95):  # 9.5 seconds at 10 fps: one probe of a second
        tracker.update(dets([disc(100, 60)]), index / FPS, index, image=image)
    assert len(calls) == 10


def test_lost_object_reappearing_out_of_prediction_takes_its_identity_back():
    """An object hides for 0.6 s and comes back walking the other way: a new track, re-linked to the lost one."""
    def run(relink_speed, colour_after):
        tracker = MaskTracker(TrackerConfig(min_hits=3, lost_seconds=2.0, relink_speed=relink_speed, camera_motion="off"))
        background = np.full((H, W, 3), 128, np.uint8)
        ids = set()
        path = [(40 + 6 * f, (0, 0, 255)) for f in range(11)] + [None] * 6 + [(85 - 3 * f, colour_after) for f in range(6)]
        for index, step in enumerate(path):
            objects = [] if step is None else [(disc(step[0], 60), step[1])]
            result = tracker.update(dets([m for m, _ in objects]), index / FPS, index, image=painted(objects, background))
            ids |= {o.track_id for o in result.tracks + result.backfill}
        return ids

    assert run(relink_speed=1.5, colour_after=(0, 0, 255)) == {1}
    assert run(relink_speed=0.0, colour_after=(0, 0, 255)) == {1, 2}
    assert run(relink_speed=1.5, colour_after=(255, 0, 0)) == {1, 2}  # within reach, but it does not look the same


def test_masks_touching_another_or_the_border_are_measured_with_more_noise():
    tracker = MaskTracker(TrackerConfig(partial_noise=3.0))
    square = np.ones((10, 10), bool)
    masks = [
        CropMask(square, 20, 20), CropMask(square, 30, 30),  # diagonal neighbours: touching
        CropMask(square, 60, 20), CropMask(square, 71, 20),  # one empty column between them: apart
        CropMask(square, 0, 80),  # on the border
        CropMask(np.eye(10, dtype=bool), 100, 20), CropMask(np.eye(10, dtype=bool)[::-1], 110, 20),  # boxes adjacent, pixels meet
        CropMask(np.eye(10, dtype=bool), 150, 20), CropMask(np.eye(10, dtype=bool), 160, 20),  # boxes adjacent, pixels apart
    ]
    noise = tracker._partial_noise(dets(masks))
    assert noise.tolist() == [3.0, 3.0, 1.0, 1.0, 3.0, 3.0, 3.0, 1.0, 1.0]


def test_kalman_bank_equals_filterpy_one_filter_per_track():
    """The batched filter is the textbook one: the same states as filterpy's KalmanFilter run per track."""
    from filterpy.kalman import KalmanFilter

    from tracker import kalman

    rng = np.random.default_rng(3)
    boxes = np.array([[10, 20, 40, 80], [200, 50, 260, 170]], float)
    bank = KalmanBank()
    bank.add(boxes)
    filters = []
    for row in range(len(boxes)):
        kf = KalmanFilter(dim_x=6, dim_z=4)
        kf.x, kf.P, kf.H = bank.x[row].copy(), bank.P[row].copy(), np.eye(4, 6)
        filters.append(kf)
    for step in range(8):
        dt = 0.1 if step % 3 else 0.25
        bank.predict(dt)
        measured = boxes + step * np.array([3, 1, 3, 1]) + rng.normal(0, 1, boxes.shape)
        bank.update(np.arange(len(boxes)), measured, noise_scale=np.array([1.0, 2.0]))
        for row, kf in enumerate(filters):
            h = max(kf.x[3], 1.0)
            kf.F = np.eye(6)
            kf.F[0, 4] = kf.F[1, 5] = dt
            kf.Q = np.diag(kalman._Q_RATE * h * h * dt)
            kf.predict()
            kf.R = np.diag(kalman._R_UNIT * max(kf.x[3], 1.0) ** 2 * (1.0, 2.0)[row])
            kf.update(kalman.xyxy_to_cxcywh(measured[row])[0])
    np.testing.assert_allclose(bank.x, np.stack([kf.x for kf in filters]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(bank.P, np.stack([kf.P for kf in filters]), rtol=1e-6, atol=1e-6)


def test_box_iou_blend_keeps_a_thin_object_whose_mask_slid_off_its_prediction():
    """Thin legs shifted by their own width: no mask overlap left, yet the boxes overlap; blended, the pair matches."""
    from tracker.tracker import mask_box_iou

    def legs(x):
        full = np.zeros((H, W), bool)
        full[20:80, x : x + 3] = full[20:80, x + 9 : x + 12] = True
        return CropMask.from_full(full)

    predicted, measured = [legs(50)], [legs(53)]
    assert mask_box_iou(0.0)(predicted, measured, 0.15)[0, 0] < 0.15
    blended = mask_box_iou(0.25)(predicted, measured, 0.15)[0, 0]
    assert blended >= 0.15 and blended == pytest.approx(0.25 * 9 / 15)
