"""Mask R-CNN throughput: the naive reference loop beside maskwatch's segmenter, same frames, same weights.

(a) reference: torchvision's model called one frame at a time in fp32, masks pasted
    the default way (full-frame probabilities per instance) and moved to the CPU;
(b) maskwatch: ``MaskRCNNSegmenter`` (batched, fp16 autocast and channels_last
    on CUDA, frames uploaded as uint8 from pinned memory, each mask resized only
    into its own box and thresholded on the device, one packed copy to the host).

Untrained weights with score threshold 0 and a fixed 50 detections per image, so
the mask head and the pasting do real work without COCO weights. Prints frames/s
per input size and batch size, the ratio, and peak GPU memory. On a CPU the same
script runs at small sizes (``--smoke``) so CI proves it works.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from segmenter.maskrcnn import MaskRCNNConfig, MaskRCNNSegmenter, _upload

SIZES = {"720p": (720, 1280), "1080p": (1080, 1920), "smoke": (96, 128)}


def frames_of(size: tuple[int, int], count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    frames = []
    for i in range(count):
        frame = rng.integers(0, 80, (*size, 3), dtype=np.uint8)
        h, w = size
        frame[h // 4 : h // 2, (i * 7) % (w // 2) : (i * 7) % (w // 2) + w // 4] = (40, 200, 40)
        frames.append(frame)
    return frames


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reference(model: torch.nn.Module, frames: list[np.ndarray], device: torch.device) -> float:
    """Frames/s of the naive loop: one fp32 frame per call, full pasted masks to the host."""
    sync(device)
    started = time.perf_counter()
    with torch.inference_mode():
        for frame in frames:
            out = model(_upload([frame], device))[0]
            _ = out["masks"].cpu(), out["boxes"].cpu(), out["scores"].cpu(), out["labels"].cpu()
    sync(device)
    return len(frames) / (time.perf_counter() - started)


def maskwatch(segmenter: MaskRCNNSegmenter, frames: list[np.ndarray]) -> tuple[float, int]:
    """Frames/s of ``segmenter.segment`` and the detections it returned."""
    sync(segmenter.device)
    started = time.perf_counter()
    detections = segmenter.segment(frames)
    sync(segmenter.device)
    return len(frames) / (time.perf_counter() - started), sum(len(d) for d in detections)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["720p", "1080p"], choices=list(SIZES))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 8, 16])
    parser.add_argument("--frames", type=int, default=32, help="Frames timed per case (after one warm-up batch).")
    parser.add_argument("--compile", action="store_true", help="maskwatch path with segmenter.maskrcnn.compile (torch.compile).")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp16", "bf16", "fp32"],
                        help="segmenter.maskrcnn.precision of maskwatch's path (auto: fp16 on CUDA, fp32 on the CPU).")
    parser.add_argument("--smoke", action="store_true", help="Tiny CPU run (CI): smoke size, batch 2, 2 frames.")
    args = parser.parse_args()
    if args.smoke:
        args.sizes, args.batches, args.frames = ["smoke"], [2], 2

    torch.manual_seed(0)
    settings = {"weights": "none", "score_threshold": 0.0, "max_detections": 50}
    if args.smoke:
        settings.update(min_size=96, max_size=128)
    segmenter = MaskRCNNSegmenter(MaskRCNNConfig(**settings))
    runner = segmenter
    if args.compile or args.precision != "auto":  # the reference keeps the plain model; same initial weights
        torch.manual_seed(0)
        runner = MaskRCNNSegmenter(MaskRCNNConfig(**settings, compile=args.compile, precision=args.precision))
    device = segmenter.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}; Mask R-CNN v2, untrained, 50 detections per image")
    for size_name in args.sizes:
        frames = frames_of(SIZES[size_name], args.frames)
        if not args.smoke:  # warm-ups (cuDNN autotuning, allocator); the smoke run only proves the script works
            reference(segmenter.model, frames[:1], device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        ref_fps = reference(segmenter.model, frames, device)
        ref_mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
        print(f"{size_name}: reference loop (fp32, batch 1, full masks to host): {ref_fps:7.2f} frames/s, "
              f"peak GPU memory {ref_mem:.2f} GiB")
        for batch in args.batches:
            runner.config.batch_size = batch
            if not args.smoke:
                maskwatch(runner, frames[:batch])  # warm-up at this batch size (and compilation)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            fps, found = maskwatch(runner, frames)
            mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
            print(f"{size_name}: maskwatch{' compiled' if args.compile else ''}{'' if args.precision == 'auto' else ' ' + args.precision} batch {batch:2d}: {fps:7.2f} frames/s ({fps / ref_fps:4.2f}x the reference), "
                  f"peak GPU memory {mem:.2f} GiB, {found / len(frames):.0f} masks per frame")


if __name__ == "__main__":
    main()
