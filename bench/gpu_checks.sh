#!/usr/bin/env bash
# The GPU checks of the segmenter in one run, for a lent CUDA machine whose device time is short:
# the CUDA tests (copy stream, pinned frames, staged forward, shared segmenter), then the GPU benchmarks
# whose figures go into bench/RESULTS.md. Each step's output is also written to OUT/<step>.txt.
#
# About 6 minutes on an H100 (half of it the two shared-segmenter runs), so give the device call 8.
# Usage: bash bench/gpu_checks.sh [OUT]     (OUT defaults to $OUT, else gpu-out)
# Needs the project's dependencies importable (pip install -e '.[test]', or PYTHONPATH=. with them installed).
# Without CUDA the tests skip their CUDA cases and the benchmarks run their small CPU sizes, so the
# script itself can be checked on any machine before device time is spent on it.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu-out}}
mkdir -p "$out"
py=${PYTHON:-python}
status=0

step() { # step NAME COMMAND...: run it, keep its output, remember a failure and go on to the next step
    local name=$1
    shift
    echo "== $name: $*"
    "$@" 2>&1 | tee "$out/$name.txt"
    local rc=${PIPESTATUS[0]}
    [ "$rc" = 0 ] || { echo "== $name failed (exit $rc)"; status=1; }
}

cuda=$($py -c 'import torch; print(int(torch.cuda.is_available()))') || exit 1
step environment sh -c "nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo 'no nvidia-smi'; \
    $py -c 'import torch, torchvision; print(\"torch\", torch.__version__, \"torchvision\", torchvision.__version__, \"cuda\", torch.version.cuda)'"
step tests $py -m pytest -q -p no:cacheprovider tests/test_maskrcnn.py tests/test_segmenter_server.py
# maskwatch run end to end with Mask R-CNN: frames decoded into the segmenter's (pinned, on CUDA) buffers, two
# batches per segment call; untrained weights with threshold 0, so every frame carries 20 masks to track
step pipeline $py -c "
import json, subprocess, sys, tempfile, yaml
from pathlib import Path
from maskwatch.synthetic import render_scene
tmp = Path(tempfile.mkdtemp())
render_scene(tmp / 'scene.mp4', frames=60)
config = {'segmenter': {'name': 'maskrcnn', 'maskrcnn': {'weights': 'none', 'score_threshold': 0.0, 'max_detections': 20,
          'batch_size': 4, 'min_size': 360, 'max_size': 640}}}
(tmp / 'site.yaml').write_text(yaml.safe_dump(config))
subprocess.run([sys.executable, '-m', 'maskwatch', 'run', str(tmp / 'scene.mp4'), '-c', str(tmp / 'site.yaml'),
                '-o', str(tmp / 'out')], check=True)
print(sorted(p.name for p in (tmp / 'out').iterdir()))
"
if [ "$cuda" = 1 ]; then
    step segmenter_gpu $py bench/segmenter_gpu.py --sizes 720p 1080p --batches 1 4 8 16
    step segmenter_gpu_bf16 $py bench/segmenter_gpu.py --sizes 720p --batches 8 --precision bf16
    step shared_segmenter $py bench/shared_segmenter.py --cameras 4 --size 720p --seconds 20
    step shared_segmenter_8 $py bench/shared_segmenter.py --cameras 8 --batch-size 4 --size 720p --seconds 15
else
    step segmenter_gpu $py bench/segmenter_gpu.py --smoke
    step shared_segmenter $py bench/shared_segmenter.py --smoke
fi
exit $status
