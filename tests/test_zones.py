"""Mask-based zone membership, hysteresis, dwell (in seconds between timestamps) and dynamic zones."""

import math

import numpy as np
import pytest

from analytics.calibration import Calibration, CalibrationConfig
from analytics.zones import DynamicZoneConfig, ZoneConfig, ZoneMonitor, is_inside, pixels_inside, static_region
from segmenter import CropMask
from tracker.tracker import TrackObservation, TrackState

SIZE = (100, 200)
RATE = 10.0  # frames/s of the hand-made clips: frame i is at pts i / RATE


def rect_mask(x0, y0, x1, y1):
    return CropMask(np.ones((y1 - y0, x1 - x0), bool), x0, y0)


def obs(frame, mask, track_id=1, name="person"):
    return TrackObservation(frame=frame, pts=frame / RATE, track_id=track_id, track_uid=f"uid-{track_id}", class_id=0,
                            class_name=name, mask=mask, box=mask.box(), score=0.9, age=1, hits=1,
                            state=TrackState.CONFIRMED)


ZONE = ZoneConfig(name="z", polygon=[(50, 0), (99, 0), (99, 99), (50, 99)], enter_frames=2, exit_frames=2)


def test_pixels_inside_polygon_and_circle_are_exact():
    region = static_region(ZONE, SIZE)  # the polygon covers columns 50..99, rows 0..99
    assert region.pixels_inside(rect_mask(40, 10, 60, 20)) == 10 * 10
    assert region.pixels_inside(rect_mask(60, 10, 80, 30)) == 400  # wholly inside: the summed-area shortcut
    assert region.pixels_inside(rect_mask(150, 10, 170, 30)) == 0
    circle = ZoneConfig(name="c", circle=(100, 50, 10))
    disc = circle.raster(*SIZE)
    expected = sum((x - 100) ** 2 + (y - 50) ** 2 <= 100 for x in range(200) for y in range(100))
    assert disc.sum() == expected  # the raster is the disc of radius 10, pixel centres
    assert static_region(circle, SIZE).pixels_inside(rect_mask(0, 0, 100, 100)) == sum(
        (x - 100) ** 2 + (y - 50) ** 2 <= 100 for x in range(100) for y in range(100)
    )
    assert pixels_inside(rect_mask(0, 0, 200, 100), disc) == expected


def test_mask_decides_not_the_box():
    region = static_region(ZONE, SIZE)
    crop = np.zeros((40, 70), bool)
    crop[:, :10] = True
    crop[-5:, :] = True  # an L: its bottom bar reaches x=69, 5 rows x 20 px inside the zone
    assert region.pixels_inside(CropMask(crop, 0, 0)) == 100
    thin = CropMask(crop[:, :45], 10, 0)  # box x 10..55 overlaps the zone, pixels only 5x5 = 25 of 575
    zone = ZONE.model_copy(update={"min_fraction": 0.05, "min_pixels": 200})
    assert region.pixels_inside(thin) == 25 and not is_inside(25, thin.area, zone)


def test_threshold_is_fraction_or_pixels_whichever_smaller():
    assert not is_inside(100, 5100, ZONE)  # 2% of 5100 = 102 > 100, and fewer than 200 px
    assert is_inside(102, 5100, ZONE)
    assert is_inside(200, 20000, ZONE)  # 2% would be 400: 200 px is enough
    assert not is_inside(0, 10, ZONE)


def run(monitor, masks, track_id=1, removed_at=None):
    events = []
    for frame, mask in enumerate(masks):
        tracks = [] if mask is None else [obs(frame, mask, track_id)]
        events += monitor.update(frame, frame / RATE, SIZE, tracks, [track_id] if frame == removed_at else [])
    return events


def test_hysteresis_enter_and_exit_after_consecutive_frames():
    inside, outside = rect_mask(60, 10, 80, 30), rect_mask(150, 10, 170, 30)
    sequence = [outside, inside, outside, inside, inside, inside, outside, inside, outside, outside, outside]
    events = run(ZoneMonitor([ZONE]), sequence)
    assert [(e.kind, e.frame) for e in events] == [("enter", 4), ("exit", 9)]
    assert events[0].inside_pixels == 400 and events[0].inside_fraction == 1.0
    assert events[1].dwell_s == pytest.approx(0.5) and {e.track_uid for e in events} == {"uid-1"}


def test_lost_track_keeps_its_state_until_seen_outside_or_removed():
    zone = ZONE.model_copy(update={"enter_frames": 1, "exit_frames": 2})
    inside = rect_mask(60, 10, 80, 30)
    assert [e.kind for e in run(ZoneMonitor([zone]), [inside, None, None, None, inside])] == ["enter"]  # occluded, not gone
    events = run(ZoneMonitor([zone]), [inside, None, None, None], removed_at=3)
    assert [(e.kind, e.frame, e.dwell_s) for e in events] == [("enter", 0, 0), ("exit", 3, pytest.approx(0.3))]


def test_class_filter_and_occupancy():
    zone = ZONE.model_copy(update={"classes": ["person"], "enter_frames": 1})
    monitor = ZoneMonitor([zone])
    inside = rect_mask(60, 10, 80, 30)
    tracks = [obs(0, inside, 1, "person"), obs(0, inside, 2, "bottle"), obs(0, inside, 3, "person")]
    events = monitor.update(0, 0.0, SIZE, tracks)
    assert [e.track_id for e in events] == [1, 3]
    assert monitor.occupancy() == {"z": {"person": 2}} and monitor.inside_zones(1) == ("z",)
    assert [(e.kind, e.track_id, e.dwell_s) for e in monitor.close(5, 0.5)] == [("exit", 1, 0.5), ("exit", 3, 0.5)]


