"""``maskwatch`` command line: run, track, eval, demo.

Bad input (files, config, weights) is reported as one line on stderr with exit
code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from segmenter.errors import InputError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Segment, track and count objects in video.",
)
console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}


class SegmenterChoice(str, Enum):
    maskrcnn = "maskrcnn"
    motion = "motion"
    replay = "replay"


class EvalFormat(str, Enum):
    mots20 = "mots20"
    kitti = "kitti"


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors.")) -> None:
    _state["debug"] = debug


def print_summary(summary: dict) -> None:
    """The operator's view of a finished run: what was tracked, counted and where it is."""
    state = "interrupted" if summary.get("interrupted") else "done"
    console.print(f"[bold]{state}[/]: {summary['frames']} frames of {summary['source']} at {summary['processing_fps']} frames/s")
    console.print(f"objects tracked: {summary['objects_tracked']}")
    for name, count in summary["counts_per_class"].items():
        console.print(f"  {name}: {count}")
    console.print("zone events: " + (", ".join(f"{k}={v}" for k, v in summary["zone_events"].items()) or "none"))
    console.print("outputs:")
    for name, path in summary["files"].items():
        console.print(f"  {name}: {path}")


@app.command()
def run(
    source: Path = typer.Argument(..., help="Video file or folder of images."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Site YAML config."),
    segmenter: Optional[SegmenterChoice] = typer.Option(None, "--segmenter", help="Override segmenter.name."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Mask R-CNN checkpoint (.pth) or DEFAULT."),
    detections: Optional[Path] = typer.Option(None, "--detections", help="Masks to replay (MOTS txt or COCO JSON); implies --segmenter replay."),
    out: Path = typer.Option(Path("out"), "--out", "-o", help="Output folder."),
    render: bool = typer.Option(False, "--render", help="Also write annotated.mp4."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", min=1, help="Stop after this many frames."),
) -> None:
    """Segment, track and analyse a video file or image folder."""
    from maskwatch.config import load_config
    from maskwatch.pipeline import run_pipeline

    cfg = load_config(config)
    if segmenter is not None:
        cfg.segmenter.name = segmenter.value
    if weights is not None:
        cfg.segmenter.maskrcnn.weights = weights
    if detections is not None:
        from segmenter.replay import ReplayConfig

        first = (cfg.segmenter.replay.first_frame if cfg.segmenter.replay else 1)
        cfg.segmenter.name, cfg.segmenter.replay = "replay", ReplayConfig(path=str(detections), first_frame=first)
    summary = run_pipeline(source, cfg, out, render=render, max_frames=max_frames, console=err_console)
    print_summary(summary)


@app.command()
def track(
    detections: Path = typer.Argument(..., help="MOTS detection txt: frame class_id score img_h img_w rle."),
    out: Path = typer.Option(..., "--out", "-o", help="MOTS result txt to write."),
    fps: float = typer.Option(30.0, "--fps", min=0.1, help="Frame rate of the sequence (durations in the config are seconds)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML with tracker parameters (a 'tracker:' section or bare keys)."),
) -> None:
    """Track precomputed masks and write MOTS results."""
    from maskwatch.offline import load_tracker_config, track_file

    stats = track_file(detections, out, load_tracker_config(config), fps)
    console.print(f"{stats['frames']} frames, {stats['tracks']} tracks → {out}")


@app.command("eval")
def evaluate(
    gt: Path = typer.Option(..., "--gt", help="Ground truth MOTS txt."),
    pred: Path = typer.Option(..., "--pred", help="Tracker output MOTS txt."),
    fmt: EvalFormat = typer.Option(EvalFormat.mots20, "--format", help="mots20 (frames from 1) or kitti (frames from 0)."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Score MOTS results with TrackEval (HOTA, DetA, AssA, MOTSA, IDF1, ID switches)."""
    from tracker.evaluate import evaluate_mots

    metrics = evaluate_mots(gt, pred, fmt.value)
    if as_json:
        console.print_json(json.dumps(metrics))
        return
    for key, value in metrics.items():
        console.print(f"{key:>16}: {value:.3f}" if isinstance(value, float) else f"{key:>16}: {value}")


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", "-o", help="Output folder."),
    render: bool = typer.Option(True, "--render/--no-render", help="Write annotated.mp4."),
) -> None:
    """Render the synthetic belt scene and run the whole pipeline on it (offline, no weights)."""
    from maskwatch.demo import run_demo

    summary, truth = run_demo(out, render=render, console=err_console)
    print_summary(summary)
    console.print("ground truth per class: " + ", ".join(f"{k}={v}" for k, v in truth.items()))


def main() -> None:
    """Console entry point: one-line errors with exit code 2 unless --debug."""
    from pydantic import ValidationError

    try:
        app()  # standalone: usage errors are reported by typer itself, exit code 2
    except (InputError, ValidationError, OSError) as exc:
        if _state["debug"]:
            raise
        err_console.print(f"maskwatch: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
