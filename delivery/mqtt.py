"""MQTT output for NVR and Home Assistant users: alarms, live counts and availability.

Topics (``prefix`` is :attr:`MqttConfig.topic_prefix`, ``camera`` the camera name):

====================================  ==========================================  ===  ========
topic                                 payload                                     QoS  retained
====================================  ==========================================  ===  ========
``{prefix}/{camera}/alarm``           the alarm JSON (:func:`delivery.outbox.  1    no
                                      alarm_payload`), one message per alarm
``{prefix}/{camera}/counts``          ``{"ts", "visible": {class: n},             1    yes
                                      "zones": {zone: {class: n}}}``
``{prefix}/{camera}/status``          ``online`` / ``offline``                    1    yes
``{prefix}/status``                   ``online`` / ``offline`` (last will)        1    yes
====================================  ==========================================  ===  ========

Alarms are not retained: a subscriber connecting later must not take an old alarm
for a new one (the store and the outbox keep the history). Counts and statuses are
retained so a dashboard shows the current state the moment it subscribes. The
service status is the connection's last will, so the broker itself says ``offline``
when the process dies without a clean disconnect (crash, ``kill -9``, lost network).

Delivery is at least once (QoS 1): a message whose PUBACK did not arrive in time is
reported as failed and retried by the outbox, yet may still reach the broker, so
consumers deduplicate alarms by their ``id``.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
from collections.abc import Mapping
from typing import Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from delivery.outbox import DeliveryResult, SnapshotMode

log = logging.getLogger(__name__)

ONLINE, OFFLINE = "online", "offline"
# Reconnect backoff (s): doubles from the first to the cap while the broker stays away. A short cap, so
# alarms flow again within seconds of the broker's return; an attempt costs the broker one refused connect.
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 5


class MqttConfig(BaseModel):
    """Where the broker is and how maskwatch names its topics (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535, description="1883 plain, usually 8883 with tls.")
    username: str | None = None
    password: SecretStr | None = Field(None, description="Never printed or logged.")
    client_id: str = Field(
        default_factory=lambda: f"maskwatch-{socket.gethostname()}",
        description="Unique per broker: a second client with the same id disconnects the first.",
    )
    topic_prefix: str = Field("maskwatch", min_length=1)
    qos: Literal[1, 2] = Field(1, description="0 is not offered: an alarm counts as delivered only once acknowledged.")
    keepalive: int = Field(30, ge=5, description="Seconds; the broker fires the last will after 1.5× this of silence.")
    tls: bool = Field(False, description="Verify the broker's certificate against the system CAs.")
    snapshot: SnapshotMode = Field("url", description="Event snapshot in the alarm: URL, inline base64 JPEG, or none.")

    def alarm_topic(self, camera: str) -> str:
        return f"{self.topic_prefix}/{_segment(camera)}/alarm"

    def counts_topic(self, camera: str) -> str:
        return f"{self.topic_prefix}/{_segment(camera)}/counts"

    def status_topic(self, camera: str | None = None) -> str:
        """The camera's status topic, or the service's (the last will) when ``camera`` is None."""
        if camera is None:
            return f"{self.topic_prefix}/status"
        return f"{self.topic_prefix}/{_segment(camera)}/status"


def _segment(name: str) -> str:
    """A camera name as one topic level: ``/`` would add levels, ``+`` and ``#`` are wildcards."""
    return name.replace("/", "_").replace("+", "_").replace("#", "_")


