"""Alarm clips and context images: written by the engine's path, stored with the event, purged, sent to webhooks.

The scene is a disc crossing a zone on a flat grey frame (1280x720, so the clip
and the context image are downscaled), with irregular frame timestamps: a clip
timed by a fixed rate instead of the frames' pts would show it.
"""

from __future__ import annotations

import importlib
import json
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from alembic import command
from sqlalchemy import inspect, select, text

from analytics.analyzer import Analyzer
from analytics.config import AlarmRule, CameraConfig, ClipConfig
from delivery.outbox import Sender, alarm_payload, media_url, pending_count, webhook_channels
from maskwatch.clips import ClipRecorder
from maskwatch.config import AppConfig
from maskwatch.engine import Engine, mask_tracker
from maskwatch.outputs import StoreSink
from maskwatch.pipeline import open_store, run_pipeline
from maskwatch.render import id_color
from maskwatch.sources import Frame
from maskwatch.synthetic import demo_config, render_scene
from segmenter.detections import Detections
from segmenter.masks import CropMask
from storage import migrations
from storage.engine import make_engine
from storage.migrations import head, revision
from storage.schema import alarms, events
from storage.store import Store
from tests.test_delivery import Receiver, delivery_config, receiver  # noqa: F401 (a fixture)
from tests.test_engine import run_live
from tracker.config import TrackerConfig

W, H, GREY, RADIUS = 1280, 720, 100, 40
BEFORE, AFTER = 1.0, 1.0
BASE_URL = "https://cams.example/media/"


