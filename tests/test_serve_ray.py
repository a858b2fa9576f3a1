"""``maskwatch serve --ray`` on a real two-node Ray cluster on this machine, with a real PostgreSQL store.

Two cameras (a rendered clip, looped) run as actors, one per node; the second
node is killed (its raylet and workers, -9). Its camera must process frames
again on the head within 30 s, under a new run; every alarm in the store reaches
a real webhook receiver (verified signatures), no ``track_uid`` belongs to two
runs, and ``/healthz`` shows both cameras. Skips without Ray or PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import yaml
from sqlalchemy import create_engine, make_url, text

from maskwatch.synthetic import demo_config, render_scene
from tests.conftest import PG_TEST_URL
from tests.test_serve import SECRET, Receiver, free_port, get

FAILOVER_S = 30.0


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards; a skip naming the URL when the server is not reachable."""
    from sqlalchemy.exc import OperationalError

    name = f"mw_{os.urandom(6).hex()}"
    try:
        admin = create_engine(PG_TEST_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except (ImportError, OperationalError) as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG_TEST_URL}: {str(getattr(exc, 'orig', exc)).splitlines()[0]}")
    yield make_url(PG_TEST_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def cluster() -> Iterator:
    """A head (2 CPUs: room for both cameras after a failover) and a worker node (1 CPU), on 127.0.0.1.

    Node death is declared after 3 missed health checks 1 s apart (Ray's default: 5 x 3 s).
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before ray is imported: loopback only
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'maskwatch[cluster]')")
    from ray.cluster_utils import Cluster

    system = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3, "health_check_timeout_ms": 1000}
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "node_ip_address": "127.0.0.1", "include_dashboard": False, "_system_config": system})
    try:
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


def wait_for(check, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the service exited ({proc.returncode}) while waiting for {what}")
        try:
            value = check()
            if value:
                return value
        except (OSError, KeyError, ValueError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def health(base: str) -> dict:
    return json.loads(get(base + "/healthz"))


def test_segmenter_pool_batches_frames_of_several_cameras_and_survives_its_actor(cluster):
    """The pool's code path on CPU: the motion segmenter behind a pool actor, three cameras' clients at once."""
    import ray

    from maskwatch.config import SegmenterSection
    from maskwatch.ray_serve import RaySegmenter, SegmenterPoolActor
    from maskwatch.segmenter_server import SegmenterUnavailable
    from segmenter.detections import Detections

    ray.init(address=cluster.address, log_to_driver=True)
    try:
        pool = [ray.remote(SegmenterPoolActor).options(num_cpus=0, max_restarts=-1, max_concurrency=100)
                .remote(SegmenterSection(name="motion"), 8, 0.1)]
        cameras = [RaySegmenter(pool, f"cam-{i}", timeout_s=60) for i in range(3)]
        rng = np.random.default_rng(0)
        frames = [rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(3)]  # the pool's warm-up size
        answers: list = []
        for _ in range(4):  # each round: the three cameras' frames at once, as the camera loops send them
            threads = [threading.Thread(target=lambda c=c, f=f: answers.append(c.segment([f])[0]))
                       for c, f in zip(cameras, frames)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
        assert len(answers) == 12 and all(isinstance(a, Detections) for a in answers)
        stats = ray.get(pool[0].status.remote(), timeout=60)
        assert stats["frames"] >= 12 and stats["mean_batch"] > 1.0, stats  # frames of several cameras in one batch

        ray.kill(pool[0], no_restart=False)  # the pool actor dies (a GPU fault): frames are skipped, then it is back
        with pytest.raises(SegmenterUnavailable):
            RaySegmenter(pool, "cam-0", timeout_s=1).segment([frames[0]])
        back = wait_for(lambda: (d := _segment_or_none(RaySegmenter(pool, "cam-0", timeout_s=10), frames[0])) is not None
                        and [d], 90, "the pool back")
        assert isinstance(back[0], Detections)
    finally:
        ray.shutdown()


def _segment_or_none(segmenter, frame):  # None while the actor is away (Detections of no object are falsy)
    from maskwatch.segmenter_server import SegmenterUnavailable

    try:
        return segmenter.segment([frame])[0]
    except SegmenterUnavailable:
        return None


def test_serve_ray_segments_maskrcnn_frames_through_the_pool(cluster, tmp_path):
    """serve --ray with maskrcnn: the camera's frames go through the segmenter pool actor (an untrained, tiny model on CPU)."""
    import torch
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    torch.manual_seed(0)
    weights = tmp_path / "model.pth"
    torch.save({"model": maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2).state_dict(),
                "class_names": ["part"], "version": "v1"}, weights)
    video = tmp_path / "belt.mp4"
    render_scene(video, frames=60)
    listen = f"127.0.0.1:{free_port()}"
    config = {"segmenter": {"name": "maskrcnn", "maskrcnn": {"weights": str(weights), "min_size": 96, "max_size": 160,
                                                             "score_threshold": 0.0, "max_detections": 5, "batch_size": 4}},
              "cameras": [{"name": "belt", "source": str(video), "loop": True, "fps": 2}],
              "service": {"listen": listen, "batch_wait_ms": 5, "segmenter_timeout_s": 30}}
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-m", "maskwatch", "serve", "--config", str(tmp_path / "site.yaml"), "--out",
                             str(tmp_path / "out"), "--ray", cluster.address], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://{listen}"
    try:
        state = wait_for(lambda: (h := health(base))["cameras"]["belt"]["frames"] >= 3 and h["segmenter"]["frames"] >= 3 and h,
                         240, "frames segmented by the pool", proc)
        assert state["segmenter"]["worker_alive"] and state["cameras"]["belt"]["health"] == "live", state
        assert state["segmenter"]["actors"][0]["node"] in {n.node_id for n in cluster.list_all_nodes()}
        metrics = get(base + "/metrics")
        assert "maskwatch_segmenter_up 1.0" in metrics and "maskwatch_segmenter_frames_total" in metrics
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=90)
        assert proc.returncode == 0, output[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        if proc.stdout is not None and not proc.stdout.closed:
            print(proc.communicate()[0][-8000:])


def test_serve_ray_camera_fails_over_to_another_node_and_no_alarm_is_lost(cluster, pg_url, tmp_path):
    video = tmp_path / "belt.mp4"
    render_scene(video)
    receiver = Receiver()
    demo = demo_config()
    listen = f"127.0.0.1:{free_port()}"
    camera = {k: v for k, v in demo["camera"].items() if k != "name"}
    config = {
        "segmenter": demo["segmenter"],
        "tracker": demo["tracker"],
        "sampling": {"measure_every": 1, "count_every_s": 0.5},
        "alarms": [{**demo["alarms"][0], "notify": ["ops"], "cooldown_s": 0}],
        "delivery": {"webhooks": [{"name": "ops", "url": receiver.url, "secret": SECRET}]},
        "store": {"url": pg_url},
        "cameras": [{**camera, "name": name, "source": str(video), "loop": True, "fps": 8} for name in ("belt-a", "belt-b")],
        "service": {"listen": listen},
    }
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "maskwatch", "serve", "--config", str(tmp_path / "site.yaml"), "--out",
                             str(out), "--ray", cluster.address], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://{listen}"
    head_id = cluster.head_node.node_id
    try:
        both_live = wait_for(lambda: (h := health(base)) and all(c["health"] == "live" for c in h["cameras"].values()) and h,
                             180, "both cameras live", proc)
        nodes = {name: c["node"] for name, c in both_live["cameras"].items()}
        assert len(set(nodes.values())) == 2, f"the cameras should be spread over both nodes: {nodes}"
        victim = next(name for name, node in nodes.items() if node != head_id)
        survivor = next(name for name in nodes if name != victim)
        first_run = wait_for(lambda: runs_of(pg_url, victim), 30, f"the run of {victim}")[-1]
        wait_for(lambda: alarm_ids(pg_url, victim), 120, f"an alarm of {victim} before its node is killed")

        worker = next(n for n in cluster.list_all_nodes() if n.node_id == nodes[victim])
        killed = time.monotonic()
        cluster.remove_node(worker, allow_graceful=False)  # raylet and its workers killed -9: a machine lost

        def back_on_head():
            cam = health(base)["cameras"][victim]
            moved = cam["node"] == head_id and cam["health"] == "live" and cam["frames"] > 0
            return moved and cam["worker_restarts"] >= 1 and cam

        back = wait_for(back_on_head, FAILOVER_S, f"{victim} processing frames again on the head", proc)
        failover_s = time.monotonic() - killed
        print(f"\nfailover: {victim} back on the head node, processing, {failover_s:.1f} s after its node was killed")
        assert back["frames"] > 0

        state = health(base)
        assert set(state["cameras"]) == {"belt-a", "belt-b"}
        metrics = get(base + "/metrics")
        for name in ("belt-a", "belt-b"):
            assert f'maskwatch_camera_connected{{camera="{name}"}} 1.0' in metrics
        restarts = next(line for line in metrics.splitlines()
                        if line.startswith(f'maskwatch_camera_worker_restarts_total{{camera="{victim}"}}'))
        assert float(restarts.split()[-1]) >= 1
        assert state["cameras"][survivor]["health"] == "live" and state["cameras"][survivor]["node"] == head_id

        # the restarted camera is a new run; its alarms flow too
        victim_runs = wait_for(lambda: len(r := runs_of(pg_url, victim)) >= 2 and r, 30, "the new run")
        assert victim_runs[-1]["node"] is None or head_id in victim_runs[-1]["node"]
        new_run = victim_runs[-1]["id"]
        wait_for(lambda: alarm_ids(pg_url, victim, new_run), 120, f"an alarm of {victim}'s new run")

        # no alarm lost: every alarm in the store (before and after the failover) delivered, signed, to the receiver
        stored = alarm_ids(pg_url)
        wait_for(lambda: stored <= {p["alarm"]["id"] for p in receiver.payloads}, 60, "every stored alarm delivered")
        assert receiver.invalid == 0
        assert {p["alarm"]["id"] for p in receiver.payloads} <= alarm_ids(pg_url)
        # identity is global: no track_uid in two runs, none repeated
        with create_engine(pg_url).connect() as conn:
            shared = conn.execute(text("SELECT track_uid FROM observations WHERE track_uid IS NOT NULL GROUP BY track_uid "
                                       "HAVING count(DISTINCT run_id) > 1")).all()
            repeated = conn.execute(text("SELECT track_uid FROM tracks GROUP BY track_uid HAVING count(*) > 1")).all()
            victim_tracks = conn.execute(text("SELECT count(DISTINCT run_id) FROM tracks JOIN runs ON runs.id = tracks.run_id "
                                              "JOIN cameras ON cameras.id = runs.camera_id WHERE cameras.name = :c"),
                                         {"c": victim}).scalar_one()
        assert shared == [] and repeated == []
        assert victim_tracks >= 2  # tracks on both nodes, none colliding
        assert first_run["id"] != new_run and first_run["node"] in (None, f"{first_run['node'].split('/')[0]}/{nodes[victim]}")

        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=90)
        assert proc.returncode == 0, output[-4000:]
        statuses = {r["id"]: r["status"] for name in ("belt-a", "belt-b") for r in runs_of(pg_url, name)}
        assert statuses[new_run] == "finished" and statuses[first_run["id"]] == "crashed"  # closed by the new run (same host)
    finally:
        if proc.poll() is None:
            proc.kill()
        if proc.stdout is not None and not proc.stdout.closed:
            print(proc.communicate()[0][-8000:])  # the service's log, for a failure
        receiver.server.shutdown()