class MqttPublisher:
    """One broker connection kept up in paho's network thread; publishes wait for the broker's ack.

    The last will (``offline`` on the service status) is registered before the first
    connect; ``online`` is published on every (re)connect, together with every
    camera's status, since a broker without persistence forgets retained messages
    when it restarts.
    """

    def __init__(self, config: MqttConfig) -> None:
        self.config = config
        self._connected = threading.Event()
        self._cameras: dict[str, bool] = {}  # camera → online, as the broker last acknowledged it
        self._lock = threading.Lock()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=config.client_id)
        if config.username is not None:
            password = config.password.get_secret_value() if config.password is not None else None
            client.username_pw_set(config.username, password)
        if config.tls:
            client.tls_set_context(ssl.create_default_context())
        client.will_set(config.status_topic(), OFFLINE, qos=config.qos, retain=True)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._client = client

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def connect(self, timeout: float = 5.0) -> bool:
        """Start connecting in the background; True when connected within ``timeout`` s.

        False is not fatal: the network thread keeps retrying with backoff, and
        publishes fail (so the outbox retries) until it succeeds.
        """
        self._client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive)
        self._client.loop_start()
        if not self._connected.wait(timeout):
            log.warning(
                "MQTT broker %s:%d not reachable yet; retrying in the background", self.config.host, self.config.port
            )
        return self.connected

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False, timeout: float = 5) -> bool:
        """Publish and wait for the broker's acknowledgement (PUBACK for QoS 1).

        False when not connected or not acknowledged within ``timeout`` s. Nothing is
        handed to paho while disconnected: it would queue the message and send it on
        reconnect, behind the back of a caller who was told it failed.
        """
        if not self.connected:
            log.debug("MQTT not connected; not publishing to %s", topic)
            return False
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:  # connection dropped meanwhile, or paho's queue is full
            log.warning("MQTT publish to %s failed: %s", topic, exc)
            return False
        if not info.is_published():
            log.warning("MQTT publish to %s not acknowledged within %.1f s", topic, timeout)
            return False
        return True

    def publish_counts(
        self, camera: str, ts: float, visible: Mapping[str, int], occupancy: Mapping[str, Mapping[str, int]]
    ) -> bool:
        """Retained ``{"ts", "visible": {class: n}, "zones": {zone: {class: n}}}`` for a dashboard's first look."""
        payload = json.dumps({"ts": ts, "visible": dict(visible), "zones": {z: dict(c) for z, c in occupancy.items()}})
        return self.publish(self.config.counts_topic(camera), payload, qos=self.config.qos, retain=True)

    def camera_status(self, camera: str, online: bool) -> bool:
        """Retained ``online``/``offline`` for one camera; re-announced after every reconnect.

        Cheap to call every second: a status the broker already holds is not sent again.
        """
        with self._lock:
            if self._cameras.get(camera) is online:
                return True
        payload = ONLINE if online else OFFLINE
        if not self.publish(self.config.status_topic(camera), payload, qos=self.config.qos, retain=True):
            return False
        with self._lock:
            self._cameras[camera] = online
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Say ``offline`` (cameras still online, then the service) and disconnect.

        A clean disconnect discards the last will, so the service's ``offline`` is
        published here instead.
        """
        with self._lock:
            online = sorted(camera for camera, is_online in self._cameras.items() if is_online)
        for camera in online:
            self.camera_status(camera, online=False)
        self.publish(self.config.status_topic(), OFFLINE, qos=self.config.qos, retain=True, timeout=timeout)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags, reason: ReasonCode, properties: object
    ) -> None:
        if reason.is_failure:
            log.warning("MQTT broker %s:%d refused the connection: %s", self.config.host, self.config.port, reason)
            return
        log.info("MQTT connected to %s:%d as %s", self.config.host, self.config.port, self.config.client_id)
        # In the network thread: publish without waiting, the acks arrive through this very thread.
        client.publish(self.config.status_topic(), ONLINE, qos=self.config.qos, retain=True)
        with self._lock:
            cameras = dict(self._cameras)
        for camera, online in cameras.items():
            payload = ONLINE if online else OFFLINE
            client.publish(self.config.status_topic(camera), payload, qos=self.config.qos, retain=True)
        self._connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags, reason: ReasonCode, properties: object
    ) -> None:
        if self._connected.is_set():
            log.warning("MQTT disconnected from %s:%d: %s", self.config.host, self.config.port, reason)
        self._connected.clear()


class MqttChannel:
    """The outbox's ``mqtt`` channel: an alarm goes to ``{prefix}/{camera}/alarm``.

    ``ok`` only once the broker acknowledged it. Broker down or slow is always
    retryable; only a payload without a camera, which no retry can fix, is permanent.
    ``message_id`` (the alarm id) and ``timestamp`` are not sent: MQTT 3.1.1 has no
    headers, and the payload carries the alarm's id and time already.
    """

    name = "mqtt"

    def __init__(self, publisher: MqttPublisher, timeout: float = 5.0) -> None:
        self.publisher = publisher
        self.timeout = timeout
        self.snapshot: SnapshotMode = publisher.config.snapshot

    def deliver(self, payload: bytes, message_id: str, timestamp: int) -> DeliveryResult:
        try:
            camera = _camera_of(json.loads(payload))
        except (ValueError, TypeError, KeyError) as exc:
            return DeliveryResult(ok=False, error=f"alarm payload without a camera: {exc!r}", permanent=True)
        topic = self.publisher.config.alarm_topic(camera)
        if not self.publisher.connected:
            return DeliveryResult(ok=False, error=f"not connected to MQTT broker {self._broker}")
        if not self.publisher.publish(topic, payload, qos=self.publisher.config.qos, timeout=self.timeout):
            return DeliveryResult(ok=False, error=f"no PUBACK from {self._broker} for {topic} within {self.timeout} s")
        return DeliveryResult(ok=True, response=f"acknowledged on {topic}")

    def probe(self) -> bool:
        """Connected to the broker: paho reconnects in the background, this only asks whether it has."""
        return self.publisher.connected

    @property
    def _broker(self) -> str:
        return f"{self.publisher.config.host}:{self.publisher.config.port}"


def _camera_of(payload: dict) -> str:
    """The camera of an :func:`delivery.outbox.alarm_payload` body."""
    camera = payload["alarm"]["camera"]
    if not isinstance(camera, str) or not camera:
        raise ValueError(f"camera is {camera!r}")
    return camera


__all__ = ["MqttChannel", "MqttConfig", "MqttPublisher"]
