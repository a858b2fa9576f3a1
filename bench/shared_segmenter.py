"""N cameras under ``maskwatch serve``: one shared segmenter process against one model per camera.

(a) per camera (``service.segmenter: per_camera``): N processes, each with its own
    Mask R-CNN, segmenting its own frames one at a time;
(b) shared (the default for maskrcnn): one ``maskwatch.segmenter_server`` process
    and N camera processes that send their frames through ``RemoteSegmenter``, so
    frames of different cameras share forward passes.

Every camera segments as fast as answers come, for ``--seconds``, after a warm-up.
Same weights (untrained, saved once), score threshold 0 and 50 detections per
image so the mask head does real work. Prints total frames/s of each, the ratio,
the shared segmenter's mean batch, the summed resident memory of all processes,
and on CUDA the GPU memory the models hold.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.procstat import rss_mb  # noqa: E402
from maskwatch.config import SegmenterSection  # noqa: E402
from maskwatch.segmenter_server import RemoteSegmenter, SegmenterLink, SegmenterUnavailable, run_segmenter_process  # noqa: E402
from segmenter.maskrcnn import MaskRCNNConfig  # noqa: E402

# torch is imported only where a model runs: a camera process of the shared mode does not load it, as under serve


def camera(mode: str, config: MaskRCNNConfig | None, link: SegmenterLink | None, frames: list[np.ndarray],
           ready, start, seconds: float, results) -> None:
    """One camera process: warm up, wait for the common start, segment for ``seconds``, report."""
    gpu_mb = 0.0
    if mode == "shared":
        segmenter = RemoteSegmenter(link)
    else:
        from segmenter.maskrcnn import MaskRCNNSegmenter

        segmenter = MaskRCNNSegmenter(config)
    while True:
        try:
            segmenter.segment(frames[:1])
            break
        except SegmenterUnavailable:  # the shared segmenter is still loading its model
            time.sleep(0.2)
    ready.release()
    start.wait()
    done, until = 0, time.perf_counter() + seconds
    while time.perf_counter() < until:
        segmenter.segment([frames[done % len(frames)]])
        done += 1
    if mode != "shared" and segmenter.device.type == "cuda":
        import torch

        gpu_mb = torch.cuda.max_memory_allocated() / 2**20
    results.put({"frames": done, "rss_mb": rss_mb(), "gpu_mb": gpu_mb})
    if isinstance(segmenter, RemoteSegmenter):
        segmenter.close()


def race(mode: str, config: MaskRCNNConfig | None, link: SegmenterLink | None, frames: list[np.ndarray],
         cameras: int, seconds: float) -> list[dict]:
    """Start ``cameras`` camera processes, let them all go at once when every one is warm; their reports."""
    ctx = mp.get_context("spawn")
    ready, start, results = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=camera, args=(mode, config, link, frames[i:] + frames[:i], ready, start, seconds, results))
               for i in range(cameras)]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.acquire()
    start.set()
    reports = [results.get() for _ in workers]
    for worker in workers:
        worker.join(30)
    return reports


def run(mode: str, cameras: int, config: MaskRCNNConfig, frames: list[np.ndarray], seconds: float, tmp: Path) -> dict:
    server, link, status = None, None, tmp / f"{mode}-status.json"
    if mode == "shared":
        link = SegmenterLink(str(tmp / "seg.sock"), timeout_s=600)
        section = SegmenterSection(name="maskrcnn", maskrcnn=config)
        server = mp.get_context("spawn").Process(target=run_segmenter_process,
                                                 args=(section, link, config.batch_size, 0.02, status))
        server.start()
    reports = race(mode, config, link, frames, cameras, seconds)
    out = {"frames": sum(r["frames"] for r in reports), "rss_mb": sum(r["rss_mb"] for r in reports),
           "gpu_mb": sum(r["gpu_mb"] for r in reports)}
    if server is not None:
        time.sleep(0.6)  # one more status write after the last batch
        state = json.loads(status.read_text())
        out.update(rss_mb=out["rss_mb"] + rss_mb(server.pid), gpu_mb=state.get("gpu_memory_mb") or 0.0,
                   mean_batch=state["mean_batch"], batch_sizes=state["batch_sizes"])
        server.terminate()
        server.join(30)
    out["fps"] = out["frames"] / seconds
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--size", default="720p", choices=["720p", "1080p", "smoke"])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--batch-size", type=int, help="segmenter.maskrcnn.batch_size (default: one frame per camera). "
                        "Fewer than the cameras lets one batch compute while the others' answers and frames travel.")
    parser.add_argument("--smoke", action="store_true", help="Tiny CPU run (CI): 2 cameras, smoke size, 3 s.")
    args = parser.parse_args()
    import torch
    from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

    from bench.segmenter_gpu import SIZES, frames_of

    if args.smoke:
        args.cameras, args.size, args.seconds = 2, "smoke", 3.0
    settings = {"score_threshold": 0.0, "max_detections": 50, "batch_size": args.batch_size or max(args.cameras, 1)}
    if args.size == "smoke":
        settings.update(min_size=96, max_size=128)
    with tempfile.TemporaryDirectory(prefix="mw-bench-") as folder:
        tmp = Path(folder)
        torch.manual_seed(0)
        weights = tmp / "weights.pth"
        torch.save(maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None).state_dict(), weights)
        config = MaskRCNNConfig(weights=str(weights), **settings)
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
        print(f"device: {device}; {args.cameras} cameras, {args.size}, batch size {config.batch_size}, {args.seconds:.0f} s each; "
              "Mask R-CNN v2, 50 detections per image")
        frames = frames_of(SIZES[args.size], 8)
        own = run("per_camera", args.cameras, config, frames, args.seconds, tmp)
        print(f"per camera: {own['fps']:7.2f} frames/s in total, memory {own['rss_mb']:.0f} MB resident, "
              f"{own['gpu_mb']:.0f} MB GPU peak")
        shared = run("shared", args.cameras, config, frames, args.seconds, tmp)
        print(f"shared:     {shared['fps']:7.2f} frames/s in total ({shared['fps'] / own['fps']:.2f}x per camera), "
              f"mean batch {shared['mean_batch']:.2f}, memory {shared['rss_mb']:.0f} MB resident, {shared['gpu_mb']:.0f} MB GPU peak")


if __name__ == "__main__":
    main()
