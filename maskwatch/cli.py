"""``maskwatch`` command line: run, batch, serve, dashboard, train, label, track, eval, demo, export, purge, ack.

Bad input (files, config, weights) is reported as one line on stderr with exit
code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import signal
import sys
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

from common import InputError, redact_url

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


class Table(str, Enum):
    tracks = "tracks"
    observations = "observations"
    events = "events"
    alarms = "alarms"
    counts = "counts"


class EvalFormat(str, Enum):
    mots20 = "mots20"
    kitti = "kitti"


@app.callback()
def _root(ctx: typer.Context,
          debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors.")) -> None:
    _state["debug"] = debug
    if ctx.invoked_subcommand not in ("serve", "dashboard"):  # they stop cleanly on SIGTERM; the others die, as ever
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def print_summary(summary: dict) -> None:
    """The operator's view of a finished run: what was tracked, counted and where it is."""
    state = "interrupted" if summary.get("interrupted") else "done"
    console.print(f"[bold]{state}[/]: {summary['frames']} frames of {summary['source']} at {summary['processing_fps']} frames/s")
    console.print(f"objects tracked: {summary['objects_tracked']}")
    for name, count in summary["counts_per_class"].items():
        console.print(f"  {name}: {count}")
    for line, by_class in summary.get("line_counts", {}).items():
        console.print(f"line {line}: " + ", ".join(f"{c} in={v['in']} out={v['out']}" for c, v in by_class.items()))
    console.print("events: " + (", ".join(f"{k}={v}" for k, v in summary["events"].items()) or "none"))
    if summary.get("alarms"):
        console.print(f"alarms: {summary['alarms']}")
    if summary.get("store"):
        console.print(f"store: {summary['store']}")
    console.print("outputs:")
    for name, path in summary["files"].items():
        console.print(f"  {name}: {path}")


