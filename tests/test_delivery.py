"""Alarm delivery end to end: the store's outbox, a real HTTP receiver on loopback, real SQLite and PostgreSQL.

The receiver fails on purpose (503, too slow, 429 with Retry-After, 400, a closed
port) and checks every request with the ``standardwebhooks`` library, as a
customer's endpoint would. Scheduling is checked on a fake clock (``run_once(now=)``),
everything else on the wall clock.
"""

from __future__ import annotations

import base64
import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import ValidationError
from sqlalchemy import event as sa_event
from sqlalchemy import func, inspect, select
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from analytics.records import EVENT_COLUMNS, AlarmRecord, EventRecord
from delivery.metrics import DeliveryCollector
from delivery.outbox import (
    BackoffConfig,
    DeliveryConfig,
    Sender,
    WebhookChannel,
    alarm_payload,
    classify,
    outbox_status,
    pending_count,
    retry_after_seconds,
    webhook_channels,
)
from storage.engine import make_engine
from storage.schema import alarms, deliveries, events
from storage.store import Store

T0 = 1_700_000_000.25  # 2023-11-14T22:13:20.25Z
REPO = Path(__file__).resolve().parents[1]
SECRET = "whsec_" + base64.b64encode(b"maskwatch test secret, 32 bytes").decode()


@dataclass
class Reply:
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: str = "ok"


@dataclass
class Hit:
    arrived: float
    webhook_id: str
    headers: dict[str, str]
    verified: bool
    payload: dict
    status: int


class Receiver:
    """A loopback HTTP endpoint: answers each webhook-id from ``plan`` (its first attempts), then 200.

    Every request is verified with ``standardwebhooks`` and kept in ``hits``; ``active``
    holds the ids whose request is being answered right now.
    """

    def __init__(self, port: int = 0, delay_s: float = 0.0) -> None:
        self.plan: dict[str, list[Reply]] = {}
        self.delay_s = delay_s
        self.hits: list[Hit] = []
        self.active: set[str] = set()
        self.lock = threading.Lock()
        self.verifier = Webhook(SECRET)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._handle(self)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/alarm"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        arrived = time.time()
        body = request.rfile.read(int(request.headers["content-length"]))
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            payload, verified = self.verifier.verify(body, headers), True
        except WebhookVerificationError:
            payload, verified = json.loads(body), False
        msg_id = headers["webhook-id"]
        with self.lock:
            seen = sum(h.webhook_id == msg_id for h in self.hits)
            replies = self.plan.get(msg_id, [])
            reply = replies[seen] if seen < len(replies) else Reply(delay_s=self.delay_s)
            self.hits.append(Hit(arrived, msg_id, headers, verified, payload, reply.status))
            self.active.add(msg_id)
        try:
            time.sleep(reply.delay_s)
            request.send_response(reply.status)
            for name, value in reply.headers.items():
                request.send_header(name, value)
            request.send_header("content-length", str(len(reply.body)))
            request.end_headers()
            request.wfile.write(reply.body.encode())
        except OSError:
            pass  # the sender timed out or died: its connection is gone
        finally:
            with self.lock:
                self.active.discard(msg_id)

    def attempts(self) -> Counter:
        with self.lock:
            return Counter(h.webhook_id for h in self.hits)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Receiver:
    server = Receiver()
    yield server
    server.close()


def free_port() -> int:
    """A loopback port nobody listens on (connection refused) until a test binds it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def delivery_config(url: str, **overrides: object) -> DeliveryConfig:
    """One webhook 'ops' at ``url``, fast backoff without jitter; ``hook_*`` overrides go to the webhook."""
    hook = {"name": "ops", "url": url, "secret": SECRET, "timeout_s": 2.0, "rate_per_s": 1000.0}
    hook |= {k.removeprefix("hook_"): v for k, v in overrides.items() if k.startswith("hook_")}
    rest = {k: v for k, v in overrides.items() if not k.startswith("hook_")}
    rest.setdefault("backoff", {"initial_s": 0.05, "max_s": 0.2, "jitter": 0.0})
    return DeliveryConfig(webhooks=[hook], idle_s=0.02, **rest)


def uid(track_id: int, camera: str = "gate") -> str:
    """The uid of track ``track_id`` of ``camera`` in these tests: 32 hex digits like the tracker's, but repeatable."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{camera}/{track_id}").hex


