"""Imports follow the data flow: each package imports only itself and what lies upstream of it."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# upstream first; a package may import those before it, never those after it
FLOW = ["common", "segmenter", "tracker", "analytics", "storage", "delivery", "dashboard", "maskwatch"]


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """(top-level package, line) of every import in ``path``, function-level imports included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
    return found


def violations() -> list[str]:
    bad = []
    for rank, package in enumerate(FLOW):
        for path in sorted((ROOT / package).rglob("*.py")):
            for imported, line in imported_packages(path):
                if imported in FLOW and FLOW.index(imported) > rank:
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {imported} (downstream of {package})")
    return bad


def test_no_import_goes_against_the_data_flow() -> None:
    assert violations() == []


def test_the_walk_finds_an_import_against_the_flow(tmp_path, monkeypatch) -> None:
    """The check itself: a tracker module importing analytics is reported."""
    fake = tmp_path / "tracker"
    fake.mkdir()
    (fake / "bad.py").write_text("def f():\n    from analytics.zones import ZoneMonitor\n")
    for package in FLOW:
        if package != "tracker":
            (tmp_path / package).mkdir()
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert violations() == ["tracker/bad.py:2 imports analytics (downstream of tracker)"]
