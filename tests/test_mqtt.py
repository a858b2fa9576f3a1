"""The MQTT channel against a real broker on 127.0.0.1:1883 (Mosquitto, started by .ci/services.sh).

Every test gets its own topic prefix, so retained messages of one test are never
seen by another, and clears what it retained when it ends.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from sqlalchemy import select

from analytics.records import AlarmRecord, EventRecord
from delivery.metrics import DeliveryCollector
from delivery.mqtt import MqttChannel, MqttConfig, MqttPublisher
from delivery.outbox import DeliveryConfig, Sender, alarm_payload
from storage.schema import deliveries
from storage.store import Store

BROKER = ("127.0.0.1", 1883)
REPO = Path(__file__).resolve().parents[1]


def _broker_answers() -> bool:
    try:
        with socket.create_connection(BROKER, timeout=1):
            return True
    except OSError:
        return False


class Subscriber:
    """A separate paho client that records what the broker sends to ``topic`` (retained messages first)."""

    def __init__(self, topic: str) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"mw-test-sub-{uuid.uuid4().hex[:12]}")
        self.client.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = lambda _client, _userdata, message: self.messages.put(message)
        self.client.connect(*BROKER, keepalive=10)
        self.client.loop_start()
        assert subscribed.wait(5), f"no SUBACK for {topic}"

    def next(self, topic: str, timeout: float = 5.0) -> mqtt.MQTTMessage:
        """The next message on ``topic``, skipping others; fails after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                break
            if message.topic == topic:
                return message
        pytest.fail(f"nothing on {topic} within {timeout} s")

    def drain(self, quiet_s: float = 0.3) -> list[mqtt.MQTTMessage]:
        """Everything that arrives until the broker has been quiet for ``quiet_s``."""
        messages = []
        while True:
            try:
                messages.append(self.messages.get(timeout=quiet_s))
            except queue.Empty:
                return messages

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class BrokerRelay:
    """The broker behind a loopback TCP relay that the test cuts and restores, as a broker restart looks to a client."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.relayed: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.up()

    def up(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def down(self) -> None:
        """Refuse new connections and cut the open ones."""
        for sock in [self.listener, *self.relayed]:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # also wakes a blocked accept()
            except OSError:
                pass
            sock.close()
        self.relayed.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # down()
                return
            broker = socket.create_connection(BROKER)
            self.relayed += [client, broker]
            for source, sink in ((client, broker), (broker, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass


def _wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(0.02)
    return condition()


@pytest.fixture
def prefix() -> Iterator[str]:
    """A topic prefix of this test's own; its retained messages are cleared afterwards."""
    if not _broker_answers():
        pytest.skip("no MQTT broker answers on 127.0.0.1:1883 (.ci/services.sh starts Mosquitto)")
    prefix = f"mwtest-{uuid.uuid4().hex}"
    yield prefix
    sweeper = Subscriber(f"{prefix}/#")
    retained = {m.topic for m in sweeper.drain() if m.retain}
    for topic in retained:
        sweeper.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    sweeper.close()


def _config(prefix: str, **overrides: object) -> MqttConfig:
    return MqttConfig(topic_prefix=prefix, client_id=f"mw-test-{uuid.uuid4().hex[:12]}", **overrides)


@pytest.fixture
def publisher(prefix: str) -> Iterator[MqttPublisher]:
    publisher = MqttPublisher(_config(prefix))
    assert publisher.connect(timeout=5)
    yield publisher
    publisher.close()


def _alarm_payload(camera: str) -> bytes:
    """What the Sender hands a channel: :func:`alarm_payload` of an alarm row and its event row."""
    track_uid = uuid.uuid4().hex
    event = {"id": str(uuid.uuid4()), "kind": "zone_enter", "camera": camera, "ts": 1795771588.25, "frame": 41,
             "pts": 1.64, "track_id": 7, "track_uid": track_uid, "class_name": "person", "zone": "swing-radius",
             "line": None, "rule": None, "value": 0.31, "unit": None, "values_json": "{}", "snapshot": None}  # fmt: skip
    alarm = {"id": str(uuid.uuid4()), "rule": "intrusion", "severity": "critical", "camera": camera,
             "ts": event["ts"], "track_id": 7, "track_uid": track_uid, "state": "open"}  # fmt: skip
    return alarm_payload(alarm, event)


