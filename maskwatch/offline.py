"""``maskwatch track``: precomputed masks in, MOTS results out, no video needed."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from common import InputError
from maskwatch.config import format_validation_error
from segmenter.motsio import read_mots_detections
from segmenter.replay import ReplayConfig, ReplaySegmenter
from tracker.config import TrackerConfig
from tracker.mots_output import mots_lines
from tracker.tracker import MaskTracker, TrackObservation


def load_tracker_config(path: Path | None) -> TrackerConfig:
    """Tracker parameters from YAML: a ``tracker:`` section of a site config, or bare keys."""
    if path is None:
        return TrackerConfig()
    if not Path(path).is_file():
        raise InputError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"config {path} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise InputError(f"config {path} must be a mapping of tracker parameters")
    section = data.get("tracker", data)
    try:
        return TrackerConfig.model_validate(section)
    except ValidationError as exc:
        raise InputError(format_validation_error(exc, str(path))) from None


def first_frame_of(path: Path) -> int:
    """MOTS20 numbers frames from 1, KITTI MOTS from 0: a file with a frame 0 is the latter."""
    return 0 if any(d.frame == 0 for d in read_mots_detections(path)) else 1


def track_file(detections: Path, out: Path, config: TrackerConfig, fps: float, first_frame: int | None = None) -> dict:
    """Track every frame of a MOTS detection file and write whole tracks (backfilled) as MOTS txt."""
    first = first_frame_of(detections) if first_frame is None else first_frame
    replay = ReplaySegmenter(ReplayConfig(path=str(detections), first_frame=first))
    if replay.image_size is None:
        raise InputError(f"{detections}: no detections to track")
    tracker = MaskTracker(config, fps=fps)
    frames: list[list[TrackObservation]] = [[] for _ in range(replay.frame_count())]
    for _ in range(replay.frame_count()):
        result = tracker.update(replay.segment([None])[0])
        frames[result.frame].extend(result.tracks)
        for obs in result.backfill:
            frames[obs.frame].append(obs)
    out.parent.mkdir(parents=True, exist_ok=True)
    ids = set()
    with out.open("w") as handle:
        for index, observations in enumerate(frames):
            observations.sort(key=lambda o: o.track_id)
            ids.update(o.track_id for o in observations)
            handle.writelines(line + "\n" for line in mots_lines(first + index, observations, replay.image_size))
    return {"frames": len(frames), "tracks": len(ids), "first_frame": first}
