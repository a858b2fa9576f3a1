"""Site configuration: one YAML file, validated by pydantic, errors naming the key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from analytics.config import AlarmRule, CameraConfig, ClipConfig, RulesConfig, SamplingConfig, StoreConfig
from common import InputError, redact, redact_url
from dashboard.settings import DashboardSection
from delivery.mqtt import MqttConfig
from delivery.outbox import DeliveryConfig
from segmenter.maskrcnn import MaskRCNNConfig
from segmenter.motion import MotionConfig
from segmenter.replay import ReplayConfig
from tracker.config import TrackerConfig

SegmenterName = Literal["maskrcnn", "motion", "replay"]
CAMERA_SCHEMES = ("rtsp", "rtsps", "http", "https")
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)(?P<colon>:?)//")


class SegmenterSection(BaseModel):
    """Which backend runs, and each backend's own settings."""

    model_config = ConfigDict(extra="forbid")

    name: SegmenterName = "maskrcnn"
    maskrcnn: MaskRCNNConfig = Field(default_factory=MaskRCNNConfig)
    motion: MotionConfig = Field(default_factory=MotionConfig)
    replay: ReplayConfig | None = None


class OutputSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    render: bool = Field(False, description="Write an annotated MP4 (also --render).")
    parquet: bool = Field(True, description="Write Parquet beside the CSV files.")


class LiveCameraConfig(CameraConfig):
    """A camera of ``maskwatch serve``: where its frames come from, plus its analytics geometry."""

    source: str | int = Field(description="rtsp://, rtsps://, http(s):// URL, a video file, or a device index.")
    loop: bool = Field(False, description="Files only: start again at the end (a file standing in for a camera).")
    fps: float = Field(15.0, gt=0, description="The most frames/s the worker processes (the newest frame each time); durations come from timestamps.")
    stall_s: float = Field(5.0, gt=0, description="No frame for this long counts as a failure: reconnect.")
    backoff_max_s: float = Field(30.0, gt=0, description="Longest wait between reconnection attempts.")
    rtsp_transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP media over the RTSP connection (tcp) or UDP ports (udp: fewer delays, but packets lost on busy links smear frames).")

    @model_validator(mode="after")
    def _known_source(self) -> LiveCameraConfig:
        """A typo (``rstp://``, ``rtsp//``) must fail at start naming the camera, not retry forever as a missing file."""
        problem = source_problem(self.source)
        if problem is not None:
            raise ValueError(f"camera {self.name}: source {redact_url(str(self.source))} {problem}")
        return self


def source_problem(source: str | int) -> str | None:
    """Why ``source`` is no camera source (a known URL scheme, an existing file, a device index), or None."""
    if isinstance(source, int) or source.strip().isdigit():
        return None if int(source) >= 0 else "is not a device index (0, 1, ...)"
    known = ", ".join(CAMERA_SCHEMES)
    match = _SCHEME.match(source)
    if match and not match["colon"]:
        return f"lacks the ':' after {match['scheme']!r} (a URL: {known})"
    if match and match["scheme"].lower() not in CAMERA_SCHEMES:
        return f"has an unknown scheme {match['scheme']!r} (known: {known})"
    if match or Path(source).is_file():
        return None
    return f"is not a URL ({known}), an existing video file or a device index"


