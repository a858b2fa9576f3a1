"""The main job: frames → segmenter → tracker → zones → outputs, one pass over a source."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing, nullcontext
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from sqlalchemy.exc import SQLAlchemyError

from analytics.analyzer import Analyzer
from common import InputError, redact_url
from maskwatch.config import AppConfig, SegmenterSection
from maskwatch.outputs import RunOutputs
from maskwatch.render import VideoRenderer
from maskwatch.sources import Frame, FramePool, FrameSource, read_ahead
from segmenter.detections import Segmenter
from storage.store import Store
from tracker.tracker import MaskTracker, TrackObservation


def build_segmenter(section: SegmenterSection) -> Segmenter:
    """The configured backend; heavy imports (torch) happen only for the one chosen."""
    if section.name == "motion":
        from segmenter.motion import MotionSegmenter

        return MotionSegmenter(section.motion)
    if section.name == "replay":
        from segmenter.replay import ReplaySegmenter

        if section.replay is None:
            raise InputError("segmenter.replay.path is required with the replay segmenter")
        return ReplaySegmenter(section.replay)
    from segmenter.maskrcnn import MaskRCNNSegmenter

    return MaskRCNNSegmenter(section.maskrcnn)


def store_url(config: AppConfig, out_dir: Path) -> str:
    """The configured store URL, by default SQLite in the output folder."""
    return config.store.url or f"sqlite:///{(out_dir / 'maskwatch.db').resolve()}"


def open_store(url: str, config: AppConfig) -> Store:
    """Open the store and apply retention; a one-line error if it cannot be opened."""
    try:
        store = Store(url, batch_frames=config.store.batch_frames)
        if config.store.retention_days is not None:
            store.purge_observations(config.store.retention_days)
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise InputError(redact_url(f"cannot open store {url}: {detail}")) from None  # the driver's text may repeat the URL
    return store


def _store_write(store: Store, run_id: int, analysis) -> None:
    store.write(run_id, observations=analysis.observations, tracks=analysis.tracks, events=analysis.events, alarms=analysis.alarms,
                counts=analysis.counts)


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
    source_path: Path,
    config: AppConfig,
    out_dir: Path,
    *,
    render: bool = False,
    max_frames: int | None = None,
    console: Console | None = None,
    show_progress: bool = True,
) -> dict:
    """Process ``source_path`` into ``out_dir``; returns the summary also written as summary.json.

    Ctrl-C stops after the current batch: everything written so far is kept and
    the summary says ``interrupted: true``.
    """
    console = console or Console(stderr=True)
    source = FrameSource(source_path)
    segmenter = build_segmenter(config.segmenter)
    tracker = MaskTracker(config.tracker, fps=source.fps)
    snapshot_dir = Path(config.store.snapshot_dir) if config.store.snapshot_dir else out_dir / "snapshots"
    analyzer = Analyzer(config.camera, config.rules, config.alarms, fps=source.fps, sampling=config.sampling, snapshot_dir=snapshot_dir)
    image_size = (source.height, source.width)
    out_dir.mkdir(parents=True, exist_ok=True)
    url = store_url(config, out_dir)
    store = open_store(url, config)
    started_ts = time.time()
    run_id = store.start_run(config.camera.name, str(source.path), segmenter=config.segmenter.name, unit=analyzer.calibration.unit,
                             started_ts=started_ts, config=config.model_dump(mode="json"))
    outputs = RunOutputs(out_dir, image_size, source.fps, parquet=config.output.parquet)
    renderer = VideoRenderer(out_dir / "annotated.mp4", source.fps, image_size) if render or config.output.render else None
    batch_size = config.segmenter.maskrcnn.batch_size if config.segmenter.name == "maskrcnn" else 8
    # Mask R-CNN gets two batches per call, so it can upload one to the GPU while it computes the other
    per_call = 2 * batch_size if config.segmenter.name == "maskrcnn" else batch_size
    depth = 2 * batch_size
    # enough buffers for the frames of one call, those decoded ahead of it and the one being decoded
    pool = FramePool(per_call + depth + 1, (source.height, source.width, 3), getattr(segmenter, "host_frame", None))
    total = min(x for x in (source.frame_count, max_frames) if x) if (source.frame_count or max_frames) else None

    pending: dict[int, list[TrackObservation]] = {}
    delay = config.tracker.min_hits  # backfilled observations reach back min_hits - 1 frames
    frames_done, interrupted, error, started = 0, False, None, time.perf_counter()

    def flush(up_to: int) -> None:
        for frame in sorted(f for f in pending if f <= up_to):
            outputs.write_frame(frame, sorted(pending.pop(frame), key=lambda o: o.track_id))

    progress = _progress(console) if show_progress else nullcontext()
    try:
        with progress, closing(read_ahead(source.frames(pool), depth, pool)) as frames:
            task = progress.add_task(source.path.name, total=total, fps=0.0) if show_progress else None
            for batch in _batches(frames, per_call, max_frames):
                for frame, detections in zip(batch, segmenter.segment([f.image for f in batch])):
                    result = tracker.update(detections)
                    pending.setdefault(frame.index, []).extend(result.tracks)
                    for obs in result.backfill:
                        pending.setdefault(obs.frame, []).append(obs)
                    analysis = analyzer.update(frame.index, frame.pts, started_ts + frame.pts, frame.image, result)
                    outputs.write_events(analysis.events)
                    _store_write(store, run_id, analysis)
                    if renderer is not None:
                        renderer.write(frame.image, result.tracks, config.camera, analyzer.zones.regions)
                    flush(frame.index - delay)
                    frames_done += 1
                pool.release(f.image for f in batch)  # nothing holds on to a frame's image past its batch
                if task is not None:
                    elapsed = time.perf_counter() - started
                    progress.update(task, completed=frames_done, fps=frames_done / elapsed if elapsed else 0.0)
    except KeyboardInterrupt:
        interrupted = True
    except InputError as exc:  # e.g. a corrupt image mid-folder: keep what was done, then report
        error = str(exc)
    finally:
        flush(frames_done - 1)  # a frame interrupted mid-way is not counted, so not written either
        last = max(frames_done - 1, 0)
        final = analyzer.close(last, started_ts + last / source.fps, last / source.fps)
        outputs.write_events(final.events)
        _store_write(store, run_id, final)
        status = "interrupted" if interrupted else "failed" if error is not None else "finished"
        store.end_run(run_id, frames=frames_done, status=status, ended_ts=time.time())
        store.close()
        if renderer is not None:
            renderer.close()
    elapsed = time.perf_counter() - started
    summary = {
        "source": str(source.path),
        "segmenter": config.segmenter.name,
        "frames": frames_done,
        "fps_source": source.fps,
        "image_size": {"height": source.height, "width": source.width},
        "elapsed_s": round(elapsed, 3),
        "processing_fps": round(frames_done / elapsed, 2) if elapsed else 0.0,
        "interrupted": interrupted,
        "counts_per_class": dict(sorted(analyzer.unique.items())),
        "camera": config.camera.name,
        "unit": analyzer.calibration.unit,
        "line_counts": analyzer.line_counts(),
        "alarms": analyzer.alarm_total,
        "store": redact_url(url),
        "run_id": run_id,
    }
    if error is not None:
        summary["error"] = error
    extra = {"snapshots": snapshot_dir} if snapshot_dir.is_dir() else {}
    if renderer is not None:
        extra["annotated_mp4"] = renderer.path
    summary = outputs.close(summary, extra_files=extra)
    if error is not None:
        raise InputError(f"{error} (results of the first {frames_done} frames kept in {out_dir})")
    return summary
