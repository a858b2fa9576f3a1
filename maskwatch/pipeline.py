"""``maskwatch run``: one pass over a video, an image folder or replayed masks, through the engine into files and the store."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, nullcontext
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from sqlalchemy.exc import SQLAlchemyError

from analytics.analyzer import Analyzer
from analytics.config import CameraConfig
from common import InputError, redact_url
from maskwatch.clips import ClipRecorder
from maskwatch.config import AppConfig, SegmenterSection
from maskwatch.engine import Engine, Sink, mask_tracker
from maskwatch.outputs import MotsFile, RunFiles, StoreSink
from maskwatch.render import VideoRenderer
from maskwatch.sources import DEFAULT_FOLDER_FPS, Frame, FramePool, FrameSource, read_ahead, replay_frames
from segmenter.detections import Segmenter
from segmenter.replay import ReplayConfig, ReplaySegmenter
from storage.store import Store


def build_segmenter(section: SegmenterSection) -> Segmenter:
    """The configured backend; heavy imports (torch) happen only for the one chosen."""
    if section.name == "motion":
        from segmenter.motion import MotionSegmenter

        return MotionSegmenter(section.motion)
    if section.name == "replay":
        return ReplaySegmenter(section.replay or ReplayConfig())
    from segmenter.maskrcnn import MaskRCNNSegmenter

    return MaskRCNNSegmenter(section.maskrcnn)


def store_url(config: AppConfig, out_dir: Path) -> str:
    """The configured store URL, by default SQLite in the output folder."""
    return config.store.url or f"sqlite:///{(out_dir / 'maskwatch.db').resolve()}"


@contextmanager
def store_errors(url: str) -> Iterator[None]:
    """Failures to open the store at ``url`` (down, no such database, misspelt dialect) as one-line input errors."""
    try:
        yield
    except (SQLAlchemyError, ImportError) as exc:  # ImportError: the dialect's driver is not installed
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise InputError(redact_url(f"cannot open store {url}: {detail}")) from None  # the driver's text may repeat the URL


def open_store(url: str, config: AppConfig, media_root: Path | None = None) -> Store:
    """Open the store and apply retention (clips too, given the snapshot folder); a one-line error if it cannot be opened."""
    with store_errors(url):
        store = Store(url, batch_frames=config.store.batch_frames)
        if config.store.retention_days is not None:
            store.purge_observations(config.store.retention_days)
        if config.clips.retention_days is not None and media_root is not None:
            store.purge_clips(config.clips.retention_days, media_root)
    return store


def _batches(frames: Iterator[Frame], size: int, limit: int | None) -> Iterator[list[Frame]]:
    """Groups of ``size`` frames; a read error first hands over the frames read before it."""
    batch: list[Frame] = []
    try:
        for frame in frames:
            if limit is not None and frame.index >= limit:
                break
            batch.append(frame)
            if len(batch) == size:
                yield batch
                batch = []
    except InputError:
        if batch:
            yield batch
        raise
    if batch:
        yield batch


def build_analyzer(config: AppConfig, camera: CameraConfig, out_dir: Path) -> Analyzer:
    """The analyzer of one camera, snapshots under the configured folder (default: ``out_dir/snapshots``)."""
    return Analyzer(camera, config.rules, config.alarms, sampling=config.sampling, snapshot_dir=snapshot_dir(config, out_dir))


def snapshot_dir(config: AppConfig, out_dir: Path) -> Path:
    return Path(config.store.snapshot_dir) if config.store.snapshot_dir else out_dir / "snapshots"


def build_clips(config: AppConfig, camera: str, out_dir: Path) -> ClipRecorder | None:
    """The alarm clip recorder of one camera's engine (clips under the snapshot folder), or None when off or no alarms."""
    if not config.clips.enabled or not any(config.clips.wanted(rule.name) for rule in config.alarms):
        return None
    return ClipRecorder(snapshot_dir(config, out_dir), camera, config.clips)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[fps]:.1f} frames/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def run_pipeline(
    source_path: Path | None,
    config: AppConfig,
    out_dir: Path,
    *,
    render: bool = False,
    max_frames: int | None = None,
    fps: float | None = None,
    console: Console | None = None,
    show_progress: bool = True,
    node: str | None = None,
) -> dict:
    """Process ``source_path`` into ``out_dir``; returns the summary also written as summary.json.

    Without a source the replay segmenter's masks are processed alone, ``1/fps`` s
    apart. Ctrl-C stops after the current batch: everything written so far is kept
    and the summary says ``interrupted: true``. ``node`` names the machine in the run's row (default: the host
    name; ``maskwatch batch`` gives the Ray node).
    """
    console = console or Console(stderr=True)
    if source_path is None and config.segmenter.name != "replay":
        raise InputError("a video or image folder is needed, unless --detections replays masks on their own")
    segmenter = build_segmenter(config.segmenter)
    if source_path is not None:
        source = FrameSource(source_path, fps=fps)
        name, rate, fps_from, first_number = str(source.path), source.fps, source.fps_from, source.first_number
        image_size, total = (source.height, source.width), source.frame_count
    elif segmenter.image_size is not None:
        source, name, rate = None, config.segmenter.replay.path, fps or DEFAULT_FOLDER_FPS
        fps_from = "--fps" if fps else "default"
        image_size, total = segmenter.image_size, segmenter.frame_count()
    else:
        raise InputError(f"{config.segmenter.replay.path}: no masks to replay")
    if isinstance(segmenter, ReplaySegmenter):
        first_number = segmenter.first_frame  # MOTS numbering as the replayed file numbers its frames
    total = min(x for x in (total, max_frames) if x) if (total or max_frames) else None
    out_dir.mkdir(parents=True, exist_ok=True)
    url = store_url(config, out_dir)
    store = open_store(url, config, snapshot_dir(config, out_dir))
    analyzer = lambda: build_analyzer(config, config.camera, out_dir)  # noqa: E731
    files = RunFiles(out_dir, parquet=config.output.parquet)
    mots = MotsFile(out_dir / "tracks.mots.txt", first_number)
    sinks: list[Sink] = [files, mots]
    renderer = None
    if render or config.output.render:
        if source is None:
            raise InputError("--render needs the video or image folder the masks belong to")
        renderer = VideoRenderer(out_dir / "annotated.mp4", rate, image_size, config.camera)
        sinks.append(renderer)
    engine = Engine(segmenter, mask_tracker(config.tracker), analyzer, sinks, backfill_frames=config.tracker.min_hits,
                    clips=build_clips(config, config.camera.name, out_dir) if source is not None else None)
    run_id = store.start_run(config.camera.name, redact_url(name), segmenter=config.segmenter.name,
                             unit=engine.analyzer.calibration.unit, started_ts=source.start_ts if source else time.time(),
                             config=config.redacted(), node=node)
    engine.sinks.append(StoreSink(store, run_id))
    batch_size = config.segmenter.maskrcnn.batch_size if config.segmenter.name == "maskrcnn" else 8
    # Mask R-CNN gets two batches per call, so it can upload one to the GPU while it computes the other
    per_call = 2 * batch_size if config.segmenter.name == "maskrcnn" else batch_size
    depth = 2 * batch_size
    pool = None
    if source is not None:  # enough buffers for one call's frames, those decoded ahead of it and the one being decoded
        pool = FramePool(per_call + depth + 1, (source.height, source.width, 3), getattr(segmenter, "host_frame", None))
        frames = read_ahead(source.frames(pool), depth, pool)
    else:
        frames = replay_frames(segmenter.frame_count(), rate, time.time())
    interrupted, error, started = False, None, time.perf_counter()
    progress = _progress(console) if show_progress else nullcontext()
    try:
        with progress, closing(frames):
            task = progress.add_task(Path(name).name, total=total, fps=0.0) if show_progress else None
            for batch in _batches(frames, per_call, max_frames):
                engine.process(batch)
                if pool is not None:
                    pool.release(f.image for f in batch)  # nothing holds on to a frame's image past its batch
                if task is not None:
                    elapsed = time.perf_counter() - started
                    progress.update(task, completed=engine.frames, fps=engine.frames / elapsed if elapsed else 0.0)
    except KeyboardInterrupt:
        interrupted = True
    except InputError as exc:  # e.g. a corrupt image mid-folder: keep what was done, then report
        error = str(exc)
    finally:
        engine.close("interrupted" if interrupted else "failed" if error is not None else "finished")
    elapsed = time.perf_counter() - started
    summary = {
        "source": redact_url(name),
        "segmenter": config.segmenter.name,
        "frames": engine.frames,
        "fps_source": rate,
        "fps_from": fps_from,
        "first_frame_number": first_number,
        "image_size": {"height": image_size[0], "width": image_size[1]},
        "elapsed_s": round(elapsed, 3),
        "processing_fps": round(engine.frames / elapsed, 2) if elapsed else 0.0,
        "interrupted": interrupted,
        "counts_per_class": engine.unique(),
        "camera": config.camera.name,
        "unit": engine.analyzer.calibration.unit,
        "line_counts": engine.line_counts(),
        "alarms": engine.alarms(),
        "store": redact_url(url),
        "run_id": run_id,
        **files.summary(),
    }
    if error is not None:
        summary["error"] = error
    paths = files.files() | {"mots": str(mots.path)}
    if snapshot_dir(config, out_dir).is_dir():
        paths["snapshots"] = str(snapshot_dir(config, out_dir))
    if renderer is not None:
        paths["annotated_mp4"] = str(renderer.path)
    summary["files"] = paths
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if error is not None:
        raise InputError(f"{error} (results of the first {engine.frames} frames kept in {out_dir})")
    return summary
