"""``maskwatch track``: precomputed masks in, MOTS results out, no video needed."""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from pydantic import ValidationError

from common import InputError
from maskwatch.config import AppConfig, format_validation_error, load_config
from maskwatch.engine import Engine, mask_tracker
from maskwatch.outputs import MotsFile
from maskwatch.sources import replay_frames
from segmenter.replay import ReplayConfig, ReplaySegmenter
from tracker.config import TrackerConfig


def load_track_config(path: Path | None) -> tuple[TrackerConfig, ReplayConfig]:
    """Tracker parameters and replay keys from YAML: a site config (as ``run`` reads it), or bare tracker keys."""
    if path is None:
        return TrackerConfig(), ReplayConfig()
    if not Path(path).is_file():
        raise InputError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"config {path} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise InputError(f"config {path} must be a mapping of tracker parameters or a site config")
    if set(data) & set(AppConfig.model_fields):
        site = load_config(Path(path))
        return site.tracker, site.segmenter.replay or ReplayConfig()
    try:
        return TrackerConfig.model_validate(data), ReplayConfig()
    except ValidationError as exc:
        raise InputError(format_validation_error(exc, str(path))) from None


def track_file(detections: Path, out: Path, config: TrackerConfig, fps: float, replay: ReplayConfig | None = None) -> dict:
    """Track every frame of a MOTS detection file through the engine and write whole tracks (backfilled) as MOTS txt.

    Frames are numbered as the file numbers them (from 0 or 1, see :class:`ReplayConfig`), ``1/fps`` s apart;
    ``replay`` brings the config's replay keys (class names, score threshold, first frame).
    """
    replay = ReplaySegmenter((replay or ReplayConfig()).model_copy(update={"path": str(detections)}))
    if replay.image_size is None:
        raise InputError(f"{detections}: no detections to track")
    mots = MotsFile(out, replay.first_frame)
    engine = Engine(replay, mask_tracker(config), None, [mots], backfill_frames=config.min_hits)
    status = "failed"
    try:
        for frame in replay_frames(replay.frame_count(), fps, time.time()):
            engine.process([frame])
        status = "finished"
    finally:
        engine.close(status)
    return {"frames": engine.frames, "tracks": len(mots.track_ids), "first_frame": replay.first_frame}
