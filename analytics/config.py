"""What a site configures for analytics: the camera's geometry, rules, alarms, store."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from analytics.calibration import CalibrationConfig
from analytics.lines import LineConfig
from analytics.records import EventKind, Severity
from analytics.zones import DynamicZoneConfig, ZoneConfig

SizeField = Literal["area", "perimeter", "length", "width", "diameter"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CameraConfig(_Strict):
    """One camera's name, calibration and the zones and lines drawn on its image."""

    name: str = "camera"
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    zones: list[ZoneConfig] = Field(default_factory=list)
    dynamic_zones: list[DynamicZoneConfig] = Field(default_factory=list)
    lines: list[LineConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> CameraConfig:
        names = [z.name for z in self.zones] + [z.name for z in self.dynamic_zones]
        for kind, items in (("zone", names), ("line", [line.name for line in self.lines])):
            duplicates = sorted({n for n in items if items.count(n) > 1})
            if duplicates:
                raise ValueError(f"{kind} names must be unique: {', '.join(duplicates)}")
        return self


class SizeRule(_Strict):
    """Raise ``size_rule`` when a track's median ``measure`` leaves [min, max].

    Judged on the running median of clean measurements when there are
    ``min_samples`` of them and again after every ``min_samples`` more, so
    one occluded or mis-segmented frame never raises it; at most once per track.
    """

    name: str
    measure: SizeField
    classes: list[str] | None = None
    min: float | None = None
    max: float | None = None
    min_samples: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _bounds(self) -> SizeRule:
        if self.min is None and self.max is None:
            raise ValueError(f"size rule {self.name!r} needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"size rule {self.name!r}: min is above max")
        return self


class CountRule(_Strict):
    """Raise ``count_threshold`` when more than ``above`` objects are visible (in ``zone``, or anywhere).

    Raised once when the count goes above and re-armed when it falls back.
    """

    name: str
    above: int = Field(ge=0)
    zone: str | None = None
    classes: list[str] | None = None


class RulesConfig(_Strict):
    sizes: list[SizeRule] = Field(default_factory=list)
    counts: list[CountRule] = Field(default_factory=list)


class AlarmRule(_Strict):
    """Turn matching events into alarms. Empty filters match everything.

    ``cooldown_s`` is per (rule, track): a worker stepping in and out of a
    zone raises one alarm per cooldown, while a second worker raises their own.
    """

    name: str
    kinds: list[EventKind] = Field(min_length=1)
    zones: list[str] | None = None
    lines: list[str] | None = None
    rules: list[str] | None = None
    classes: list[str] | None = None
    severity: Severity = "warning"
    cooldown_s: float = Field(60.0, ge=0)
    notify: list[str] = Field(default_factory=list, description="Webhook names and/or 'mqtt' to deliver the alarm to.")


class SamplingConfig(_Strict):
    """How often per-frame work is done; the rest is every frame."""

    measure_every: int = Field(5, ge=1, description="Measure sizes on every n-th frame.")
    observe_every: int = Field(5, ge=1, description="Store an observation row per track every n-th frame.")
    count_every_s: float = Field(1.0, gt=0, description="Store visible counts and live track summaries this often "
                                 "(s between frame timestamps).")
    snapshots: bool = Field(True, description="Save a JPEG snapshot with each event.")


class ClipConfig(_Strict):
    """A short video around each alarm: ``before_s`` before its event to ``after_s`` after, masks drawn.

    Written as H.264 MP4 under ``<snapshot folder>/clips/<camera>/<YYYY-MM-DD>/<event id>.mp4``;
    the path is stored with the event (``events.clip``) when the alarm is raised, the file a
    few seconds later. Frames are kept downscaled and at most ``fps`` a second, so a camera's
    buffer holds about ``(before_s + 1) * fps`` small frames.
    """

    enabled: bool = Field(True, description="Record a clip for each alarm (of ``rules``).")
    before_s: float = Field(3.0, ge=0, le=60, description="Seconds of video before the alarm's event.")
    after_s: float = Field(3.0, ge=0, le=60, description="Seconds after it (less when the stream ends first).")
    fps: float = Field(10.0, gt=0, le=60, description="Most frames a second kept and encoded.")
    max_width: int = Field(640, ge=64, le=3840, description="Frames wider than this are downscaled.")
    crf: int = Field(26, ge=0, le=51, description="H.264 quality (lower: better and larger).")
    rules: list[str] | None = Field(None, description="Alarm rules that get a clip; default every rule.")
    retention_days: float | None = Field(None, gt=0, description="Delete clip files of events older than this at "
                                         "start (their events stay); default: kept like snapshots.")

    def wanted(self, rule: str) -> bool:
        return self.enabled and (self.rules is None or rule in self.rules)


class StoreConfig(_Strict):
    url: str | None = Field(None, description="SQLAlchemy URL; default sqlite:///<out>/maskwatch.db.")
    batch_frames: int = Field(30, ge=1, description="Frames per write transaction.")
    snapshot_dir: str | None = Field(None, description="Folder for event snapshots; default <out>/snapshots.")
    retention_days: float | None = Field(None, gt=0, description="Delete observations older than this at start.")


__all__ = ["AlarmRule", "CameraConfig", "ClipConfig", "CountRule", "RulesConfig", "SamplingConfig", "SizeRule", "StoreConfig"]
