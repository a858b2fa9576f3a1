"""Mask-based zone membership and enter/exit hysteresis."""

import numpy as np
import pytest

from analytics.zones import ZoneConfig, ZoneMonitor, is_inside, pixels_inside
from segmenter import CropMask
from tracker.tracker import TrackObservation, TrackState


def rect_mask(x0, y0, x1, y1):
    return CropMask(np.ones((y1 - y0, x1 - x0), bool), x0, y0)


def obs(frame, mask, track_id=1, name="person"):
    return TrackObservation(frame, track_id, 0, name, mask, mask.box(), 0.9, 1, 1, TrackState.CONFIRMED)


ZONE = ZoneConfig(name="z", polygon=[(50, 0), (100, 0), (100, 100), (50, 100)], enter_frames=2, exit_frames=2)


def test_pixels_inside_polygon_and_circle_are_exact():
    raster = ZONE.raster(100, 200)
    assert pixels_inside(rect_mask(40, 10, 60, 20), raster) == 10 * 10  # mask columns 40..59, zone from 50
    circle = ZoneConfig(name="c", circle=(100, 50, 10))
    assert pixels_inside(rect_mask(0, 0, 200, 100), circle.raster(100, 200)) == circle.raster(100, 200).sum()


def test_mask_decides_not_the_box():
    raster = ZONE.raster(100, 200)
    # an L-shaped mask whose box reaches into the zone while its pixels do not
    crop = np.zeros((40, 70), bool)
    crop[:, :10] = True
    crop[-5:, :] = True
    l_shape = CropMask(crop, 0, 0)  # bottom bar reaches x=69: 5 rows x 20 px inside the zone
    assert pixels_inside(l_shape, raster) == 100
    thin = CropMask(crop[:, :45], 10, 0)  # box x 10..55 overlaps the zone, pixels only 5x5 = 25 px of 575
    assert not is_inside(thin, ZONE.model_copy(update={"min_fraction": 0.05, "min_pixels": 200}), raster)


def test_threshold_is_fraction_or_pixels_whichever_smaller():
    raster = ZONE.raster(100, 200)
    big = rect_mask(0, 0, 51, 100)  # 5100 px, 100 inside: 2% of 5100 = 102 > 100 but 200 px rule not met either
    assert not is_inside(big, ZONE, raster)
    assert is_inside(rect_mask(0, 0, 52, 100), ZONE, raster)  # 200 px inside reaches min_pixels


def test_hysteresis_enter_and_exit_after_consecutive_frames():
    monitor = ZoneMonitor([ZONE])
    inside, outside = rect_mask(60, 10, 80, 30), rect_mask(150, 10, 170, 30)
    sequence = [outside, inside, outside, inside, inside, inside, outside, inside, outside, outside, outside]
    events = []
    for frame, mask in enumerate(sequence):
        events += monitor.update(frame, (100, 200), [obs(frame, mask)])
    assert [(e.kind, e.frame) for e in events] == [("enter", 4), ("exit", 9)]
    assert events[1].dwell_frames == 5


def test_lost_track_exits_and_class_filter_applies():
    zone = ZONE.model_copy(update={"classes": ["person"], "enter_frames": 1, "exit_frames": 2})
    monitor = ZoneMonitor([zone])
    inside = rect_mask(60, 10, 80, 30)
    assert monitor.update(0, (100, 200), [obs(0, inside, 1, "person"), obs(0, inside, 2, "bottle")])[0].track_id == 1
    assert monitor.update(1, (100, 200), []) == []
    assert [(e.kind, e.track_id) for e in monitor.update(2, (100, 200), [])] == [("exit", 1)]


def test_zone_config_validation():
    with pytest.raises(ValueError, match="exactly one"):
        ZoneConfig(name="bad")
    with pytest.raises(ValueError, match="at least 3"):
        ZoneConfig(name="bad", polygon=[(0, 0), (1, 1)])
