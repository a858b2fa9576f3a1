"""Soak of the whole service: ``maskwatch serve`` on a looped clip for N minutes.

Every 10 s prints the resident memory of the service and of its camera workers
(from /proc) and the camera's lag and fps from ``/healthz``; at the end, the
first minute against the last, so "flat" can be read off. The clip is the
synthetic belt scene (motion segmenter, zones, lines, sizes, alarms, store all
on), or a video/URL given as the argument. ``--shared N`` runs N cameras of that
clip through the shared Mask R-CNN segmenter process instead (untrained weights,
small input so it keeps up on a CPU): its memory is in "workers MB".

Usage: python bench/soak_service.py [SOURCE] [--minutes 10] [--shared N]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml
from procstat import children, rss_mb  # bench/procstat.py: scripts run from bench/

from maskwatch.synthetic import demo_config, render_scene


def shared_maskrcnn(folder: Path) -> dict:
    """Mask R-CNN settings with untrained weights saved to ``folder``: the shared segmenter's work, on any machine."""
    import torch
    from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

    torch.manual_seed(0)
    weights = folder / "model.pth"
    torch.save({"model": maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=3).state_dict(),
                "class_names": ["bottle", "person"], "version": "v2"}, weights)
    return {"name": "maskrcnn", "maskrcnn": {"weights": str(weights), "min_size": 96, "max_size": 160,
                                             "score_threshold": 0.3, "max_detections": 10, "batch_size": 4}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", help="Video file or camera URL (default: the synthetic scene, looped).")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--shared", type=int, metavar="N", help="N cameras through the shared Mask R-CNN segmenter.")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="maskwatch-soak-"))
    source = args.source or str(folder / "belt.mp4")
    if args.source is None:
        render_scene(source)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = demo_config()
    camera = {**{k: v for k, v in demo["camera"].items() if k != "name"}, "name": "soak", "source": source, "loop": True, "fps": 10}
    config = {"segmenter": demo["segmenter"], "tracker": demo["tracker"], "rules": demo["rules"], "alarms": demo["alarms"],
              "cameras": [camera], "service": {"listen": f"127.0.0.1:{port}"}}
    if args.shared:
        config.update(segmenter=shared_maskrcnn(folder), rules={}, alarms=[],
                      cameras=[{**camera, "name": "soak" if i == 0 else f"soak-{i}"} for i in range(args.shared)])
    (folder / "site.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-m", "maskwatch", "serve", "--config", str(folder / "site.yaml"), "--out",
                             str(folder / "out")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples: list[tuple[float, float, float, float]] = []  # (t, service MB, workers MB, lag s)
    started = time.monotonic()
    print(f"soak: {args.minutes} min of {source} (looped); output in {folder}")
    print("   t(s)  service MB  workers MB   lag s  fps_out  frames")
    try:
        while time.monotonic() - started < args.minutes * 60:
            time.sleep(10)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
                    state = json.loads(response.read())["cameras"]["soak"]
            except OSError:
                continue
            t = time.monotonic() - started
            workers = sum(rss_mb(pid) for pid in children(proc.pid))
            lag = state.get("lag_s") or 0.0
            samples.append((t, rss_mb(proc.pid), workers, lag))
            print(f"{t:7.0f}  {samples[-1][1]:10.1f}  {workers:10.1f}  {lag:6.3f}  {state.get('fps_out') or 0:7.1f}  {state.get('frames')}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    first = [s for s in samples if s[0] <= 60] or samples[:1]
    last = [s for s in samples if s[0] >= samples[-1][0] - 60] if samples else []
    if first and last:
        for name, index in (("service MB", 1), ("workers MB", 2), ("lag s", 3)):
            print(f"{name}: first minute {statistics.mean(s[index] for s in first):.2f}, "
                  f"last minute {statistics.mean(s[index] for s in last):.2f}")
    print(f"exit code {proc.returncode}; pid {os.getpid()}")


if __name__ == "__main__":
    main()