class ServiceSection(BaseModel):
    """``maskwatch serve``: health/metrics endpoint and the live files the dashboard reads."""

    model_config = ConfigDict(extra="forbid")

    listen: str = Field("127.0.0.1:9108", pattern=r"^[^:]*:\d+$", description="host:port of /healthz and /metrics.")
    live_dir: str = Field("live", description="Per-camera status JSON and latest JPEG (relative to --out unless absolute).")
    live_jpeg_every_s: float = Field(0.25, gt=0, description="How often the latest annotated frame is written.")
    restart_backoff_max_s: float = Field(30.0, gt=0, description="Longest wait before restarting a dead camera worker.")
    segmenter: Literal["auto", "shared", "per_camera"] = Field(
        "auto",
        description="shared: one segmenter process batches the frames of all cameras (one model on the GPU); "
        "per_camera: each camera worker runs its own; auto: shared for maskrcnn, per camera for motion and replay "
        "(they keep per-camera state).",
    )
    batch_wait_ms: float = Field(
        20.0, ge=0, description="Shared segmenter: longest wait for other cameras' frames to fill a batch."
    )
    segmenter_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Shared segmenter: a camera skips its frame when no answer comes in this time, and a segmenter "
        "that makes no progress for this long (a hung driver) is killed and restarted. Above the slowest batch.",
    )

    def shared_segmenter(self, segmenter: SegmenterName) -> bool:
        """Whether ``maskwatch serve`` runs one segmenter process for all cameras."""
        return self.segmenter == "shared" or (self.segmenter == "auto" and segmenter == "maskrcnn")


class AppConfig(BaseModel):
    """The whole configuration of ``maskwatch run``/``track``."""

    model_config = ConfigDict(extra="forbid")

    segmenter: SegmenterSection = Field(default_factory=SegmenterSection)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    camera: CameraConfig = Field(default_factory=CameraConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    alarms: list[AlarmRule] = Field(default_factory=list)
    clips: ClipConfig = Field(default_factory=ClipConfig, description="A short MP4 around each alarm.")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    output: OutputSection = Field(default_factory=OutputSection)
    cameras: list[LiveCameraConfig] = Field(default_factory=list, description="maskwatch serve: the cameras to run.")
    service: ServiceSection = Field(default_factory=ServiceSection)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig, description="Webhooks and how alarms are retried.")
    mqtt: MqttConfig | None = Field(None, description="MQTT broker for alarms, counts and camera status.")
    dashboard: DashboardSection = Field(default_factory=DashboardSection, description="maskwatch dashboard: auth, refresh.")

    def redacted(self) -> dict[str, Any]:
        """The config as JSON data with every password, token, secret and header value masked: what a run stores."""
        return redact(self.model_dump(mode="json"))

    @model_validator(mode="after")
    def _unique_cameras(self) -> AppConfig:
        names = [c.name for c in self.cameras]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"camera names must be unique: {', '.join(duplicates)}")
        if self.service.segmenter == "shared" and self.segmenter.name != "maskrcnn":
            raise ValueError(
                f"service.segmenter: shared needs the maskrcnn segmenter ({self.segmenter.name} keeps state per camera; "
                "use auto or per_camera)"
            )
        channels = {w.name for w in self.delivery.webhooks} | ({"mqtt"} if self.mqtt is not None else set())
        for i, rule in enumerate(self.alarms):
            unknown = sorted(set(rule.notify) - channels)
            if unknown:
                raise ValueError(f"alarms.{i}.notify: no webhook or mqtt named {', '.join(unknown)}")
        unknown = sorted(set(self.clips.rules or ()) - {rule.name for rule in self.alarms})
        if unknown:
            raise ValueError(f"clips.rules: no alarm rule named {', '.join(unknown)}")
        return self


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line naming each bad key, e.g. ``site.yaml: tracker.min_hits: ...``."""
    parts = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        parts.append(f"{key}: {message}")
    return f"invalid config {source}: " + "; ".join(parts)


def parse_config(data: dict, source: str = "config") -> AppConfig:
    try:
        return AppConfig.model_validate(data or {})
    except ValidationError as exc:
        raise InputError(format_validation_error(exc, source)) from None


def load_config(path: Path | None) -> AppConfig:
    """Read and validate a YAML config; no path gives the defaults."""
    if path is None:
        return AppConfig()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise InputError(f"config {path}{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is not None and not isinstance(data, dict):
        raise InputError(f"config {path} must be a mapping of sections (segmenter, tracker, camera, rules, alarms, sampling, store, output)")
    return parse_config(data or {}, str(path))
