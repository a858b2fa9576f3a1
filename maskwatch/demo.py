"""``make demo`` / ``maskwatch demo``: render the synthetic scene and run the whole pipeline on it."""

from __future__ import annotations

from pathlib import Path

import yaml
from rich.console import Console

from maskwatch.config import parse_config
from maskwatch.pipeline import run_pipeline
from maskwatch.synthetic import demo_config, render_scene


def run_demo(out: Path, render: bool = True, console: Console | None = None) -> tuple[dict, dict[str, int]]:
    """Returns the run summary and the scene's true object count per class."""
    out.mkdir(parents=True, exist_ok=True)
    video = out / "scene.mp4"
    truth = render_scene(video)
    truth.write_mots(out / "scene.gt.mots.txt")
    (out / "site.yaml").write_text(yaml.safe_dump(demo_config(), sort_keys=False))
    summary = run_pipeline(video, parse_config(demo_config(), "demo config"), out, render=render, console=console)
    return summary, truth.counts_per_class()
