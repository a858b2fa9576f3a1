"""Masks in, persistent tracks out: Kalman motion + mask-IoU association."""

from tracker.config import TrackerConfig
from tracker.tracker import FrameTracks, MaskTracker, TrackObservation, TrackState

__all__ = ["FrameTracks", "MaskTracker", "TrackObservation", "TrackState", "TrackerConfig"]
