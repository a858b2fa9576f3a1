"""Prometheus metrics of alarm delivery, read at scrape time from a :class:`~delivery.outbox.Sender` and the MQTT link.

``maskwatch serve`` registers one collector beside its own::

    registry.register(DeliveryCollector(sender, mqtt_publisher))  # mqtt_publisher: None without MQTT

======================================================  =======  ==================================================
metric                                                  type     what
======================================================  =======  ==================================================
``maskwatch_delivery_attempts_total{channel,outcome}``  counter  attempts by this sender; outcome ``delivered``,
                                                                 ``retry`` (failed, tried again later) or ``dead``
``maskwatch_delivery_backlog{channel}``                 gauge    deliveries pending in the outbox
``maskwatch_delivery_dead_letters{channel}``            gauge    dead letters kept in the outbox
``maskwatch_mqtt_connected``                            gauge    1 while connected to the broker (MQTT only)
======================================================  =======  ==================================================

Backlog and dead letters come from the outbox itself, so they survive a restart and
count what every sender did; every configured channel is listed, at 0 when idle.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy.exc import OperationalError

from delivery.outbox import Sender

if TYPE_CHECKING:
    from delivery.mqtt import MqttPublisher

log = logging.getLogger(__name__)


class DeliveryCollector:
    """A prometheus_client collector: ``registry.register(DeliveryCollector(sender, mqtt))``."""

    def __init__(self, sender: Sender, mqtt: MqttPublisher | None = None) -> None:
        self.sender = sender
        self.mqtt = mqtt

    def collect(self) -> Iterator[Metric]:
        attempts = CounterMetricFamily(
            "maskwatch_delivery_attempts", "Alarm delivery attempts by this sender", labels=["channel", "outcome"]
        )
        for (channel, outcome), n in sorted(self.sender.attempt_counts().items()):
            attempts.add_metric([channel, outcome], n)
        yield attempts
        try:
            counts = self.sender.outbox_counts()
        except OperationalError:  # the rest of the scrape still answers; the sender logs the outage itself
            log.warning("alarm outbox unreachable: no backlog metrics in this scrape")
        else:
            channels = sorted(set(self.sender.channels) | {channel for channel, _ in counts})
            backlog = GaugeMetricFamily("maskwatch_delivery_backlog", "Alarm deliveries pending", labels=["channel"])
            dead = GaugeMetricFamily(
                "maskwatch_delivery_dead_letters", "Alarm deliveries given up on (dead letters)", labels=["channel"]
            )
            for channel in channels:
                backlog.add_metric([channel], counts.get((channel, "pending"), 0))
                dead.add_metric([channel], counts.get((channel, "dead"), 0))
            yield backlog
            yield dead
        if self.mqtt is not None:
            connected = GaugeMetricFamily("maskwatch_mqtt_connected", "1 while connected to the MQTT broker")
            connected.add_metric([], float(self.mqtt.connected))
            yield connected
