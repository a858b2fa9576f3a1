"""``maskwatch batch`` on a real 2-node Ray cluster on this machine: spread, one store, resumable, failures listed.

Every command runs as the operator would run it (a ``python -m maskwatch``
subprocess joining the cluster by its address); the videos are the demo scene,
40 frames each. The cluster starts once for the module (:mod:`tests.ray_cluster`).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from storage.schema import runs, tracks
from tests.conftest import PG_TEST_URL
from tests.ray_cluster import ray_cluster, require_ray  # noqa: F401  (ray_cluster: the module's cluster fixture)

VIDEOS = 4
FRAMES = 40


def maskwatch(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "maskwatch", *args], capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def store_rows(url: str, table) -> list:
    from storage.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(table)))
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four short demo-scene videos (different seeds), a corrupt one, and the demo's site config."""
    from maskwatch.synthetic import demo_config, render_scene

    folder = tmp_path_factory.mktemp("batch")
    for seed in range(VIDEOS):
        render_scene(folder / f"belt{seed}.mp4", seed=seed, frames=FRAMES)
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    (folder / "site.yaml").write_text(yaml.safe_dump(demo_config()))
    return folder


@pytest.fixture(scope="module")
def cluster_store(scene: Path):
    """A fresh PostgreSQL database (what machines of a cluster share); SQLite in the scene folder when none is reachable."""
    from sqlalchemy import create_engine, make_url, text
    from sqlalchemy.exc import OperationalError

    name = f"mw_batch_{os.urandom(6).hex()}"
    try:
        admin = create_engine(PG_TEST_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except (ImportError, OperationalError):
        yield f"sqlite:///{scene / 'cluster.db'}"
        return
    yield make_url(PG_TEST_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def first_batch(ray_cluster, scene: Path, cluster_store: str):  # noqa: F811
    """``maskwatch batch 'belt*.mp4'`` into the cluster store: (the command's result, its config file, its out folder)."""
    config = scene / "cluster.yaml"
    config.write_text(yaml.safe_dump({**yaml.safe_load((scene / "site.yaml").read_text()), "store": {"url": cluster_store}}))
    out = scene / "out"
    result = maskwatch("batch", str(scene / "belt*.mp4"), "--config", str(config), "--ray", ray_cluster.address, "--out", str(out))
    return result, config, out


def test_batch_spreads_the_videos_over_both_nodes_into_one_store(first_batch, scene: Path, cluster_store: str) -> None:
    result, _, out = first_batch
    assert result.returncode == 0, result.stderr
    assert f"{VIDEOS} finished, 0 skipped (already finished), 0 failed" in result.stdout
    rows = store_rows(cluster_store, runs)
    assert sorted(r.source for r in rows) == sorted(str(p) for p in scene.glob("belt*.mp4"))
    assert {r.status for r in rows} == {"finished"} and {r.frames for r in rows} == {FRAMES}
    nodes = {r.node for r in rows}
    assert len(nodes) == 2, nodes  # SPREAD, one CPU per node and per task: both nodes took videos
    assert all(node.startswith(f"{socket.gethostname()}/") for node in nodes)
    uids = [t.track_uid for t in store_rows(cluster_store, tracks)]
    assert len(uids) >= VIDEOS and None not in uids and len(set(uids)) == len(uids)  # ids global across the runs
    assert {t.run_id for t in store_rows(cluster_store, tracks)} == {r.id for r in rows}
    summaries = [json.loads(p.read_text()) for p in out.glob("*/summary.json")]
    assert sorted(s["run_id"] for s in summaries) == sorted(r.id for r in rows)  # each video's files in its own folder


def test_a_second_batch_skips_every_finished_video(first_batch, ray_cluster, scene: Path, cluster_store: str) -> None:  # noqa: F811
    _, config, out = first_batch
    before = store_rows(cluster_store, runs)
    result = maskwatch("batch", *map(str, sorted(scene.glob("belt*.mp4"))), "--config", str(config),
                       "--ray", ray_cluster.address, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"0 finished, {VIDEOS} skipped (already finished), 0 failed" in result.stdout
    assert result.stderr.count("skipped ") == VIDEOS, result.stderr
    assert store_rows(cluster_store, runs) == before


def test_a_corrupt_video_is_listed_as_failed_while_the_others_finish(ray_cluster, scene: Path) -> None:  # noqa: F811
    out = scene / "local"  # the default store: SQLite in --out, allowed on a cluster of this machine
    videos = [scene / "broken.mp4", scene / "belt0.mp4", scene / "belt1.mp4"]
    result = maskwatch("batch", *map(str, videos), "--config", str(scene / "site.yaml"), "--ray", ray_cluster.address,
                       "--out", str(out))
    assert result.returncode == 1, result.stderr
    assert "2 finished, 0 skipped (already finished), 1 failed" in result.stdout
    failed = [line for line in result.stdout.splitlines() if "failed:" in line]
    assert len(failed) == 1 and str(videos[0]) in failed[0] and "not a readable video" in failed[0], result.stdout
    rows = store_rows(f"sqlite:///{out / 'maskwatch.db'}", runs)
    assert sorted((r.source, r.status) for r in rows) == sorted((str(v), "finished") for v in videos[1:])
    assert all(r.node for r in rows)


def test_an_unreachable_cluster_is_one_line_at_once(scene: Path) -> None:
    require_ray()
    started = time.monotonic()
    result = maskwatch("batch", str(scene / "belt0.mp4"), "--ray", "127.0.0.1:1", "--out", str(scene / "nowhere"))
    assert_one_line_error(result, "cannot reach Ray cluster at 127.0.0.1:1")
    assert time.monotonic() - started < 60  # the port check answers; Ray alone would retry for minutes


def test_sqlite_with_a_cluster_on_other_machines_is_refused(scene: Path) -> None:
    require_ray()
    result = maskwatch("batch", str(scene / "belt0.mp4"), "--ray", "192.0.2.1:6379", "--out", str(scene / "remote"))
    assert_one_line_error(result, "SQLite store", "192.0.2.1:6379", "PostgreSQL")  # refused before connecting


def test_without_ray_batch_says_how_to_install_it(scene: Path) -> None:
    code = ("import sys; sys.modules['ray'] = None; from maskwatch.cli import main; "
            f"sys.argv = ['maskwatch', 'batch', {str(scene / 'belt0.mp4')!r}, '--out', {str(scene / 'noray')!r}]; main()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert_one_line_error(result, "pip install 'maskwatch[cluster]'")


def test_a_plain_run_records_its_host_and_old_runs_have_no_node(tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import text

    from storage import migrations
    from storage.engine import make_engine
    from storage.store import Store

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    config = migrations._config()
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0004")
        conn.execute(text("INSERT INTO cameras (id, name, unit, created_ts) VALUES (1, 'gate', 'px', 0)"))
        conn.execute(text("INSERT INTO runs (id, camera_id, source, segmenter, started_ts, status, config_json) "
                          "VALUES (1, 1, 'v.mp4', 'motion', 0, 'finished', '{}')"))  # fmt: skip
        conn.commit()
    engine.dispose()
    with Store(url) as store:
        run = store.start_run("gate", "w.mp4", segmenter="motion", unit="px", started_ts=1.0)
    assert {r.id: r.node for r in store_rows(url, runs)} == {1: None, run: socket.gethostname()}