def alarm_ids(url: str, camera: str | None = None, run_id: int | None = None) -> set[int]:
    sql = "SELECT alarms.id FROM alarms JOIN cameras ON cameras.id = alarms.camera_id WHERE true"
    if camera is not None:
        sql += " AND cameras.name = :camera"
    if run_id is not None:
        sql += " AND alarms.run_id = :run"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {r[0] for r in conn.execute(text(sql), {"camera": camera, "run": run_id})}
    finally:
        engine.dispose()


def runs_of(url: str, camera: str) -> list[dict]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            columns = {r[0] for r in conn.execute(text("SELECT column_name FROM information_schema.columns "
                                                       "WHERE table_name = 'runs'"))}
            node = "runs.node" if "node" in columns else "NULL"
            rows = conn.execute(text(f"SELECT runs.id, runs.status, {node} AS node FROM runs JOIN cameras ON "
                                     "cameras.id = runs.camera_id WHERE cameras.name = :c ORDER BY runs.id"), {"c": camera})
            return [dict(r._mapping) for r in rows]
    finally:
        engine.dispose()


def test_a_partial_sender_leaves_the_other_channels_rows_to_the_full_sender(store_url: str) -> None:
    """serve --ray's sender actors hold the webhooks only: MQTT rows stay untouched (no last_error) for the service's."""
    from delivery.outbox import Sender, WebhookChannel, outbox_status
    from tests.test_delivery import Receiver as HookReceiver
    from tests.test_delivery import delivery_config, write_alarms

    hooks = HookReceiver()
    try:
        (alarm,) = write_alarms(store_url, 1, channels=("ops", "mqtt"))
        config = delivery_config(hooks.url)
        with WebhookChannel(config.webhooks[0]) as channel, Sender(store_url, {"ops": channel}, config,
                                                                     partial=True) as sender:
            for _ in range(3):
                sender.run_once()
        rows = outbox_status(store_url).set_index("channel")
        assert rows.loc["ops", "state"] == "delivered" and hooks.attempts() == {alarm.id: 1}
        assert (rows.loc["mqtt", "state"], rows.loc["mqtt", "attempts"]) == ("pending", 0)
        assert rows.loc["mqtt", "last_error"] is None
    finally:
        hooks.close()