@app.command()
def run(
    source: Path | None = typer.Argument(None, help="Video file or folder of images (optional with --detections: masks alone)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="Site YAML config."),
    segmenter: SegmenterChoice | None = typer.Option(None, "--segmenter", help="Override segmenter.name."),
    weights: str | None = typer.Option(None, "--weights", help="Mask R-CNN checkpoint (.pth) or DEFAULT."),
    detections: Path | None = typer.Option(None, "--detections", help="Masks to replay (MOTS txt or COCO JSON); implies --segmenter replay."),
    out: Path = typer.Option(Path("out"), "--out", "-o", help="Output folder."),
    render: bool = typer.Option(False, "--render", help="Also write annotated.mp4."),
    max_frames: int | None = typer.Option(None, "--max-frames", min=1, help="Stop after this many frames."),
    fps: float | None = typer.Option(None, "--fps", min=0.01, help="Frame rate of an image folder or of masks replayed alone "
                                     "(default: seqinfo.ini beside the images, else 10); a video's frames keep their own timestamps."),
) -> None:
    """Segment, track and analyse a video file, an image folder, or replayed masks."""
    from maskwatch.config import load_config
    from maskwatch.pipeline import run_pipeline

    cfg = load_config(config)
    if segmenter is not None:
        cfg.segmenter.name = segmenter.value
    if weights is not None:
        cfg.segmenter.maskrcnn.weights = weights
    if detections is not None:  # every replay key of the config holds; only the path is the option's
        from segmenter.replay import ReplayConfig

        cfg.segmenter.name = "replay"
        cfg.segmenter.replay = (cfg.segmenter.replay or ReplayConfig()).model_copy(update={"path": str(detections)})
    summary = run_pipeline(source, cfg, out, render=render, max_frames=max_frames, fps=fps, console=err_console)
    print_summary(summary)


@app.command()
def batch(
    sources: list[str] = typer.Argument(..., help="Videos or image folders, or glob patterns such as 'archive/**/*.mp4'."),
    config: Path | None = typer.Option(None, "--config", "-c", help="Site YAML config (its store: PostgreSQL for a cluster of machines)."),
    ray_address: str = typer.Option("auto", "--ray", help="auto: start or join a Ray on this machine; HOST:PORT: join that cluster's head."),
    out: Path = typer.Option(Path("batch-out"), "--out", "-o", help="Folder for each video's files (and the default SQLite store); shared by the nodes."),
    retries: int = typer.Option(2, "--retries", min=0, help="Tries again for a video whose worker, node or store failed."),
    cpus_per_task: float = typer.Option(1.0, "--cpus-per-task", min=0.01, help="Ray CPUs each video's task takes."),
    gpus_per_task: float = typer.Option(0.0, "--gpus-per-task", min=0, help="Ray GPUs each video's task takes (Mask R-CNN)."),
) -> None:
    """Run many videos as Ray tasks over a cluster, each through the engine of `run`, into one store; resumable."""
    from maskwatch.batch import expand_sources, run_batch
    from maskwatch.config import load_config

    cfg = load_config(config)
    paths = expand_sources(sources)
    result = run_batch(paths, cfg, out, ray_address, retries=retries, cpus_per_task=cpus_per_task,
                       gpus_per_task=gpus_per_task, console=err_console)
    console.print(f"{len(result.finished)} finished, {len(result.skipped)} skipped (already finished), "
                  f"{len(result.failed)} failed", highlight=False, soft_wrap=True)
    for line in result.finished:
        console.print(f"  run {line['run_id']}: {line['source']} ({line['frames']} frames on {line['node']})",
                      markup=False, highlight=False, soft_wrap=True)
    for source, reason in result.failed:
        console.print(f"  failed: {source}: {reason}", markup=False, highlight=False, soft_wrap=True)
    if result.interrupted:
        raise typer.Exit(130)
    if result.failed:
        raise typer.Exit(1)


@app.command()
def track(
    detections: Path = typer.Argument(..., help="MOTS detection txt: frame class_id score img_h img_w rle."),
    out: Path = typer.Option(..., "--out", "-o", help="MOTS result txt to write."),
    fps: float = typer.Option(10.0, "--fps", min=0.01, help="Frame rate of the sequence (durations in the config are seconds)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="Site YAML (its tracker and segmenter.replay keys) or bare tracker keys."),
) -> None:
    """Track precomputed masks and write MOTS results, numbered as the input numbers its frames."""
    from maskwatch.offline import load_track_config, track_file

    tracker_config, replay = load_track_config(config)
    stats = track_file(detections, out, tracker_config, fps, replay)
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


class DemoScene(str, Enum):
    belt = "belt"
    pills = "pills"


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", "-o", help="Output folder."),
    render: bool = typer.Option(True, "--render/--no-render", help="Write annotated.mp4."),
    scene: DemoScene = typer.Option(DemoScene.belt, "--scene", help="belt: bottles and a person; pills: 124 small "
                                    "touching pills of three kinds (the watershed split at work)."),
) -> None:
    """Render a synthetic scene and run the whole pipeline on it (offline, no weights)."""
    from maskwatch.demo import run_demo

    summary, truth = run_demo(out, render=render, console=err_console, scene=scene.value)
    print_summary(summary)
    console.print("ground truth per class: " + ", ".join(f"{k}={v}" for k, v in truth.items()))
    counted, expected = sum(summary["counts_per_class"].values()), sum(truth.values())
    if expected:
        console.print(f"counted {counted} of {expected} objects (error {abs(counted - expected) / expected:.1%})")


@app.command()
def serve(
    config: Path = typer.Option(..., "--config", "-c", help="Site YAML with a 'cameras:' list."),
    out: Path = typer.Option(Path("serve-out"), "--out", "-o", help="Folder for the store, snapshots and live files."),
    ray: str | None = typer.Option(None, "--ray", metavar="ADDRESS",
                                   help="Run the cameras as actors on the Ray cluster at ADDRESS (auto: a local Ray); "
                                        "needs maskwatch[cluster]."),
) -> None:
    """Run every configured camera continuously, deliver alarms, serve /healthz and /metrics."""
    from common import log_redacted
    from maskwatch.config import load_config
    from maskwatch.serve import serve as run_service

    cfg = load_config(config)
    log_redacted("%(asctime)s %(name)s %(levelname)s %(message)s")
    raise typer.Exit(run_service(cfg, out, ray_address=ray))


@app.command()
def train(
    data: Path = typer.Option(..., "--data", help="COCO instance JSON (or a folder with annotations.json) or a MOTS sequence folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for model.pth, last.pth and metrics.jsonl."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML of training options (see TrainConfig)."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Override epochs."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Override batch_size."),
    weights: str | None = typer.Option(None, "--weights", help="Start from: DEFAULT (COCO), none, or a .pth checkpoint."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pth."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
) -> None:
    """Fine-tune Mask R-CNN on labelled data; the result loads with `maskwatch run --weights OUT/model.pth`."""
    import yaml
    from pydantic import ValidationError

    from maskwatch.config import format_validation_error
    from segmenter.training import TrainConfig, train_command

    if config is not None and not config.is_file():
        raise InputError(f"config file not found: {config}")
    options = yaml.safe_load(config.read_text()) if config is not None else {}
    overrides = {"epochs": epochs, "batch_size": batch_size, "weights": weights, "device": device,
                 "resume": out if resume else None}
    try:
        cfg = TrainConfig.model_validate({**(options or {}), **{k: v for k, v in overrides.items() if v is not None}})
    except ValidationError as exc:
        raise InputError(format_validation_error(exc, str(config or "options"))) from None
    summary = train_command(data, out, cfg, err_console)
    console.print_json(json.dumps(summary))


@app.command()
def label(
    videos: list[Path] = typer.Argument(..., help="Videos or image folders to pick frames from."),
    budget: int = typer.Option(..., "--budget", help="How many frames to pick, across all the videos."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for images/, annotations.json (COCO) and manifest.json."),
    config: Path | None = typer.Option(None, "--config", "-c", help="Site YAML config (segmenter and tracker)."),
    segmenter: SegmenterChoice | None = typer.Option(None, "--segmenter", help="Override segmenter.name."),
    weights: str | None = typer.Option(None, "--weights", help="Mask R-CNN checkpoint (.pth) or DEFAULT."),
    stride: int = typer.Option(1, "--stride", help="Process every N-th frame (long videos)."),
    threshold: float | None = typer.Option(None, "--threshold", help="Decision score that counts as uncertain "
                                           "(default: segmenter.maskrcnn.score_threshold, or tracker.high_score)."),
    rle: bool = typer.Option(False, "--rle", help="Masks as COCO RLE rather than polygons (Label Studio reads polygons only)."),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty --out, replacing a previous set."),
) -> None:
    """Pick the frames most worth labelling and write them pre-labelled as COCO, for `maskwatch train --data OUT`."""
    from maskwatch.config import load_config
    from maskwatch.label import label_command

    cfg = load_config(config)
    if segmenter is not None:
        cfg.segmenter.name = segmenter.value
    if weights is not None:
        cfg.segmenter.maskrcnn.weights = weights
    summary = label_command(videos, budget, out, cfg, stride=stride, rle=rle, force=force, threshold=threshold,
                            console=err_console)
    console.print(f"{summary['images']} frames, {summary['annotations']} pre-labels of {summary['frames_scanned']} "
                  f"frames scanned → {out}", markup=False, highlight=False, soft_wrap=True)
    if summary["classes_without_prelabels"]:
        console.print("classes without pre-labels (label some, or drop them before training): "
                      + ", ".join(summary["classes_without_prelabels"]), markup=False, highlight=False, soft_wrap=True)


OPERATOR_CHROME = ("--client.toolbarMode", "minimal", "--client.showErrorDetails", "none")  # as .streamlit/config.toml


@app.command()
def dashboard(
    config: Path = typer.Option(..., "--config", "-c", help="Site YAML (store, service.live_dir, dashboard.auth)."),
    out: Path = typer.Option(Path("serve-out"), "--out", "-o", help="The folder `maskwatch serve --out` writes to."),
    port: int = typer.Option(8501, "--port", help="Port of the dashboard."),
    address: str = typer.Option("127.0.0.1", "--address", help="Address to listen on (put TLS in front for others)."),
) -> None:
    """Open the operator dashboard (Streamlit) on the store and the service's live files."""
    from dashboard.settings import SettingsError, load_settings
    from maskwatch.pipeline import store_errors
    from storage.engine import open_engine

    try:  # what the app would show on its page instead, reported here: bad config, a store it cannot open
        settings = load_settings(["--config", str(config), "--out", str(out)])
    except SettingsError as exc:
        raise InputError(str(exc)) from None
    with store_errors(settings.store_url):
        open_engine(settings.store_url).dispose()
    app_path = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
    command = [sys.executable, "-m", "streamlit", "run", str(app_path), "--server.port", str(port), "--server.address", address,
               "--server.headless", "true", "--browser.gatherUsageStats", "false", *OPERATOR_CHROME,
               "--", "--config", str(config), "--out", str(out)]
    raise typer.Exit(_run_until_stopped(command))


def _run_until_stopped(command: list[str]) -> int:
    """Run ``command`` (a server), passing SIGTERM and SIGINT on to it; once it has stopped on one, 0.

    Dying at once instead would leave the server running, holding its port.
    """
    import subprocess

    stopping: list[int] = []
    child = None

    def forward(signum: int, _frame: object) -> None:
        stopping.append(signum)
        if child is not None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    child = subprocess.Popen(command)
    if stopping:  # a signal while it was being started
        child.send_signal(stopping[0])
    code = child.wait()
    return 0 if stopping else code


@app.command()
def export(
    table: Table = typer.Argument(..., help="What to export."),
    out: Path = typer.Option(..., "--out", "-o", help="File to write: .csv or .parquet."),
    db: str = typer.Option(..., "--db", help="Store URL, e.g. sqlite:///out/maskwatch.db."),
    since: str | None = typer.Option(None, "--since", help="ISO time or epoch seconds (UTC)."),
    until: str | None = typer.Option(None, "--until", help="ISO time or epoch seconds (UTC)."),
    camera: str | None = typer.Option(None, "--camera", help="Only this camera."),
) -> None:
    """Export tracks, observations, events, alarms or counts over a time range to CSV or Parquet."""
    from storage.export import export_table

    rows = _store_call(db, lambda: export_table(db, table.value, out, since=since, until=until, camera=camera))
    console.print(f"{rows} {table.value} rows → {out}")


@app.command()
def purge(
    db: str = typer.Option(..., "--db", help="Store URL."),
    older_than_days: float = typer.Option(..., "--older-than-days", min=0, help="Delete observations older than this."),
) -> None:
    """Retention: delete old observations; events, alarms, tracks and counts are kept."""
    from storage.store import Store

    def purge_now() -> int:
        with Store(db) as store:
            return store.purge_observations(older_than_days)

    console.print(f"{_store_call(db, purge_now)} observations deleted")


@app.command()
def ack(
    alarm_id: str = typer.Argument(..., help="Alarm id (UUID)."),
    db: str = typer.Option(..., "--db", help="Store URL."),
    user: str = typer.Option(..., "--user", help="Who acknowledges it."),
) -> None:
    """Acknowledge an alarm."""
    from storage.store import Store

    def ack_now() -> bool:
        with Store(db) as store:
            return store.acknowledge(alarm_id, user)

    if not _store_call(db, ack_now):
        raise InputError(f"alarm {alarm_id} not found or already acknowledged")
    console.print(f"alarm {alarm_id} acknowledged by {user}")


def _store_call(url: str, call):
    """Run a store operation, turning database and argument errors into one-line input errors."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).is_file():
            raise InputError(f"store not found: {parsed.database} (no such SQLite file)")
        return call()
    except ArgumentError:
        raise InputError(f"not a database URL: {url!r} (e.g. sqlite:///out/maskwatch.db)") from None
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise InputError(redact_url(f"store {url}: {detail}")) from None
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _exit_quietly(_signum: int, _frame: object) -> None:
    sys.exit(0)


def main() -> None:
    """Console entry point: one-line errors with exit code 2 unless --debug.

    SIGTERM ends the process with 0 until a command takes it over (serve and dashboard stop cleanly on it; see
    ``_root``): nothing has started yet, and the imports before a command runs may take seconds.
    """
    signal.signal(signal.SIGTERM, _exit_quietly)
    from pydantic import ValidationError

    try:
        app()  # standalone: usage errors are reported by typer itself, exit code 2
    except (InputError, ValidationError, OSError) as exc:
        if _state["debug"]:
            raise
        err_console.print(f"maskwatch: error: {redact_url(str(exc))}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