def write_alarms(url: str, n: int, channels: tuple[str, ...] = ("ops",), camera: str = "gate") -> list[AlarmRecord]:
    """``n`` zone_enter events, each promoted to one alarm for ``channels``; returns the alarms, oldest first."""
    written = []
    with Store(url) as store:
        run = store.start_run(camera, "v.mp4", segmenter="motion", unit="px", started_ts=T0)
        for k in range(n):
            event = EventRecord("zone_enter", camera, T0 + k, k, k / 30, track_id=k, track_uid=uid(k, camera),
                                class_name="person", zone="gate", value=0.5, unit="fraction",
                                snapshot=f"{camera}/2023-11-14/{k}.jpg")  # fmt: skip
            alarm = AlarmRecord(event.id, "intrusion", "critical", camera, T0 + k, k, uid(k, camera), channels=channels)
            store.write(run, events=[event], alarms=[alarm])
            written.append(alarm)
    return written


def drain(sender: Sender, url: str, timeout_s: float = 20.0) -> None:
    """Run passes on the wall clock until nothing is pending."""
    deadline = time.monotonic() + timeout_s
    while pending_count(url) and time.monotonic() < deadline:
        if not sender.run_once():
            time.sleep(0.02)
    assert pending_count(url) == 0


def by_alarm(url: str) -> pd.DataFrame:
    return outbox_status(url).set_index("alarm_id")


def count(url: str, table) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(table)).scalar_one()
    finally:
        engine.dispose()


# --- the outbox in the store ---------------------------------------------------------------------------------------