def test_alarm_arrives_on_its_topic_with_the_exact_payload_at_qos1_not_retained(
    prefix: str, publisher: MqttPublisher
) -> None:
    topic = f"{prefix}/gate-north/alarm"
    subscriber = Subscriber(topic)
    payload = _alarm_payload("gate-north")

    result = MqttChannel(publisher).deliver(payload, message_id="m-1", timestamp=int(time.time()))

    assert result.ok and result.error is None
    message = subscriber.next(topic)
    assert message.payload == payload
    assert message.qos == 1
    subscriber.close()
    late = Subscriber(f"{prefix}/#")
    retained = {m.topic for m in late.drain()}
    late.close()
    assert f"{prefix}/status" in retained  # retained messages did arrive...
    assert topic not in retained  # ...but not the alarm


def test_an_alarm_in_the_outbox_reaches_the_broker_through_the_sender(
    prefix: str, publisher: MqttPublisher, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    uid = "0123456789abcdef0123456789abcdef"
    event = EventRecord(kind="zone_enter", camera="belt", ts=1795771588.0, frame=3, pts=0.1, track_id=2, track_uid=uid,
                        zone="gate")  # fmt: skip
    alarm = AlarmRecord(event.id, "intrusion", "critical", "belt", event.ts, 2, uid, channels=("mqtt",))
    with Store(url) as store:
        run = store.start_run("belt", "belt.mp4", segmenter="motion", unit="px", started_ts=event.ts)
        store.write(run, events=[event], alarms=[alarm])
    subscriber = Subscriber(f"{prefix}/belt/alarm")

    with Sender(url, {"mqtt": MqttChannel(publisher)}, DeliveryConfig()) as sender:
        assert sender.run_once() == 1
        with sender.engine.connect() as conn:
            state = conn.execute(select(deliveries.c.state)).scalar_one()

    body = json.loads(subscriber.next(f"{prefix}/belt/alarm").payload)
    subscriber.close()
    assert state == "delivered"
    assert (body["alarm"]["id"], body["event"]["id"], body["event"]["zone"]) == (alarm.id, event.id, "gate")
    assert body["alarm"]["track_uid"] == body["event"]["track_uid"] == uid and body["alarm"]["track_id"] == 2


def test_alarms_flow_again_within_seconds_of_the_broker_coming_back(prefix: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    event = EventRecord(kind="zone_enter", camera="belt", ts=1795771588.0, frame=3, pts=0.1, track_id=2,
                        track_uid="0123456789abcdef0123456789abcdef", zone="gate")  # fmt: skip
    alarm = AlarmRecord(event.id, "intrusion", "critical", "belt", event.ts, 2, event.track_uid, channels=("mqtt",))
    with Store(url) as store:
        run = store.start_run("belt", "belt.mp4", segmenter="motion", unit="px", started_ts=event.ts)
        store.write(run, events=[event], alarms=[alarm])
    relay = BrokerRelay()
    publisher = MqttPublisher(_config(prefix, port=relay.port))
    config = DeliveryConfig(probe_s=0.2, idle_s=0.05, backoff={"initial_s": 120, "max_s": 300, "jitter": 0})
    sender = Sender(url, {"mqtt": MqttChannel(publisher, timeout=2)}, config)
    registry = CollectorRegistry()
    registry.register(DeliveryCollector(sender, publisher))
    subscriber = Subscriber(f"{prefix}/belt/alarm")  # straight to the broker
    stop = threading.Event()
    loop = threading.Thread(target=sender.run, args=(stop,))
    try:
        assert publisher.connect(timeout=5)
        assert registry.get_sample_value("maskwatch_mqtt_connected") == 1
        relay.down()  # the broker goes away
        assert _wait_until(lambda: not publisher.connected, 10)
        assert registry.get_sample_value("maskwatch_mqtt_connected") == 0
        assert sender.run_once() == 1  # not connected: the channel now waits 120 s
        relay.up()
        loop.start()
        message = subscriber.next(f"{prefix}/belt/alarm", timeout=20)
        assert _wait_until(lambda: sender.outbox_counts() == {("mqtt", "delivered"): 1}, 5)
    finally:
        stop.set()
        if loop.is_alive():
            loop.join()
        sender.close()
        subscriber.close()
        publisher.close()
        relay.down()
    assert json.loads(message.payload)["alarm"]["id"] == alarm.id
    assert registry.get_sample_value("maskwatch_mqtt_connected") == 0  # closed
    assert sender.attempt_counts() == {("mqtt", "retry"): 1, ("mqtt", "delivered"): 1}
    assert registry.get_sample_value("maskwatch_delivery_attempts_total", {"channel": "mqtt", "outcome": "retry"}) == 1


def test_counts_are_retained_so_a_late_subscriber_sees_the_latest(prefix: str, publisher: MqttPublisher) -> None:
    assert publisher.publish_counts("belt", 100.0, {"bottle": 3}, {"pallet": {"bottle": 1}})
    assert publisher.publish_counts("belt", 101.0, {"bottle": 4, "person": 1}, {"pallet": {"bottle": 2}})

    late = Subscriber(f"{prefix}/belt/counts")
    message = late.next(f"{prefix}/belt/counts")
    late.close()

    assert message.retain and message.qos == 1
    assert json.loads(message.payload) == {
        "ts": 101.0,
        "visible": {"bottle": 4, "person": 1},
        "zones": {"pallet": {"bottle": 2}},
    }


def test_camera_and_service_status_are_retained(prefix: str) -> None:
    publisher = MqttPublisher(_config(prefix))
    assert publisher.connect(timeout=5)

    def retained(topic: str) -> bytes:
        late = Subscriber(topic)
        message = late.next(topic)
        late.close()
        assert message.retain
        return message.payload

    assert publisher.camera_status("dock", online=True)
    assert retained(f"{prefix}/dock/status") == b"online"
    assert retained(f"{prefix}/status") == b"online"
    assert publisher.camera_status("dock", online=False)
    assert retained(f"{prefix}/dock/status") == b"offline"
    assert publisher.camera_status("yard", online=True)

    publisher.close()  # a clean disconnect discards the will: close says offline itself, for cameras too

    assert retained(f"{prefix}/status") == b"offline"
    assert retained(f"{prefix}/yard/status") == b"offline"


def test_last_will_says_offline_when_the_process_is_killed(prefix: str) -> None:
    config = _config(prefix)
    subscriber = Subscriber(f"{prefix}/status")
    script = textwrap.dedent(f"""
        import time
        from delivery.mqtt import MqttConfig, MqttPublisher
        publisher = MqttPublisher(MqttConfig.model_validate_json({config.model_dump_json()!r}))
        assert publisher.connect(timeout=10)
        time.sleep(60)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env)
    try:
        assert subscriber.next(f"{prefix}/status", timeout=20).payload == b"online"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
        message = subscriber.next(f"{prefix}/status", timeout=5)
    finally:
        process.kill()
        process.wait()
        subscriber.close()

    assert message.payload == b"offline" and message.qos == 1
    late = Subscriber(f"{prefix}/status")
    assert late.next(f"{prefix}/status").payload == b"offline"  # and the will is retained
    late.close()


def test_channel_failure_is_retryable_when_the_broker_is_unreachable() -> None:  # needs no broker
    with socket.socket() as probe:  # a port nobody listens on: bound, then released
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    publisher = MqttPublisher(_config("mwtest-unreachable", port=closed_port))
    assert not publisher.connect(timeout=0.5)

    result = MqttChannel(publisher).deliver(_alarm_payload("gate"), message_id="m-2", timestamp=int(time.time()))
    publisher.close()

    assert not result.ok and not result.permanent
    assert f"127.0.0.1:{closed_port}" in result.error
    assert MqttChannel(publisher).name == "mqtt"
    garbled = MqttChannel(publisher).deliver(b"{}", message_id="m-3", timestamp=int(time.time()))
    assert not garbled.ok and garbled.permanent  # no camera to route it to: no retry can help


def test_config_hides_the_password_and_rejects_unknown_keys() -> None:
    config = MqttConfig(username="nvr", password="hunter2")
    assert "hunter2" not in repr(config) and "hunter2" not in config.model_dump_json()
    assert config.client_id == f"maskwatch-{socket.gethostname()}"
    assert config.alarm_topic("a/b#") == "maskwatch/a_b_/alarm"
    with pytest.raises(ValidationError):
        MqttConfig(prefix="x")
    with pytest.raises(ValidationError):
        MqttConfig(qos=0)
