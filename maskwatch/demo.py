"""``make demo`` / ``maskwatch demo [--scene belt|pills]``: render a synthetic scene and run the whole pipeline on it."""

from __future__ import annotations

from pathlib import Path

import yaml
from rich.console import Console

from maskwatch.config import parse_config
from maskwatch.pipeline import run_pipeline
from maskwatch.synthetic import demo_config, render_scene, truth_counts


def run_demo(
    out: Path, render: bool = True, console: Console | None = None, scene: str = "belt", frames: int | None = None
) -> tuple[dict, dict[str, int]]:
    """Returns the run summary and the scene's true object count per class (``frames``: only the scene's start)."""
    out.mkdir(parents=True, exist_ok=True)
    video = out / "scene.mp4"
    truth = render_scene(video, frames=frames, scene=scene)
    truth.write_mots(out / "scene.gt.mots.txt")
    config = demo_config(scene)
    (out / "site.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    summary = run_pipeline(video, parse_config(config, "demo config"), out, render=render, console=console)
    return summary, truth_counts(truth, scene)
