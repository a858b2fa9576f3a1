"""What the shared segmenter's transport costs, without a model: how close N cameras keep a "GPU" busy.

The real ``SegmenterServer`` and ``RemoteSegmenter`` (Unix socket, shared-memory
frames, pickled answers) serve a stand-in segmenter that answers each batch
after a fixed latency, like a GPU forward pass, with canned detections the size
of Mask R-CNN's at 720p (50 masks per frame, about 2.4 MB of mask pixels). With
the stand-in always busy the cameras together would get ``batch / latency``
frames/s; the script prints what they got and that efficiency. What is lost is
the work between forward passes: frames handed over, answers pickled, sent and
unpickled. A GPU is not needed, so this runs anywhere, in a few seconds per case.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.shared_segmenter import race  # noqa: E402
from maskwatch.segmenter_server import SegmenterLink, SegmenterServer  # noqa: E402
from segmenter.detections import Detections  # noqa: E402
from segmenter.masks import CropMask  # noqa: E402

SIZES = {"720p": (720, 1280), "1080p": (1080, 1920), "smoke": (96, 128)}


def canned_detections(size: tuple[int, int], count: int = 50, seed: int = 0) -> Detections:
    """``count`` ragged masks, at 720p about 2.6 million crop pixels in all (the untrained Mask R-CNN gave 2.4 million)."""
    rng = np.random.default_rng(seed)
    h, w = size
    masks, boxes = [], []
    for _ in range(count):
        mh, mw = int(rng.integers(h // 10, h * 36 // 100)), int(rng.integers(w // 10, w * 36 // 100))
        x0, y0 = int(rng.integers(0, w - mw)), int(rng.integers(0, h - mh))
        masks.append(CropMask(rng.random((mh, mw)) > 0.4, x0, y0))
        boxes.append([x0, y0, x0 + mw, y0 + mh])
    return Detections(np.array(boxes, np.float32), masks, np.ones(count, int), rng.random(count).astype(np.float32),
                      np.array(["thing"] * count, object), size)


class FixedLatencySegmenter:
    """Answers ``ceil(len(frames) / batch_size)`` forward passes of ``latency_s`` each with the same detections."""

    def __init__(self, detections: Detections, latency_s: float, batch_size: int) -> None:
        self.detections, self.latency_s, self.batch_size = detections, latency_s, batch_size

    def segment(self, frames: list[np.ndarray]) -> list[Detections]:
        time.sleep(self.latency_s * -(-len(frames) // self.batch_size))
        return [self.detections for _ in frames]


def serve(link: SegmenterLink, size: tuple[int, int], latency_s: float, batch_size: int, stop) -> None:
    server = SegmenterServer(FixedLatencySegmenter(canned_detections(size), latency_s, batch_size), link,
                             batch_size, batch_wait_s=0.02)
    while not stop.is_set():
        server.serve_round(0.05)
    server.close()


def run(cameras: int, batch_size: int, size: tuple[int, int], latency_s: float, seconds: float) -> float:
    """Frames/s of all cameras together (the camera processes of ``bench/shared_segmenter.py``, shared mode)."""
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="mw-transport-") as folder:
        link = SegmenterLink(str(Path(folder) / "seg.sock"), timeout_s=60)
        server = threading.Thread(target=serve, args=(link, size, latency_s, batch_size, stop))
        server.start()
        frame = np.random.default_rng(1).integers(0, 255, (*size, 3), dtype=np.uint8)
        try:
            reports = race("shared", None, link, [frame], cameras, seconds)
        finally:
            stop.set()
            server.join(30)
    return sum(r["frames"] for r in reports) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="720p", choices=list(SIZES))
    parser.add_argument("--latency-ms", type=float, default=70.0, help="One forward pass (70 ms: Mask R-CNN v2, 720p, "
                        "batch 4 on an H100).")
    parser.add_argument("--cases", nargs="+", default=["4x4", "8x4"], help="CAMERASxBATCH, e.g. 4x4 8x4.")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--smoke", action="store_true", help="Tiny run (CI): smoke size, 2 cameras, 1 s.")
    args = parser.parse_args()
    if args.smoke:
        args.size, args.cases, args.seconds = "smoke", ["2x2"], 1.0
    size = SIZES[args.size]
    print(f"stand-in segmenter: {args.latency_ms:.0f} ms per batch; {args.size}, 50 masks per frame "
          f"({sum(m.crop.size for m in canned_detections(size).masks) / 1e6:.1f} MB of mask pixels)")
    for case in args.cases:
        cameras, batch = map(int, case.split("x"))
        ideal = batch / (args.latency_ms / 1000)
        fps = run(cameras, batch, size, args.latency_ms / 1000, args.seconds)
        print(f"{cameras} cameras, batch {batch}: {fps:7.2f} frames/s, {fps / ideal:.0%} of the stand-in kept busy "
              f"({ideal:.1f} frames/s)")


if __name__ == "__main__":
    main()
