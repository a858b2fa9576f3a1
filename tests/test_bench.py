"""The benchmark scripts run end to end (tiny sizes, CPU) and print their figures."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_script(*args: str) -> str:
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_segmenter_gpu_bench_runs_on_cpu_at_small_sizes():
    out = run_script("bench/segmenter_gpu.py", "--smoke")
    assert "device: CPU" in out
    assert re.search(r"smoke: reference loop .* [\d.]+ frames/s", out)
    assert len(re.findall(r"smoke: maskwatch batch +2: +[\d.]+ frames/s \([\d.]+x the reference\).*50 masks per frame", out)) == 1


def test_analytics_bench_prints_each_configuration():
    out = run_script("bench/analytics_speed.py", "--frames", "10", "--objects", "10", "--zones", "3")
    for label in ("sizes every frame", "sizes every 5th frame", "zones/lines/counts", "reference: full-frame"):
        assert re.search(re.escape(label) + r".*[\d.]+ ms/frame", out), label


def test_shared_segmenter_bench_compares_both_modes_on_cpu():
    out = run_script("bench/shared_segmenter.py", "--smoke")
    assert "device: CPU" in out and "2 cameras" in out
    assert re.search(r"per camera: +[\d.]+ frames/s in total, memory \d+ MB resident", out)
    shared = re.search(r"shared: +[\d.]+ frames/s in total \([\d.]+x per camera\), mean batch ([\d.]+), memory \d+ MB", out)
    assert shared and 1.0 <= float(shared.group(1)) <= 2.0


def test_transport_bench_keeps_a_stand_in_segmenter_busy():
    out = run_script("bench/segmenter_transport.py", "--smoke")
    busy = re.search(r"2 cameras, batch 2: +[\d.]+ frames/s, (\d+)% of the stand-in kept busy", out)
    assert busy and 0 < int(busy.group(1)) <= 105, out  # a few percent over: the stand-in's sleep is not exact


def test_track_io_bench_times_track_beside_its_references():
    out = run_script("bench/track_io.py", "--smoke")
    assert "synthetic ellipses at 1920x1080: 20 frames, 10.0 masks per frame" in out
    assert re.search(r"^ +1 +\d+ +[\d.]+ +[\d.]+ +[\d.]+x$", out, re.MULTILINE), out
    assert re.search(r"maskwatch track: median [\d.]+ frames/s", out)