def test_alarms_and_their_outbox_rows_are_written_together(store_url: str) -> None:
    event = EventRecord("zone_enter", "gate", T0, 0, 0.0, track_id=1, track_uid=uid(1))
    loud = AlarmRecord(event.id, "intrusion", "critical", "gate", T0, 1, uid(1), channels=("ops", "mqtt", "ops"))
    quiet = AlarmRecord(event.id, "log only", "info", "gate", T0, 1, uid(1))  # no channels: no outbox rows
    store = Store(store_url, batch_frames=100, batch_seconds=3600)
    run = store.start_run("gate", "v.mp4", segmenter="motion", unit="px", started_ts=T0)

    def disk_full(conn, cursor, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO DELIVERIES"):
            raise OSError("disk full")

    sa_event.listen(store.engine, "before_cursor_execute", disk_full)
    before = time.time()
    with pytest.raises(OSError, match="disk full"):  # the alarm flushes at once, and fails at its outbox rows
        store.write(run, events=[event], alarms=[loud, quiet])
    assert [count(store_url, t) for t in (events, alarms, deliveries)] == [0, 0, 0]  # neither without the other

    sa_event.remove(store.engine, "before_cursor_execute", disk_full)
    store.flush()  # the kept batch lands whole
    store.close()
    assert count(store_url, alarms) == 2
    rows = outbox_status(store_url)
    assert sorted(rows.channel) == ["mqtt", "ops"] and set(rows.alarm_id) == {loud.id}
    assert set(rows.state) == {"pending"} and set(rows.attempts) == {0} and set(rows.camera) == {"gate"}
    assert (rows.next_attempt_ts >= before).all() and (rows.next_attempt_ts == rows.created_ts).all()
    assert rows.last_status.isna().all() and rows.delivered_ts.isna().all()
    assert pending_count(store_url) == 2

    engine = make_engine(store_url)
    indexed = {tuple(i["column_names"]) for i in inspect(engine).get_indexes("deliveries")}
    (event_id,) = {r.event_id for r in engine.connect().execute(select(deliveries.c.event_id))}
    engine.dispose()
    assert ("state", "next_attempt_ts") in indexed and event_id == event.id


# --- the sender against a misbehaving receiver ---------------------------------------------------------------------


def test_every_alarm_arrives_signed_through_scripted_failures(store_url: str, receiver: Receiver) -> None:
    sent = write_alarms(store_url, 5)
    with Store(store_url) as store:  # a sixth alarm from the fifth's event: another rule, another webhook-id
        run = store.start_run("gate", "v.mp4", segmenter="motion", unit="px", started_ts=T0)
        twin = AlarmRecord(sent[4].event_id, "second rule", "warning", "gate", T0 + 4, 4, uid(4), channels=("ops",))
        store.write(run, alarms=[twin])
    a_503, a_slow, a_429, a_400, a_ok = (a.id for a in sent)
    receiver.plan = {
        a_503: [Reply(503), Reply(503)],
        a_slow: [Reply(delay_s=1.0)],  # beyond the 0.3 s timeout
        a_429: [Reply(429, headers={"Retry-After": "1"})],
        a_400: [Reply(400, body="bad payload: unknown camera")],
    }
    config = delivery_config(receiver.url, hook_timeout_s=0.3, hook_headers={"authorization": "Bearer t0ken"},
                             snapshot_base_url="https://cams.example/snap/")  # fmt: skip
    stop = threading.Event()
    with webhook_channels(config)["ops"] as channel, Sender(store_url, {"ops": channel}, config) as sender:
        loop = threading.Thread(target=sender.run, args=(stop,))
        loop.start()
        deadline = time.monotonic() + 20
        while pending_count(store_url) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        loop.join()

    hits = receiver.hits
    assert all(h.verified for h in hits)
    assert all(h.webhook_id == h.payload["alarm"]["id"] for h in hits)  # the same id on every retry
    assert {h.headers["content-type"] for h in hits} == {"application/json"}
    assert {h.headers["authorization"] for h in hits} == {"Bearer t0ken"}
    ids = [a.id for a in sent] + [twin.id]
    assert receiver.attempts() == {a_503: 3, a_slow: 2, a_429: 2, a_400: 1, a_ok: 1, twin.id: 1}
    first, retry = (h.arrived for h in hits if h.webhook_id == a_429)
    assert retry - first >= 1.0  # Retry-After honoured

    outbox = by_alarm(store_url)
    assert pending_count(store_url) == 0
    assert outbox.loc[a_400, "state"] == "dead" and outbox.loc[a_400, "last_status"] == 400
    assert outbox.loc[a_400, "response"] == "bad payload: unknown camera"
    assert outbox.loc[a_400, "last_error"] == "HTTP 400 Bad Request" and pd.isna(outbox.loc[a_400, "next_attempt"])
    delivered = outbox.drop(a_400)
    assert set(delivered.state) == {"delivered"} and set(delivered.last_status) == {200}
    assert [outbox.loc[i, "attempts"] for i in ids] == [3, 2, 2, 1, 1, 1]
    assert (delivered.delivered_ts >= delivered.created_ts).all() and delivered.last_error.isna().all()

    body = next(h.payload for h in hits if h.webhook_id == a_ok)
    assert body["type"] == "alarm" and body["event"]["id"] == sent[4].event_id
    assert body["alarm"] == {"id": a_ok, "rule": "intrusion", "severity": "critical", "camera": "gate",
                             "time": "2023-11-14T22:13:24.250Z", "ts": T0 + 4, "track_id": 4, "track_uid": uid(4),
                             "state": "open"}  # fmt: skip
    assert set(body["event"]) == {*EVENT_COLUMNS, "time"}  # every field of the event record, and no other
    assert (body["event"]["track_id"], body["event"]["track_uid"], body["event"]["camera"]) == (4, uid(4), "gate")
    assert body["event"]["values"] == {} and body["event"]["zone"] == "gate" and body["event"]["frame"] == 4
    assert body["snapshot_url"] == "https://cams.example/snap/gate/2023-11-14/4.jpg"


def test_backoff_and_retry_after_on_the_scheduling_clock(store_url: str, receiver: Receiver) -> None:
    flaky, throttled = write_alarms(store_url, 2)
    receiver.plan = {flaky.id: [Reply(503)] * 4, throttled.id: [Reply(429, headers={"Retry-After": "7"})]}
    config = delivery_config(receiver.url, backoff={"initial_s": 1, "max_s": 4, "jitter": 0})
    now = outbox_status(store_url).created_ts.max()  # both due from now on
    with WebhookChannel(config.webhooks[0]) as channel, Sender(store_url, {"ops": channel}, config) as sender:
        for attempts, (offset, next_retry) in enumerate(((0, 1), (1, 3), (3, 7), (7, 11)), 1):  # backoff 1, 2, 4, 4
            if offset:
                assert sender.run_once(now=now + offset - 0.01) == 0  # not due yet (and the channel is paused)
            # only the flaky one: a failing receiver is probed, not hammered with every queued alarm
            assert sender.run_once(now=now + offset) == 1
            row = by_alarm(store_url).loc[flaky.id]
            assert (row.state, row.attempts, row.last_status) == ("pending", attempts, 503)
            assert row.last_error == "HTTP 503 Service Unavailable"
            assert row.next_attempt_ts == pytest.approx(now + next_retry)
            assert row.next_attempt == pd.Timestamp(row.next_attempt_ts, unit="s", tz="UTC")
        assert receiver.attempts() == {flaky.id: 4}

        assert sender.run_once(now=now + 11) == 2  # flaky lands, then throttled is asked to wait 7 s
        row = by_alarm(store_url).loc[throttled.id]
        assert (row.state, row.attempts, row.last_status) == ("pending", 1, 429)
        assert row.next_attempt_ts == pytest.approx(now + 18)  # Retry-After beats the 1 s backoff
        assert sender.run_once(now=now + 17.9) == 0
        assert sender.run_once(now=now + 18) == 1
    assert receiver.attempts() == {flaky.id: 5, throttled.id: 2}
    assert set(outbox_status(store_url).state) == {"delivered"}


@pytest.mark.parametrize("limit", ["max_age_s", "max_attempts"])
def test_retries_give_up_into_a_dead_letter(store_url: str, receiver: Receiver, limit: str) -> None:
    (alarm,) = write_alarms(store_url, 1)
    receiver.plan = {alarm.id: [Reply(503, body="maintenance until 06:00")] * 5}
    config = delivery_config(receiver.url, **{"max_age_s": 10.0} if limit == "max_age_s" else {"max_attempts": 2})
    created = outbox_status(store_url).created_ts[0]
    with WebhookChannel(config.webhooks[0]) as channel, Sender(store_url, {"ops": channel}, config) as sender:
        assert sender.run_once(now=created + 1) == 1
        assert by_alarm(store_url).loc[alarm.id, "state"] == "pending"
        assert sender.run_once(now=created + 11) == 1
        assert sender.run_once(now=created + 100) == 0  # dead letters are never sent again
    row = by_alarm(store_url).loc[alarm.id]
    assert (row.state, row.attempts, row.last_status) == ("dead", 2, 503)
    assert row.last_error == "gave up after 2 attempts in 11 s: HTTP 503 Service Unavailable"
    assert row.response == "maintenance until 06:00" and pending_count(store_url) == 0


def test_connection_refused_until_the_receiver_comes_up(store_url: str) -> None:
    port = free_port()
    (alarm,) = write_alarms(store_url, 1)
    config = delivery_config(f"http://127.0.0.1:{port}/hook")
    with WebhookChannel(config.webhooks[0]) as channel, Sender(store_url, {"ops": channel}, config) as sender:
        assert sender.run_once() == 1
        row = by_alarm(store_url).loc[alarm.id]
        assert (row.state, row.attempts) == ("pending", 1) and pd.isna(row.last_status)
        assert row.last_error.startswith("ConnectError")
        late = Receiver(port=port)
        try:
            drain(sender, store_url)
        finally:
            late.close()
    assert list(late.attempts().items()) == [(alarm.id, 1)] and late.hits[0].verified
    assert by_alarm(store_url).loc[alarm.id, "attempts"] == 2


def test_a_receiver_back_gets_its_backlog_within_seconds_not_after_the_backoff(store_url: str) -> None:
    port = free_port()
    sent = write_alarms(store_url, 3)
    config = delivery_config(f"http://127.0.0.1:{port}/hooks/alarm", probe_s=0.2,
                             backoff={"initial_s": 120, "max_s": 300, "jitter": 0})  # fmt: skip
    stop = threading.Event()
    with WebhookChannel(config.webhooks[0]) as channel, Sender(store_url, {"ops": channel}, config) as sender:
        loop = threading.Thread(target=sender.run, args=(stop,))
        loop.start()
        try:
            deadline = time.monotonic() + 10
            while outbox_status(store_url).attempts.sum() == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert outbox_status(store_url).attempts.sum() == 1  # refused: the channel waits 120 s
            late = Receiver(port=port)  # the receiver is back
            deadline = time.monotonic() + 15
            while pending_count(store_url) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            loop.join()
    late.close()
    assert pending_count(store_url) == 0, outbox_status(store_url)
    assert late.attempts() == {a.id: 1 for a in sent}  # each once: the backlog was not tried while it was away
    assert list(by_alarm(store_url).loc[[a.id for a in sent], "attempts"]) == [2, 1, 1]


def test_a_receiver_that_answers_but_fails_keeps_its_backoff(store_url: str, receiver: Receiver) -> None:
    (alarm,) = write_alarms(store_url, 1)
    receiver.plan = {alarm.id: [Reply(503)]}  # up (its probes are answered), yet failing deliveries
    config = delivery_config(receiver.url, probe_s=5, backoff={"initial_s": 60, "max_s": 300, "jitter": 0})
    now = outbox_status(store_url).created_ts.max()
    with WebhookChannel(config.webhooks[0]) as channel, Sender(store_url, {"ops": channel}, config) as sender:
        assert sender.run_once(now=now) == 1
        for later in range(5, 60, 5):
            assert sender.run_once(now=now + later) == 0  # probed, not sent again
        assert sender.run_once(now=now + 60) == 1
    assert receiver.attempts() == {alarm.id: 2}


def test_delivery_metrics_after_real_deliveries(store_url: str, receiver: Receiver) -> None:
    ok, flaky, bad = write_alarms(store_url, 3)
    (waiting,) = write_alarms(store_url, 1, channels=("pager",), camera="dock")  # no sender has a 'pager'
    receiver.plan = {flaky.id: [Reply(503)], bad.id: [Reply(400)]}
    config = delivery_config(receiver.url)
    registry = CollectorRegistry()
    with WebhookChannel(config.webhooks[0]) as channel, Sender(store_url, {"ops": channel}, config) as sender:
        registry.register(DeliveryCollector(sender))
        assert registry.get_sample_value("maskwatch_delivery_backlog", {"channel": "ops"}) == 3
        deadline = time.monotonic() + 20
        while pending_count(store_url) > 1 and time.monotonic() < deadline:
            if not sender.run_once():
                time.sleep(0.02)

        def value(name: str, **labels: str) -> float | None:
            return registry.get_sample_value(name, labels)

        attempts = "maskwatch_delivery_attempts_total"
        assert value(attempts, channel="ops", outcome="delivered") == 2  # ok, and flaky on its retry
        assert value(attempts, channel="ops", outcome="retry") == 1
        assert value(attempts, channel="ops", outcome="dead") == 1
        assert value(attempts, channel="pager", outcome="retry") is None  # never attempted
        assert value("maskwatch_delivery_backlog", channel="ops") == 0
        assert value("maskwatch_delivery_backlog", channel="pager") == 1
        assert value("maskwatch_delivery_dead_letters", channel="ops") == 1
        assert value("maskwatch_delivery_dead_letters", channel="pager") == 0
        assert value("maskwatch_mqtt_connected") is None  # no MQTT configured
        text = generate_latest(registry).decode()
    assert '\nmaskwatch_delivery_attempts_total{channel="ops",outcome="delivered"} 2.0\n' in text
    assert "# TYPE maskwatch_delivery_backlog gauge" in text and SECRET not in text
    assert receiver.attempts() == {ok.id: 1, flaky.id: 2, bad.id: 1}


def test_a_channel_without_configuration_keeps_its_deliveries(
    store_url: str, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    (alarm,) = write_alarms(store_url, 1, channels=("ops", "pager"))
    config = delivery_config(receiver.url)
    with WebhookChannel(config.webhooks[0]) as channel, Sender(store_url, {"ops": channel}, config) as sender:
        for _ in range(3):
            sender.run_once()
    rows = outbox_status(store_url).set_index("channel")
    assert rows.loc["ops", "state"] == "delivered"
    assert (rows.loc["pager", "state"], rows.loc["pager", "attempts"]) == ("pending", 0)
    assert rows.loc["pager", "last_error"] == "no channel named 'pager' is configured in this sender"
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "alarm deliveries to 'pager' wait: no channel named 'pager' is configured in this sender"
    ]  # once, not once per pass

    pager = delivery_config(receiver.url, hook_name="pager")  # configured later: it goes out
    with WebhookChannel(pager.webhooks[0]) as channel, Sender(store_url, {"pager": channel}, pager) as sender:
        drain(sender, store_url)
    assert receiver.attempts() == {alarm.id: 2}


def test_the_rate_limit_spaces_requests(store_url: str, receiver: Receiver) -> None:
    rate = 20
    sent = write_alarms(store_url, 30)
    config = delivery_config(receiver.url, hook_rate_per_s=rate)
    with WebhookChannel(config.webhooks[0]) as channel, Sender(store_url, {"ops": channel}, config) as sender:
        assert sender.run_once() == 30
    arrived = sorted(h.arrived for h in receiver.hits)
    assert len(arrived) == len(sent)
    # no second holds more than 20 (less a margin for loopback latency jitter under load)
    assert min(arrived[i + rate] - arrived[i] for i in range(len(arrived) - rate)) >= 0.9


SENDER = """
import sys, threading
from delivery.outbox import DeliveryConfig, Sender, webhook_channels

config = DeliveryConfig.model_validate_json(sys.argv[2])
Sender(sys.argv[1], webhook_channels(config), config).run(threading.Event())
"""


def test_a_killed_sender_loses_no_alarm(store_url: str) -> None:
    n = 12
    sent = {a.id for a in write_alarms(store_url, n)}
    receiver = Receiver(delay_s=0.2)
    try:
        config = {"webhooks": [{"name": "ops", "url": receiver.url, "secret": SECRET}], "idle_s": 0.02}
        command = [sys.executable, "-c", textwrap.dedent(SENDER), store_url, json.dumps(config)]
        process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (len(receiver.hits) >= 4 and receiver.active):
            time.sleep(0.005)
        assert receiver.active, "the sender never got going"
        os.kill(process.pid, signal.SIGKILL)  # mid-delivery: the receiver is still answering
        before = [h.webhook_id for h in receiver.hits]
        assert process.wait(10) == -signal.SIGKILL, process.stderr.read()
        process.stderr.close()
        assert pending_count(store_url) == n - len(before) + 1  # the one in flight is still pending

        restarted = DeliveryConfig.model_validate(config)
        with WebhookChannel(restarted.webhooks[0]) as channel, Sender(store_url, {"ops": channel}, restarted) as sender:
            drain(sender, store_url)
    finally:
        receiver.close()
    seen = receiver.attempts()
    assert set(seen) == sent and sum(seen.values()) >= n
    assert {i for i, k in seen.items() if k > 1} <= {before[-1]}  # only the in-flight one came twice
    assert all(h.verified for h in receiver.hits)


WRITER = """
import sys, time
from analytics.records import AlarmRecord, EventRecord
from storage.store import Store

with Store(sys.argv[1]) as store:
    run = store.start_run("dock", "rtsp://dock", segmenter="motion", unit="px", started_ts=time.time())
    for k in range(int(sys.argv[2])):
        event = EventRecord("zone_enter", "dock", time.time(), k, k / 30, track_id=k, track_uid=f"{k:032x}")
        alarm = AlarmRecord(event.id, "intrusion", "critical", "dock", event.ts, k, event.track_uid, channels=("ops",))
        store.write(run, events=[event], alarms=[alarm])  # flushed at once
        time.sleep(0.01)
"""


def test_the_sender_runs_beside_a_pipeline_writing_alarms(
    store_url: str, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    n = 60
    config = delivery_config(receiver.url)
    stop = threading.Event()
    with WebhookChannel(config.webhooks[0]) as channel, Sender(store_url, {"ops": channel}, config) as sender:
        loop = threading.Thread(target=sender.run, args=(stop,))
        loop.start()
        try:  # the pipeline is another process: on SQLite both write the same file
            writer = subprocess.run([sys.executable, "-c", textwrap.dedent(WRITER), store_url, str(n)], cwd=REPO,
                                    capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
            assert writer.returncode == 0, writer.stderr
            deadline = time.monotonic() + 20
            while pending_count(store_url) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            loop.join()
    written = set(outbox_status(store_url).alarm_id)
    assert len(written) == n and receiver.attempts() == dict.fromkeys(written, 1)
    assert not [r for r in caplog.records if r.levelname == "ERROR"]  # never "database is locked"


def test_postgresql_senders_share_the_outbox(store_url: str) -> None:
    if not store_url.startswith("postgresql"):
        pytest.skip("SKIP LOCKED claims are PostgreSQL's; on SQLite one sender is assumed")
    sent = {a.id for a in write_alarms(store_url, 12)}
    receiver = Receiver(delay_s=0.1)
    config = delivery_config(receiver.url)
    stop = threading.Event()
    senders = [Sender(store_url, webhook_channels(config), config) for _ in range(2)]
    loops = [threading.Thread(target=s.run, args=(stop,)) for s in senders]
    try:
        for loop in loops:
            loop.start()
        deadline = time.monotonic() + 20
        while pending_count(store_url) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        for loop in loops:
            loop.join()
        for s in senders:
            s.close()
            for channel in s.channels.values():
                channel.close()
        receiver.close()
    assert receiver.attempts() == dict.fromkeys(sent, 1)  # each exactly once
    overlapping = sum(a.arrived < b.arrived + 0.1 for a in receiver.hits for b in receiver.hits if a is not b)
    assert overlapping > 0  # both worked at the same time


# --- pieces without a database -------------------------------------------------------------------------------------


def test_alarm_payload_snapshot_modes(tmp_path: Path) -> None:
    alarm = {"id": "a1", "rule": "intrusion", "severity": "critical", "camera": "gate", "ts": T0, "track_id": None,
             "track_uid": None, "state": "open"}  # fmt: skip
    event = {"id": "e1", "kind": "size_rule", "camera": "gate", "ts": T0, "frame": 3, "pts": 0.1, "track_id": None,
             "track_uid": None, "class_name": "bottle", "zone": None, "line": None, "rule": "too big", "value": math.nan, "unit": "mm",
             "values_json": '{"bounds": [null, 10.0], "iqr": NaN}', "snapshot": "gate cam/2023-11-14/e1.jpg"}  # fmt: skip
    (tmp_path / "gate cam" / "2023-11-14").mkdir(parents=True)
    (tmp_path / "gate cam" / "2023-11-14" / "e1.jpg").write_bytes(b"\xff\xd8jpeg")

    by_url = json.loads(alarm_payload(alarm, event, "url", tmp_path, "https://cams.example/snap"))
    assert by_url["snapshot_url"] == "https://cams.example/snap/gate%20cam/2023-11-14/e1.jpg"
    assert by_url["alarm"]["time"] == by_url["event"]["time"] == "2023-11-14T22:13:20.250Z"
    assert by_url["event"]["value"] is None and by_url["event"]["values"] == {"bounds": [None, 10.0], "iqr": None}
    assert "snapshot_base64" not in by_url
    assert json.loads(alarm_payload(alarm, event, "url"))["snapshot_url"] is None  # no base URL configured

    inline = json.loads(alarm_payload(alarm, event, "base64", tmp_path))
    assert base64.b64decode(inline["snapshot_base64"]) == b"\xff\xd8jpeg" and "snapshot_url" not in inline
    assert json.loads(alarm_payload(alarm, event, "base64", tmp_path / "gone"))["snapshot_base64"] is None

    bare = json.loads(alarm_payload(alarm, event, "none"))
    assert not {"snapshot_url", "snapshot_base64"} & set(bare) and bare["event"]["snapshot"] == event["snapshot"]


def test_webhook_config_guards_its_secret() -> None:
    hook = {"name": "ops", "url": "https://hooks.example/alarm", "secret": SECRET, "headers": {"x-token": "t0ken"}}
    config = DeliveryConfig(webhooks=[hook])
    channel = WebhookChannel(config.webhooks[0])
    channel.close()
    for text in (repr(config), str(config), repr(config.webhooks[0]), repr(channel)):
        assert SECRET not in text and "t0ken" not in text
    assert (config.max_attempts, config.max_age_s, config.backoff.max_s) == (0, 86400.0, 300.0)
    webhook = config.webhooks[0]
    assert (webhook.timeout_s, webhook.rate_per_s, webhook.snapshot) == (5.0, 10.0, "url")
    assert webhook.headers == hook["headers"]

    for secret, message in (
        ("TOPSECRET" + SECRET[6:], "must start with 'whsec_'"),
        ("whsec_TOPSECRET!!not-base64", "not base64"),
        ("whsec_" + base64.b64encode(b"TOPSECRET").decode(), "at least 24 bytes"),
    ):
        with pytest.raises(ValidationError, match=message) as info:
            DeliveryConfig(webhooks=[hook | {"secret": secret}])
        assert secret not in str(info.value) and "TOPSECRET" not in str(info.value)
    for webhooks, message in (([hook, hook], "unique: ops"), ([hook | {"name": "mqtt"}], "'mqtt'")):
        with pytest.raises(ValidationError, match=message) as info:
            DeliveryConfig(webhooks=webhooks)
        assert SECRET not in str(info.value)
    with pytest.raises(ValidationError, match="backoff.max_s"):
        BackoffConfig(initial_s=10, max_s=5)


def test_responses_are_classified_for_retry_or_dead_letter() -> None:
    def result(status: int, **headers: str):
        return classify(httpx.Response(status, headers=headers, text="why"))

    assert result(204).ok and not result(204).permanent
    for status in (500, 503, 408, 429):
        assert not result(status).ok and not result(status).permanent
    for status in (301, 400, 401, 404, 410, 422):
        assert result(status).permanent and result(status).response == "why"
    assert result(429, **{"retry-after": "2.5"}).retry_after_s == 2.5
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480.0) == 30.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412600.0) == 0.0  # already past
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_backoff_jitter_only_shortens() -> None:
    backoff = BackoffConfig(initial_s=1, max_s=300, jitter=0.5)
    for failures, base in ((1, 1), (2, 2), (5, 16), (20, 300), (500, 300)):
        delays = [backoff.delay(failures) for _ in range(200)]
        assert base * 0.5 <= min(delays) < max(delays) <= base
