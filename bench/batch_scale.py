"""``maskwatch batch`` on one Ray node against two, and against plain ``run`` of each video one after another.

Everything runs on this machine: the videos are the demo scene (motion
segmenter), the clusters are local Ray clusters on 127.0.0.1 (one CPU per node,
one CPU per task; :mod:`tests.ray_cluster`), each batch writes a fresh SQLite store.

The ideal of a batch is the time its busiest node would take running its share
of the videos plainly (``run_pipeline`` in this process, one after another):
the sum of the plain times of the videos that node ran, the largest over nodes.
Ray's overhead is the batch's wall time less that ideal (joining the cluster,
starting and importing workers, shipping tasks, waiting on results). Target:
two nodes within 1.3x of their ideal. Starting the clusters is not counted.

Usage: python bench/batch_scale.py [--videos 4] [--frames 600] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.ray_cluster: the same local cluster the tests use

from rich.console import Console  # noqa: E402
from sqlalchemy import select  # noqa: E402

from maskwatch.config import AppConfig  # noqa: E402
from maskwatch.pipeline import run_pipeline  # noqa: E402
from maskwatch.synthetic import demo_config, render_scene  # noqa: E402

TARGET = 1.3


def plain_runs(videos: list[Path], config: AppConfig, folder: Path) -> dict[Path, float]:
    """Wall seconds of ``run`` (the same engine, in this process) of each video, one after another."""
    times = {}
    for video in videos:
        cfg = config.model_copy(deep=True)
        cfg.store.url = f"sqlite:///{folder / 'plain.db'}"
        started = time.perf_counter()
        run_pipeline(video, cfg, folder / "plain" / video.stem, console=Console(quiet=True), show_progress=False)
        times[video] = time.perf_counter() - started
    return times


def batch_on(nodes: int, videos: list[Path], config: AppConfig, folder: Path, plain: dict[Path, float]) -> dict:
    """Start a ``nodes``-node local cluster, time ``run_batch`` of every video on it; its share per node from the store."""
    from maskwatch.batch import run_batch
    from storage.engine import make_engine
    from storage.schema import runs
    from tests.ray_cluster import local_cluster

    out = folder / f"batch{nodes}"
    started = time.perf_counter()
    with local_cluster(nodes=nodes) as cluster:
        startup = time.perf_counter() - started
        started = time.perf_counter()
        result = run_batch(videos, config, out, cluster.address, console=Console(quiet=True))
        wall = time.perf_counter() - started
    if result.failed:
        raise SystemExit(f"batch on {nodes} node(s) failed: {result.failed}")
    engine = make_engine(f"sqlite:///{out / 'maskwatch.db'}")
    with engine.connect() as conn:
        ran = {Path(r.source): r.node for r in conn.execute(select(runs.c.source, runs.c.node))}
    engine.dispose()
    shares: dict[str, list[Path]] = {}
    for video, node in ran.items():
        shares.setdefault(node, []).append(video)
    ideal = max(sum(plain[v] for v in share) for share in shares.values())
    inside: dict[str, float] = {}  # seconds run_pipeline took inside the tasks, per node
    for line in result.finished:
        inside[line["node"]] = inside.get(line["node"], 0.0) + line["elapsed_s"]
    return {"wall": wall, "ideal": ideal, "startup": startup, "shares": sorted(len(s) for s in shares.values()),
            "inside": max(inside.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=4, help="Videos in the batch.")
    parser.add_argument("--frames", type=int, default=600, help="Frames of each video (10 fps, 640x360).")
    parser.add_argument("--smoke", action="store_true", help="2 videos of 40 frames: the script works, figures meaningless.")
    args = parser.parse_args()
    if args.smoke:
        args.videos, args.frames = 2, 40
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only, before ray is imported
    try:
        import ray  # noqa: F401
    except ImportError:
        raise SystemExit("Ray is not installed: pip install 'maskwatch[cluster]'") from None

    config = AppConfig.model_validate(demo_config())
    with tempfile.TemporaryDirectory(prefix="batch_scale_") as tmp:
        folder = Path(tmp)
        videos = [folder / f"belt{seed}.mp4" for seed in range(args.videos)]
        for seed, video in enumerate(videos):
            render_scene(video, seed=seed, frames=args.frames)
        load = os.getloadavg()[0]
        print(f"{args.videos} videos x {args.frames} frames (demo scene, motion segmenter), SQLite store; "
              f"{os.cpu_count()} cores, load average {load:.1f} at start")
        plain = plain_runs(videos, config, folder)
        serial = sum(plain.values())
        print(f"plain run, one after another: {serial:6.1f} s  ({', '.join(f'{t:.1f}' for t in plain.values())} s each)")
        results = {}
        for nodes in (1, 2):
            r = results[nodes] = batch_on(nodes, videos, config, folder, plain)
            ratio = r["wall"] / r["ideal"]
            verdict = f"  target <= {TARGET}x: {'met' if ratio <= TARGET else 'MISSED'}" if nodes == 2 else ""
            print(f"batch on {nodes} node{'s' if nodes > 1 else ' '}:           {r['wall']:6.1f} s  ideal {r['ideal']:.1f} s "
                  f"(busiest node's share run plainly; videos per node {r['shares']}), Ray adds {r['wall'] - r['ideal']:.1f} s, "
                  f"{ratio:.2f}x ideal{verdict}")
            print(f"    of which the busiest node's tasks processed {r['inside']:.1f} s (run_pipeline inside the task); "
                  f"joining, workers and scheduling {r['wall'] - r['inside']:.1f} s  [cluster start {r['startup']:.1f} s, "
                  "not counted]")
        print(f"speed-up of 2 nodes: {results[1]['wall'] / results[2]['wall']:.2f}x over 1 node, "
              f"{serial / results[2]['wall']:.2f}x over plain runs one after another")


if __name__ == "__main__":
    main()