class MovingDisc:
    """A stand-in segmenter: one disc moving right 20 px a frame, counted by the frames it has seen."""

    def __init__(self) -> None:
        self.seen = 0

    def segment(self, images):
        out = []
        for _ in images:
            x = 100 + 20 * self.seen
            self.seen += 1
            yy, xx = np.ogrid[:H, :W]
            mask = CropMask.from_full((xx - x) ** 2 + (yy - H // 2) ** 2 <= RADIUS**2)
            out.append(Detections.from_masks([mask], [1], [0.9], ["thing"], (H, W)))
        return out


def frame_pts(i: int) -> float:
    return 10.0 + i * 0.1 + (0.03 if i % 2 else 0.0)  # irregular: 0.13 s, then 0.07 s apart


def record(tmp_path: Path, frames: int, notify: tuple[str, ...] = ()) -> tuple[str, Path, int]:
    """The disc scene through the engine into a store; returns (store url, snapshot folder, run id)."""
    url, root = f"sqlite:///{tmp_path / 'store.db'}", tmp_path / "snapshots"
    camera = CameraConfig.model_validate({"name": "dock 1", "zones": [{"name": "pit", "polygon": [[600, 0], [1000, 0], [1000, H], [600, H]]}]})
    rule = AlarmRule(name="intrusion", kinds=["zone_enter"], notify=list(notify))
    clips = ClipRecorder(root, camera.name, ClipConfig(before_s=BEFORE, after_s=AFTER, fps=10))
    engine = Engine(MovingDisc(), mask_tracker(TrackerConfig(min_hits=1)),
                    lambda: Analyzer(camera, alarms=[rule], snapshot_dir=root), [], clips=clips)  # fmt: skip
    store = Store(url)
    run = store.start_run(camera.name, "disc", segmenter="test", unit="px", started_ts=1_700_000_000.0)
    engine.sinks.append(StoreSink(store, run))
    image = np.full((H, W, 3), GREY, np.uint8)
    for i in range(frames):
        engine.process([Frame(i, frame_pts(i), 1_700_000_000.0 + frame_pts(i), image)])
    engine.close()
    store.close()
    return url, root, run


def alarm_events(url: str) -> list:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(select(events, alarms.c.track_id.label("alarm_track")).join(alarms, alarms.c.event_id == events.c.id)).all()
    engine.dispose()
    return rows


def decode(path: Path) -> tuple[av.video.stream.VideoStream, list[float], list[np.ndarray]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts, images = [], []
        for frame in container.decode(stream):
            pts.append(float(frame.pts * frame.time_base))
            images.append(frame.to_ndarray(format="bgr24"))
        return stream, pts, images


def test_an_alarm_gets_a_browser_playable_clip_and_a_context_image(tmp_path: Path) -> None:
    url, root, _ = record(tmp_path, 60)
    (event,) = alarm_events(url)
    assert event.clip == f"clips/dock_1/{time.strftime('%Y-%m-%d', time.gmtime(event.ts))}/{event.id}.mp4"
    path = root / event.clip
    assert path.is_file() and not path.with_name(path.name + ".part").exists()

    stream, pts, images = decode(path)
    assert stream.codec_context.name == "h264" and stream.codec_tag == "avc1" and stream.format.name == "yuv420p"
    assert (stream.width, stream.height) == (640, 360)  # downscaled to max_width
    data = path.read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat")  # faststart: a browser plays it while downloading
    # the frames' own timestamps, from before_s before the event to after_s after it
    first = next(i for i in range(60) if frame_pts(i) >= event.pts - BEFORE - 1e-6)
    last = next(i for i in range(60) if frame_pts(i) >= event.pts + AFTER - 1e-6)  # the frame that completes it
    expected = [frame_pts(i) - frame_pts(first) for i in range(first, last + 1)]
    assert len(pts) == len(expected) and pts == pytest.approx(expected, abs=0.0015)
    assert pts[-1] == pytest.approx(BEFORE + AFTER, abs=0.11)
    # the mask is drawn: half the track's colour over the grey
    blended = 0.5 * GREY + 0.5 * np.array(id_color(event.alarm_track))
    middle = images[len(images) // 2].astype(float)
    assert (np.abs(middle - blended).max(axis=2) <= 20).sum() > 500
    assert (np.abs(middle - GREY).max(axis=2) <= 6).mean() > 0.8  # the rest is the frame

    assert event.snapshot and event.context_snapshot == event.snapshot.removesuffix(".jpg") + "-context.jpg"
    context = cv2.imread(str(root / event.context_snapshot))
    assert context.shape == (540, 960, 3)  # the whole frame, at most 960 px wide
    red = (context[:, :, 2] > 180) & (context[:, :, 1] < 80)  # the outline
    assert red.sum() > 100 and cv2.imread(str(root / event.snapshot)).shape[1] < 960


def test_a_clip_cut_short_by_the_end_of_the_stream_is_still_written(tmp_path: Path) -> None:
    url, root, _ = record(tmp_path, 29)  # the disc enters the zone about 0.4 s before the last frame
    (event,) = alarm_events(url)
    last = frame_pts(28)
    assert last < event.pts + AFTER  # the after-part never came
    _, pts, _ = decode(root / event.clip)
    assert pts[-1] == pytest.approx(last - (event.pts - BEFORE), abs=0.11)


def test_purge_deletes_old_clips_and_keeps_the_events_and_snapshots(tmp_path: Path) -> None:
    url, root, _ = record(tmp_path, 40)
    (event,) = alarm_events(url)
    clip = root / event.clip
    with Store(url) as store:
        assert store.purge_clips(30, root, now=event.ts + 29 * 86400) == 0  # not old enough
    assert clip.is_file()
    config = AppConfig.model_validate({"clips": {"retention_days": 30}})
    open_store(url, config, root).close()  # what run and serve do at start: the 2023 event's clip is old
    assert not clip.exists() and not clip.parent.exists()  # the emptied day folder goes too
    (after,) = alarm_events(url)
    assert after.clip is None and (root / after.snapshot).is_file() and (root / after.context_snapshot).is_file()


def test_the_webhook_payload_links_the_clip_and_the_context_image(tmp_path: Path, receiver: Receiver) -> None:  # noqa: F811
    url, root, _ = record(tmp_path, 40, notify=("ops",))
    (event,) = alarm_events(url)
    config = delivery_config(receiver.url, snapshot_base_url=BASE_URL)
    stop = threading.Event()
    with webhook_channels(config)["ops"] as channel, Sender(url, {"ops": channel}, config, root) as sender:
        loop = threading.Thread(target=sender.run, args=(stop,))
        loop.start()
        deadline = time.monotonic() + 20
        while pending_count(url) and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()
        loop.join()
    (hit,) = receiver.hits
    body = hit.payload
    assert body["clip_url"] == BASE_URL + event.clip.replace(" ", "%20")
    assert body["context_url"] == media_url(BASE_URL, event.context_snapshot)
    assert body["snapshot_url"] == media_url(BASE_URL, event.snapshot)
    assert body["event"]["clip"] == event.clip and body["event"]["context_snapshot"] == event.context_snapshot

    row = {**event._mapping, "camera": "dock 1"}
    alarm = {"id": "a", "rule": "r", "severity": "info", "camera": "dock 1", "ts": event.ts, "track_id": 1,
             "track_uid": None, "state": "open"}  # fmt: skip
    inline = json.loads(alarm_payload(alarm, row, "base64", root, BASE_URL))
    assert inline["snapshot_base64"] and inline["clip_url"] == body["clip_url"]  # a video is never inlined
    assert not {"clip_url", "context_url", "snapshot_url"} & set(json.loads(alarm_payload(alarm, row, "none")))


def test_migration_0004_adds_the_media_columns_to_a_0003_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    config = migrations._config()
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0003")
        conn.commit()
        conn.execute(text("INSERT INTO cameras (id, name, unit, created_ts) VALUES (1, 'gate', 'px', 0)"))
        conn.execute(text("INSERT INTO runs (id, camera_id, source, segmenter, started_ts, status, config_json) "
                          "VALUES (1, 1, 'v.mp4', 'motion', 0, 'finished', '{}')"))  # fmt: skip
        conn.execute(text("INSERT INTO events (id, run_id, camera_id, ts, frame, pts, kind, values_json, snapshot) "
                          "VALUES ('e1', 1, 1, 5, 1, 0.1, 'zone_enter', '{}', 'gate/x.jpg')"))  # fmt: skip
        conn.commit()
    assert revision(engine) == "0003"
    assert not {"clip", "context_snapshot"} & {c["name"] for c in inspect(engine).get_columns("events")}
    engine.dispose()

    Store(url).close()
    engine = make_engine(url)
    assert revision(engine) == head()  # 0004 and every later migration ran
    with engine.connect() as conn:
        row = conn.execute(select(events)).one()
    engine.dispose()
    assert (row.id, row.snapshot, row.context_snapshot, row.clip) == ("e1", "gate/x.jpg", None, None)
    test_store = importlib.import_module("tests.test_store")
    assert test_store.schema_differences(url) == []


@pytest.mark.parametrize("mode", ["run", "serve"])
def test_run_and_the_serve_worker_write_the_clips_of_their_alarms(tmp_path: Path, mode: str) -> None:
    """The demo belt (cut after the person's alarm, near frame 105) through ``run`` or a live camera worker."""
    video = tmp_path / "belt.mp4"
    render_scene(video, frames=120)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    config = demo_config() | {"clips": {"before_s": 1.0, "after_s": 1.0}, "store": {"url": url}}
    if mode == "run":
        out = tmp_path / "out"
        summary = run_pipeline(video, AppConfig.model_validate(config), out, show_progress=False)
        assert summary["alarms"] >= 1
    else:
        out = tmp_path / "live-out"
        run_live(tmp_path, video, config, fps=10.0)  # SIGTERM once the file has played: clips finish on the way out
    rows = alarm_events(url)
    assert rows and all(r.clip for r in rows)
    for r in rows:
        stream, pts, _ = decode(out / "snapshots" / r.clip)
        assert stream.codec_context.name == "h264" and pts[-1] == pytest.approx(2.0, abs=0.25)


def test_clip_rules_must_name_alarm_rules() -> None:
    config = demo_config() | {"clips": {"rules": ["person-on-belt", "nope"]}}
    with pytest.raises(ValueError, match="clips.rules: no alarm rule named nope"):
        AppConfig.model_validate(config)
    assert AppConfig.model_validate(demo_config() | {"clips": {"rules": ["person-on-belt"]}}).clips.wanted("person-on-belt")
