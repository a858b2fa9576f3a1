"""The live service's published state: ``<live_dir>/<camera>.json`` (a :class:`CameraStatus`) and ``<camera>.jpg``.

The camera workers of ``maskwatch serve`` replace both files atomically a few
times a second (:func:`write_status`, :func:`write_atomic`), so reading them is
all the supervisor and the dashboard do for live views: neither runs the
pipeline or opens a camera itself. The JPEG sits beside the JSON under the same
stem; the camera's real name is the status's ``camera``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, ValidationError

Health = Literal["live", "stale", "disconnected", "worker down", "not segmenting"]
SEGMENTER_STATUS = Path("segmenter") / "status.json"  # the shared segmenter's, under live_dir (see maskwatch.serve)


class CameraStatus(BaseModel):
    """One camera worker's latest report: written by the worker, read by the supervisor and the dashboard.

    Strict about keys (``extra="forbid"``) so a misspelt field fails where the
    status is made, not as a blank on a page. ``worker_alive`` and
    ``worker_restarts`` are the supervisor's: workers leave them None.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    camera: str
    pid: int
    updated_ts: float  # epoch seconds of this report
    run_id: int | None
    source: str  # credentials redacted
    connected: bool
    fps_in: float
    fps_out: float
    dropped: int
    reconnects: int
    last_error: str | None
    segmenter_error: str | None  # why frames are skipped right now (the shared segmenter is away)
    backoff_s: float
    frame_size: tuple[int, int] | None  # (width, height)
    queue_depth: int
    lag_s: float | None
    segment_s: float | None
    frames: int
    ended: bool
    visible: dict[str, int]  # class -> objects in the frame now
    occupancy: dict[str, dict[str, int]]  # zone -> class -> objects inside now
    unique: dict[str, int]  # class -> distinct objects this run
    line_counts: dict  # line -> class -> {"in": n, "out": n}, this run
    alarms: int
    process: str | None = None  # process_key(pid) of the worker that wrote it: pids are reused, this is not
    worker_alive: bool | None = None
    worker_restarts: int | None = None

    @classmethod
    def unreported(cls, camera: str, source: str) -> Self:
        """A camera whose worker has not reported yet: disconnected, nothing counted, never updated (so stale)."""
        return cls(
            camera=camera, pid=0, updated_ts=0.0, run_id=None, source=source, connected=False, fps_in=0.0, fps_out=0.0,
            dropped=0, reconnects=0, last_error=None, segmenter_error=None, backoff_s=0.0, frame_size=None,
            queue_depth=0, lag_s=None, segment_s=None, frames=0, ended=False, visible={}, occupancy={}, unique={},
            line_counts={}, alarms=0,
        )  # fmt: skip

    def age_s(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.updated_ts

    def health(self, stale_after_s: float, now: float | None = None) -> tuple[Health, str]:
        """What an operator must know first, with why: a silent worker is worse than a disconnected camera."""
        age = self.age_s(now)
        if self.worker_alive is False:
            return "worker down", f"worker process not running (restarts: {self.worker_restarts or 0})"
        if not self.updated_ts:
            return "stale", "no status yet from this worker"
        if age > stale_after_s:
            return "stale", f"no status for {age:.0f} s"
        if self.ended:
            return "disconnected", "the file has played to its end (loop: false)"
        if not self.connected:
            return "disconnected", "the camera is not connected" + (f": {self.last_error}" if self.last_error else "")
        if self.segmenter_error:
            return "not segmenting", f"frames skipped: {self.segmenter_error}"
        if not self.frames:
            return "not segmenting", "connected, no frame processed yet"
        return "live", f"updated {age:.1f} s ago"


def process_key(pid: int) -> str | None:
    """Which process ``pid`` is: boot, pid and start time (Linux ``/proc``); None when it has ended (a zombie too).

    A pid alone may name a later process once its first has died; this key never does.
    """
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # after "pid (command)"
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else f"{boot}/{pid}/{fields[19]}"  # state, starttime (stat fields 3, 22)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` in one step: readers (dashboard, supervisor) never see half a file, nor wait for the writer."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_status(path: Path, status: CameraStatus) -> None:
    """Publish a camera's status at ``path`` (``<live_dir>/<camera>.json``), atomically."""
    write_atomic(path, status.model_dump_json().encode())


def read_status(path: Path) -> CameraStatus | None:
    """The status at ``path``; None when there is none yet, or it is not a camera's status."""
    try:
        return CameraStatus.model_validate_json(path.read_bytes())
    except (OSError, ValidationError):
        return None


@dataclass(frozen=True)
class LiveCamera:
    """A camera's status with where it was read, for the JPEG beside it."""

    status: CameraStatus
    status_path: Path

    @property
    def camera(self) -> str:
        return self.status.camera

    @property
    def frame_path(self) -> Path:
        return self.status_path.with_suffix(".jpg")

    @property
    def clean_frame_path(self) -> Path:
        return clean_frame_path(self.frame_path)


def read_cameras(live_dir: Path) -> list[LiveCamera]:
    """Every camera's latest status, by camera name; files that vanish or are no camera status are skipped."""
    found = []
    for path in sorted(live_dir.glob("*.json")) if live_dir.is_dir() else []:
        if path.name.startswith("."):  # a writer's temporary file
            continue
        status = read_status(path)
        if status is not None:
            found.append(LiveCamera(status, path))
    return sorted(found, key=lambda c: c.camera)


def find_camera(live_dir: Path, camera: str) -> LiveCamera | None:
    return next((c for c in read_cameras(live_dir) if c.camera == camera), None)


def read_segmenter(live_dir: Path) -> dict[str, Any] | None:
    """The shared segmenter's batch statistics, or None when the cameras run their own (or it has not started)."""
    try:
        status = json.loads((live_dir / SEGMENTER_STATUS).read_text())
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def clean_frame_path(frame_path: Path) -> Path:
    """Where a camera's clean frame (no overlays, for drawing zones on) lies beside its annotated ``frame_path``."""
    return frame_path.with_suffix(".clean.jpg")


def read_frame(camera: LiveCamera, clean: bool = False) -> bytes | None:
    """The latest annotated JPEG (or, with ``clean``, the latest frame as the camera sees it), None before the first."""
    try:
        return (camera.clean_frame_path if clean else camera.frame_path).read_bytes()
    except OSError:
        return None


Stamp = tuple[int, int, int]  # inode, mtime ns, size: a file replaced atomically gets a new inode


def _stamp(path: Path) -> Stamp | None:
    try:
        s = path.stat()
    except OSError:
        return None
    return s.st_ino, s.st_mtime_ns, s.st_size


class LiveFiles:
    """The live folder as last read: a file is read and parsed again only when its inode, mtime or size changed.

    A dashboard tab re-reads the folder every fraction of a second; the workers
    replace a camera's files a few times a second, and a stopped camera's never.
    One ``stat`` per file tells which changed, so an idle (or stale) camera costs
    a directory listing and no reads. ``reads`` counts the files actually read.
    Shared by every session of a dashboard server (plain dict updates only).
    """

    def __init__(self, live_dir: Path) -> None:
        self.live_dir = live_dir
        self.reads = 0
        self._status: dict[Path, tuple[Stamp, CameraStatus | None]] = {}
        self._frames: dict[Path, tuple[Stamp, bytes | None]] = {}
        self._segmenter: tuple[Stamp | None, dict[str, Any] | None] = (None, None)

    def cameras(self) -> list[LiveCamera]:
        """As :func:`read_cameras`, from files read again only when changed."""
        found, seen = [], set()
        try:
            entries = sorted(e.name for e in os.scandir(self.live_dir) if e.name.endswith(".json") and not e.name.startswith("."))
        except OSError:
            return []
        for name in entries:
            path = self.live_dir / name
            stamp = _stamp(path)
            if stamp is None:
                continue
            seen.add(path)
            cached = self._status.get(path)
            if cached is None or cached[0] != stamp:
                self.reads += 1
                cached = self._status[path] = (stamp, read_status(path))
            if cached[1] is not None:
                found.append(LiveCamera(cached[1], path))
        for gone in set(self._status) - seen:
            self._status.pop(gone, None)
        return sorted(found, key=lambda c: c.camera)

    def frame(self, camera: LiveCamera) -> tuple[Stamp, bytes] | None:
        """The camera's latest JPEG with its stamp (a key for anything derived from it); None before the first."""
        path = camera.frame_path
        stamp = _stamp(path)
        if stamp is None:
            self._frames.pop(path, None)
            return None
        cached = self._frames.get(path)
        if cached is None or cached[0] != stamp:
            self.reads += 1
            cached = self._frames[path] = (stamp, read_frame(camera))
        return None if cached[1] is None else (cached[0], cached[1])

    def segmenter(self) -> dict[str, Any] | None:
        """As :func:`read_segmenter`, read again only when changed."""
        stamp = _stamp(self.live_dir / SEGMENTER_STATUS)
        if stamp != self._segmenter[0]:
            self.reads += stamp is not None
            self._segmenter = (stamp, read_segmenter(self.live_dir) if stamp is not None else None)
        return self._segmenter[1]
