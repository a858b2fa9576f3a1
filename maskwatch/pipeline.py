"""The main job: frames → segmenter → tracker → zones → outputs, one pass over a source."""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from analytics.zones import ZoneMonitor
from maskwatch.config import AppConfig, SegmenterSection
from maskwatch.outputs import RunOutputs
from maskwatch.render import VideoRenderer
from maskwatch.sources import Frame, FrameSource
from segmenter.detections import Segmenter
from segmenter.errors import InputError
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
    zones = ZoneMonitor(config.zones)
    image_size = (source.height, source.width)
    outputs = RunOutputs(out_dir, image_size, source.fps, parquet=config.output.parquet)
    renderer = VideoRenderer(out_dir / "annotated.mp4", source.fps, image_size) if render or config.output.render else None
    batch_size = config.segmenter.maskrcnn.batch_size if config.segmenter.name == "maskrcnn" else 8
    total = min(x for x in (source.frame_count, max_frames) if x) if (source.frame_count or max_frames) else None

    pending: dict[int, list[TrackObservation]] = {}
    delay = config.tracker.min_hits  # backfilled observations reach back min_hits - 1 frames
    frames_done, interrupted, error, started = 0, False, None, time.perf_counter()

    def flush(up_to: int) -> None:
        for frame in sorted(f for f in pending if f <= up_to):
            outputs.write_frame(frame, sorted(pending.pop(frame), key=lambda o: o.track_id))

    progress = _progress(console) if show_progress else nullcontext()
    try:
        with progress:
            task = progress.add_task(source.path.name, total=total, fps=0.0) if show_progress else None
            for batch in _batches(iter(source), batch_size, max_frames):
                for frame, detections in zip(batch, segmenter.segment([f.image for f in batch])):
                    result = tracker.update(detections)
                    pending.setdefault(frame.index, []).extend(result.tracks)
                    for obs in result.backfill:
                        pending.setdefault(obs.frame, []).append(obs)
                    outputs.write_events(zones.update(frame.index, image_size, result.tracks))
                    if renderer is not None:
                        renderer.write(frame.image, result.tracks, config.zones)
                    flush(frame.index - delay)
                    frames_done += 1
                if task is not None:
                    elapsed = time.perf_counter() - started
                    progress.update(task, completed=frames_done, fps=frames_done / elapsed if elapsed else 0.0)
    except KeyboardInterrupt:
        interrupted = True
    except InputError as exc:  # e.g. a corrupt image mid-folder: keep what was done, then report
        error = str(exc)
    finally:
        flush(frames_done - 1)  # a frame interrupted mid-way is not counted, so not written either
        outputs.write_events(zones.close(max(frames_done - 1, 0)))
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
    }
    if error is not None:
        summary["error"] = error
    summary = outputs.close(summary, extra_files={"annotated_mp4": renderer.path} if renderer is not None else {})
    if error is not None:
        raise InputError(f"{error} (results of the first {frames_done} frames kept in {out_dir})")
    return summary