def test_dwell_exceeded_once():
    zone = ZONE.model_copy(update={"enter_frames": 1, "max_dwell_s": 0.5})
    events = run(ZoneMonitor([zone]), [rect_mask(60, 10, 80, 30)] * 12)
    assert [(e.kind, e.frame) for e in events] == [("enter", 0), ("dwell_exceeded", 5)]
    assert events[1].dwell_s == pytest.approx(0.5)


def test_dwell_counts_seconds_not_observations():
    """Hysteresis counts observations, dwell counts seconds: a track seen once every 0.4 s enters after two
    observations (0.4 s) and exceeds 1 s of dwell at its third observation after enter (1.2 s), not its tenth."""
    zone = ZONE.model_copy(update={"enter_frames": 2, "max_dwell_s": 1.0})
    monitor, inside = ZoneMonitor([zone]), rect_mask(60, 10, 80, 30)
    events = []
    for frame in range(0, 40, 4):
        events += monitor.update(frame, frame / RATE, SIZE, [obs(frame, inside)])
    assert [(e.kind, e.frame) for e in events] == [("enter", 4), ("dwell_exceeded", 16)]
    assert events[1].dwell_s == pytest.approx(1.2)


def test_dynamic_circle_follows_its_anchor():
    """A 30 px circle around each excavator: a static worker is inside only while the excavator is near."""
    zone = DynamicZoneConfig(name="swing", anchor_classes=["excavator"], classes=["person"], radius=30, unit="px",
                             enter_frames=1, exit_frames=1)
    monitor = ZoneMonitor([], [zone])
    worker = obs(0, rect_mask(100, 45, 104, 55), 7, "person")  # 40 px, static at x=100..103
    kinds = []
    for frame, x in enumerate(range(20, 200, 10)):  # the excavator (20x20) drives right, 10 px per frame
        excavator = obs(frame, rect_mask(x, 40, x + 20, 60), 1, "excavator")
        events = monitor.update(frame, frame / RATE, SIZE, [excavator, worker])
        kinds += [(e.kind, e.frame, e.anchor_id, e.track_id) for e in events]
        assert all((e.anchor_uid, e.track_uid) == ("uid-1", "uid-7") for e in events)
        cx = x + 9.5
        region = monitor.regions[0]
        assert region.anchor_id == 1
        if region.mask.x1 < SIZE[1]:  # not clipped by the image edge: centred on the machine, 61 px across
            assert abs((region.mask.x0 + region.mask.x1) / 2 - (cx + 0.5)) <= 1 and region.mask.crop.shape[1] == 61
    # brute force: inside while any worker pixel centre lies within 30 px of the machine's centroid
    near = [any((px - (x + 9.5)) ** 2 + (py - 49.5) ** 2 <= 900 for px in range(100, 104) for py in range(45, 55))
            for x in range(20, 200, 10)]
    first_in = near.index(True)
    first_out = near.index(False, first_in)
    assert [k for k in kinds if k[0] == "enter"] == [("enter", first_in, 1, 7)]
    assert [k for k in kinds if k[0] == "exit"] == [("exit", first_out, 1, 7)]
    assert 0 < first_in < first_out < len(near) - 1


def test_dynamic_dilated_mask_in_metres_and_anchor_removal():
    """The swing radius in metres (50 px per metre): the worker's mask within 1 m of the machine's mask is inside."""
    zone = DynamicZoneConfig(name="swing", anchor_classes=["excavator"], classes=["person"], shape="dilate", radius=1.0,
                             unit="m", enter_frames=1, exit_frames=1, min_pixels=1)
    monitor = ZoneMonitor([], [zone], calibration=Calibration(CalibrationConfig(px_per_m=50)))
    excavator = obs(0, rect_mask(20, 20, 60, 60), 1, "excavator")
    near = obs(0, rect_mask(109, 30, 120, 40), 2, "person")  # 49 px right of the machine's last column (59): inside 50 px
    far = obs(0, rect_mask(111, 30, 120, 40), 3, "person")  # 52 px away: outside
    events = monitor.update(0, 0.0, SIZE, [excavator, near, far])
    assert [(e.kind, e.track_id, e.inside_pixels) for e in events] == [("enter", 2, 10)]
    (gone,) = monitor.update(1, 0.25, SIZE, [near, far], removed_ids=[1])  # the machine is gone: so is its zone
    assert (gone.kind, gone.track_id, gone.anchor_id, gone.anchor_uid, gone.dwell_s) == ("exit", 2, 1, "uid-1", 0.25)
    assert monitor.occupancy() == {}


def test_dynamic_zone_in_metres_needs_a_calibration():
    zone = DynamicZoneConfig(name="swing", anchor_classes=["excavator"], radius=2.0)
    with pytest.raises(ValueError, match="needs a calibration"):
        ZoneMonitor([], [zone]).update(0, 0.0, SIZE, [obs(0, rect_mask(20, 20, 60, 60), 1, "excavator")])


def test_zone_config_validation():
    with pytest.raises(ValueError, match="exactly one"):
        ZoneConfig(name="bad")
    with pytest.raises(ValueError, match="at least 3"):
        ZoneConfig(name="bad", polygon=[(0, 0), (1, 1)])
    assert math.isclose(DynamicZoneConfig(name="d", anchor_classes=["x"], radius=1).min_fraction, 0.02)
