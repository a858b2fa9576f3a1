"""Alarm delivery from the store's outbox: webhooks signed per Standard Webhooks, retried until they land.

The store writes one ``deliveries`` row per (alarm, channel) in the alarm's own
transaction; a :class:`Sender` sends the due ones and records what happened in the
same row. All state lives in the database, so a sender killed at any moment loses
nothing: a delivery in flight is still ``pending`` and goes out again after a restart.
Delivery is therefore *at least once*; receivers dedupe on ``webhook-id``.

A channel is anything with a ``name``, a ``snapshot`` mode, a ``deliver`` and a
``probe`` method (:class:`Channel`): :class:`WebhookChannel` here, MQTT in
:mod:`delivery.mqtt`. Both send the same :func:`alarm_payload`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import json
import logging
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, Self
from urllib.parse import quote

import httpx
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, field_validator, model_validator
from sqlalchemy import Row, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from standardwebhooks import Webhook

from analytics.records import EVENT_COLUMNS
from storage.engine import open_engine
from storage.schema import alarms, cameras, deliveries, events

log = logging.getLogger(__name__)

SnapshotMode = Literal["url", "base64", "none"]
RESPONSE_LIMIT = 2048  # characters of a dead-lettered response kept in ``deliveries.response``
SECRET_PREFIX = "whsec_"
PROBE_TIMEOUT_S = 2.0  # a webhook probe's longest wait: it runs in the sender's loop, ahead of other channels


class _Strict(BaseModel):
    # Errors never echo their input: a webhook secret must not reach a log through a typo beside it.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


def _secret_key(secret: str) -> bytes:
    """The HMAC key inside a ``whsec_<base64>`` secret (padding optional, as the spec's libraries accept)."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"the secret must start with {SECRET_PREFIX!r}")
    body = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except binascii.Error:
        raise ValueError(f"the secret is not base64 after {SECRET_PREFIX!r}") from None


class WebhookConfig(_Strict):
    """One receiver; alarm rules name it in ``notify``. ``secret`` and ``headers`` never show in repr or errors."""

    name: str = Field(min_length=1)
    url: HttpUrl
    secret: SecretStr = Field(description="whsec_<base64 of 24-64 random bytes>, shared with the receiver.")
    timeout_s: float = Field(5.0, gt=0, description="Whole-request timeout; slower counts as a failed attempt.")
    rate_per_s: float = Field(10.0, gt=0, description="At most this many requests in any second to this webhook.")
    snapshot: SnapshotMode = Field("url", description="Event snapshot as a URL, inline base64 JPEG, or left out.")
    headers: dict[str, str] = Field(default_factory=dict, repr=False, description="Extra headers (e.g. auth).")

    @field_validator("secret")
    @classmethod
    def _standard_secret(cls, secret: SecretStr) -> SecretStr:
        if len(_secret_key(secret.get_secret_value())) < 24:
            raise ValueError("the secret must hold at least 24 bytes (Standard Webhooks asks for 24-64)")
        return secret


class BackoffConfig(_Strict):
    """Delay before retry n: ``min(max_s, initial_s * 2**(n-1))``, shortened by up to ``jitter`` of itself.

    Jitter only shortens, so ``max_s`` stays a true cap, and spreads the retries of
    many alarms that failed together (a receiver restart) instead of firing them at once.
    """

    initial_s: float = Field(1.0, gt=0)
    max_s: float = Field(300.0, gt=0)
    jitter: float = Field(0.2, ge=0, lt=1)

    @model_validator(mode="after")
    def _ordered(self) -> BackoffConfig:
        if self.max_s < self.initial_s:
            raise ValueError("backoff.max_s is below backoff.initial_s")
        return self

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th consecutive failure (1-based)."""
        base = min(self.max_s, self.initial_s * 2.0 ** min(failures - 1, 64))
        return base * (1.0 - self.jitter * random.random())


class DeliveryConfig(_Strict):
    """Where alarms go and how hard the sender tries.

    A delivery is retried (connection errors, timeouts, 5xx, 408, 429) until it is
    ``max_age_s`` old (default 24 h) or, when ``max_attempts`` is above 0, has had that
    many attempts; the next failure then dead-letters it. Responses that retrying cannot
    fix (other 4xx, 3xx) dead-letter it at once. Dead letters stay in the outbox with
    their last error and response for an operator.
    """

    webhooks: list[WebhookConfig] = Field(default_factory=list)
    snapshot_base_url: str | None = Field(None, description="Public URL of the snapshot folder, for snapshot_url.")
    max_attempts: int = Field(0, ge=0, description="Attempts before dead-lettering; 0: no limit, max_age_s decides.")
    max_age_s: float = Field(86400.0, gt=0, description="Give up on deliveries older than this (from the alarm write).")
    backoff: BackoffConfig = Field(default_factory=BackoffConfig)
    batch: int = Field(100, ge=1, description="Most deliveries attempted per Sender.run_once pass.")
    probe_s: float = Field(
        5.0, gt=0, description="While a channel backs off, how often to check whether its receiver answers again."
    )
    idle_s: float = Field(0.5, gt=0, description="Sleep of Sender.run when nothing is due.")

    @model_validator(mode="after")
    def _names(self) -> DeliveryConfig:
        names = [w.name for w in self.webhooks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"webhook names must be unique: {', '.join(duplicates)}")
        if "mqtt" in names:
            raise ValueError("'mqtt' is the MQTT channel's name: choose another webhook name")
        return self


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What one attempt achieved; the Sender turns it into the row's next state.

    ``ok``: delivered. ``permanent``: retrying cannot help (dead-letter now). Otherwise
    it is retried, not before ``retry_after_s`` when the receiver asked for a pause.
    ``response`` is the receiver's answer text, kept when the delivery dead-letters.
    """

    ok: bool
    status: int | None = None
    error: str | None = None
    retry_after_s: float | None = None
    permanent: bool = False
    response: str | None = None


class Channel(Protocol):
    """A way out for alarms: webhooks here, MQTT in :mod:`delivery.mqtt`.

    ``deliver`` sends one payload and reports the outcome instead of raising; it may
    block (timeouts, rate limits) since the Sender calls it from its own loop.
    ``message_id`` is stable across retries of one delivery (the alarm id) so a
    receiver can dedupe; ``timestamp`` is the attempt's unix time in seconds.
    ``snapshot`` tells the Sender how to put the event snapshot in the payload.
    ``probe`` tells cheaply, without sending an alarm, whether the receiver answers
    at all; the Sender asks while the channel backs off, to resume it once it is back.
    """

    name: str
    snapshot: SnapshotMode

    def deliver(self, payload: bytes, message_id: str, timestamp: int) -> DeliveryResult: ...

    def probe(self) -> bool: ...


class RateLimiter:
    """A token bucket holding one token, refilled ``rate_per_s`` times a second.

    One token, not ``rate_per_s``: a full bucket would let a backlog burst in twice the
    rate within one second, and the limit promises "at most n in any second".
    """

    def __init__(self, rate_per_s: float) -> None:
        self.interval = 1.0 / rate_per_s
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Wait for the token."""
        with self._lock:
            now = time.monotonic()
            wait, self._next = self._next - now, max(self._next, now) + self.interval
        if wait > 0:
            time.sleep(wait)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header (delay seconds or an HTTP date) as seconds from now; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=dt.UTC)
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def classify(response: httpx.Response) -> DeliveryResult:
    """2xx delivered; 5xx, 408, 429 retried (honouring Retry-After); anything else dead-letters."""
    status = response.status_code
    if 200 <= status < 300:
        return DeliveryResult(True, status)
    error = f"HTTP {status} {response.reason_phrase}".strip()
    text = response.text[:RESPONSE_LIMIT]
    if status >= 500 or status in (408, 429):
        wait = retry_after_seconds(response.headers.get("retry-after"))
        return DeliveryResult(False, status, error, wait, response=text)
    return DeliveryResult(False, status, error, permanent=True, response=text)


class WebhookChannel:
    """POSTs alarms as JSON with Standard Webhooks headers (``webhook-id``, ``-timestamp``, ``-signature``).

    The signature is ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` made by the
    ``standardwebhooks`` library, so receivers verify with any Standard Webhooks library.
    Redirects are not followed: a webhook URL that redirects is a configuration error.
    """

    def __init__(self, config: WebhookConfig) -> None:
        self.name = config.name
        self.snapshot: SnapshotMode = config.snapshot
        self.config = config
        self._signer = Webhook(config.secret.get_secret_value())
        self._client = httpx.Client(timeout=config.timeout_s, follow_redirects=False)
        self._limiter = RateLimiter(config.rate_per_s)

    def __repr__(self) -> str:
        return f"WebhookChannel({self.name!r}, {str(self.config.url)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def deliver(self, payload: bytes, message_id: str, timestamp: int) -> DeliveryResult:
        """One signed POST, after waiting for the rate limit; network trouble is a retryable result."""
        self._limiter.acquire()
        timestamp = max(timestamp, int(time.time()))  # a long rate-limit wait must not send a stale timestamp
        signature = self._signer.sign(message_id, dt.datetime.fromtimestamp(timestamp, dt.UTC), payload.decode())
        headers = {
            **self.config.headers,
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
        }
        try:
            response = self._client.post(str(self.config.url), content=payload, headers=headers)
        except httpx.TimeoutException:
            return DeliveryResult(False, error=f"timed out after {self.config.timeout_s:g} s")
        except httpx.TransportError as exc:
            return DeliveryResult(False, error=f"{type(exc).__name__}: {exc}")
        return classify(response)

    def probe(self) -> bool:
        """A HEAD to the URL, within the rate limit: any answer counts but 502-504 (a gateway without its backend)."""
        self._limiter.acquire()
        timeout = min(self.config.timeout_s, PROBE_TIMEOUT_S)
        try:
            response = self._client.head(str(self.config.url), headers=self.config.headers, timeout=timeout)
        except httpx.TransportError:
            return False
        return response.status_code not in (502, 503, 504)

    def close(self) -> None:
        self._client.close()


def webhook_channels(config: DeliveryConfig) -> dict[str, WebhookChannel]:
    """A channel per configured webhook, by name, for :class:`Sender`."""
    return {w.name: WebhookChannel(w) for w in config.webhooks}


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _finite(value: Any) -> Any:
    """NaN and infinities as null: strict JSON parsers (most receivers) reject them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def alarm_payload(
    alarm_row: Mapping[str, Any],
    event_row: Mapping[str, Any],
    snapshot_mode: SnapshotMode = "url",
    snapshot_root: Path | None = None,
    snapshot_base_url: str | None = None,
) -> bytes:
    """The JSON body every channel sends for an alarm (compact UTF-8, ASCII-escaped).

    ``alarm_row`` and ``event_row`` are rows of the ``alarms`` and ``events`` tables
    with the camera's name under ``camera``. The body is::

        {"type": "alarm",
         "alarm": {id, rule, severity, camera, time, ts, track_id, track_uid, state},
         "event": {time, and every field of analytics.records.EventRecord (EVENT_COLUMNS)},
         "snapshot_url": ... | "snapshot_base64": ..., "context_url": ..., "clip_url": ...}

    ``time`` is ISO 8601 UTC (``...Z``), ``ts`` epoch seconds; ``track_uid`` identifies the
    track across runs and cameras (``track_id`` is its short display number; both null
    for alarms about no single track); ``event.values`` is the decoded ``values_json``
    and ``event.snapshot`` the path relative to the snapshot folder. ``snapshot_url`` (mode ``url``) joins it to
    ``snapshot_base_url``; ``snapshot_base64`` (mode ``base64``) is the JPEG read from
    ``snapshot_root``. Either is null when the event has no snapshot, no base URL is
    configured or the file is gone; mode ``none`` leaves both keys out.

    ``context_url`` (the whole frame, the object outlined) and ``clip_url`` (the alarm's MP4,
    written a few seconds after the alarm: a receiver fetching it at once may have to retry)
    are joined to ``snapshot_base_url`` the same way (:func:`media_url`), in modes ``url`` and
    ``base64`` alike (a video is never inlined); null without a base URL, context image or
    clip; mode ``none`` leaves them out too.
    """
    a, e = alarm_row, event_row
    event = {name: e.get(name) for name in EVENT_COLUMNS if name != "values"}  # rows from before 0004: no media columns
    body: dict[str, Any] = {
        "type": "alarm",
        "alarm": {"id": a["id"], "rule": a["rule"], "severity": a["severity"], "camera": a["camera"],
                  "time": _iso(a["ts"]), "ts": a["ts"], "track_id": a["track_id"], "track_uid": a["track_uid"],
                  "state": a["state"]},
        "event": event | {"time": _iso(e["ts"]), "values": json.loads(e["values_json"])},
    }  # fmt: skip
    snapshot = e["snapshot"]
    if snapshot_mode == "none":
        return _json(body)
    if snapshot_mode == "url":
        body["snapshot_url"] = media_url(snapshot_base_url, snapshot)
    else:
        path = Path(snapshot_root, snapshot) if snapshot and snapshot_root else None
        body["snapshot_base64"] = base64.b64encode(path.read_bytes()).decode() if path and path.is_file() else None
    body["context_url"] = media_url(snapshot_base_url, e.get("context_snapshot"))
    body["clip_url"] = media_url(snapshot_base_url, e.get("clip"))
    return _json(body)


def media_url(base_url: str | None, relative: str | None) -> str | None:
    """The public URL of an event's media file (snapshot, context image, clip) from its stored relative path.

    ``relative`` is quoted (spaces, ``#``) but its slashes kept; None without a base URL or a path.
    """
    return f"{base_url.rstrip('/')}/{quote(relative)}" if base_url and relative else None


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(_finite(body), separators=(",", ":"), allow_nan=False).encode()


class Sender:
    """Sends due outbox rows through their channels and records each outcome in the row.

    One pass (:meth:`run_once`) takes due rows oldest first, one at a time: on
    PostgreSQL with ``SELECT ... FOR UPDATE SKIP LOCKED`` inside a transaction held
    across the delivery, so several senders share the outbox and a sender that dies
    releases its row with its connection; on SQLite one sender is assumed (two would
    sometimes both send a row: at least once still holds). On SQLite every write is
    the first statement of its own transaction, so the busy timeout covers a pipeline
    writing alarms in another process at the same time.

    A channel that fails with a retryable error is paused (its own exponential backoff,
    or Retry-After) so one dead receiver costs one timeout per backoff, not one per
    queued alarm, and the other channels keep flowing. Meanwhile it is probed every
    ``probe_s`` (:meth:`Channel.probe`, no alarm sent): when a probe answers after one
    did not, the receiver is back, and the channel and its waiting deliveries are due
    at once instead of after a backoff of minutes. Rows for a channel name this
    sender does not have stay pending, marked in ``last_error``: one sender should hold
    every channel (webhooks and MQTT); a ``partial`` sender (``serve --ray``'s sender
    actors, webhooks only, beside the service's full one) leaves them unmarked.
    """

    def __init__(
        self, url: str, channels: Mapping[str, Channel], config: DeliveryConfig, snapshot_root: Path | None = None,
        *, partial: bool = False,
    ) -> None:
        self.engine = open_engine(url)  # a sender may start before the first pipeline
        self.channels = dict(channels)
        self.partial = partial  # holds some channels only (serve --ray's sender actors): others' rows left unmarked
        self.config = config
        self.snapshot_root = snapshot_root
        self._locks = self.engine.dialect.name == "postgresql"
        self._paused: dict[str, float] = {}  # channel -> paused until (scheduling clock)
        self._failures: dict[str, int] = {}  # channel -> consecutive retryable failures
        self._probe_at: dict[str, float] = {}  # paused channel -> its next probe (scheduling clock)
        self._silent: set[str] = set()  # paused channels a probe found not answering
        self._warned: set[str] = set()
        self._attempts: Counter[tuple[str, str]] = Counter()  # (channel, outcome) -> attempts, for metrics
        self._attempts_lock = threading.Lock()  # the sender thread counts, a metrics scrape reads

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the database connections; the channels belong to the caller."""
        self.engine.dispose()

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set; sleeps ``idle_s`` when nothing was due or the database is away."""
        while not stop.is_set():
            try:
                attempted = self.run_once()
            except OperationalError:
                log.exception("alarm outbox unreachable; retrying in %.1f s", self.config.idle_s)
                attempted = 0
            if not attempted:
                stop.wait(self.config.idle_s)

    def run_once(self, now: float | None = None) -> int:
        """Attempt up to ``config.batch`` due deliveries; return how many were attempted.

        ``now`` is the scheduling clock (what is due, when the next attempt is); None
        uses the wall clock. The ``webhook-timestamp`` is always the wall clock:
        receivers reject stale ones.
        """
        clock = time.time() if now is None else now
        if not self.partial:  # another sender holds the channels this one lacks
            self._mark_unconfigured(clock)
        self._probe_paused(clock)
        attempted = 0
        while attempted < self.config.batch and self._attempt_next(now):
            attempted += 1
        return attempted

    def _mark_unconfigured(self, now: float) -> None:
        """Say in ``last_error`` (and the log, once per name) why rows for unknown channels do not move."""
        due = (deliveries.c.state == "pending") & (deliveries.c.next_attempt_ts <= now)
        unknown = due & deliveries.c.channel.not_in(list(self.channels))
        with self.engine.connect() as conn:
            names = conn.execute(select(deliveries.c.channel).distinct().where(unknown)).scalars().all()
            conn.commit()  # SQLite: end the read, so the update below starts a write transaction of its own
            for name in names:
                error = f"no channel named {name!r} is configured in this sender"
                mark = unknown & (deliveries.c.channel == name) & deliveries.c.last_error.is_distinct_from(error)
                conn.execute(update(deliveries).where(mark).values(last_error=error))
                conn.commit()
                if name not in self._warned:
                    self._warned.add(name)
                    log.warning("alarm deliveries to %r wait: %s", name, error)

    def attempt_counts(self) -> dict[tuple[str, str], int]:
        """Attempts made by this sender per (channel, outcome): ``delivered``, ``retry`` or ``dead``."""
        with self._attempts_lock:
            return dict(self._attempts)

    def outbox_counts(self) -> dict[tuple[str, str], int]:
        """Deliveries in the outbox per (channel, state): ``pending``, ``delivered`` or ``dead``."""
        d = deliveries.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(d.channel, d.state, func.count()).group_by(d.channel, d.state)).all()
        return {(channel, state): n for channel, state, n in rows}

    def _probe_paused(self, clock: float) -> None:
        """Probe each backing-off channel every ``probe_s``; one answering after a silent probe resumes at once.

        Only that change counts: a receiver that answers yet fails deliveries (a 500, a
        missing PUBACK) keeps its backoff rather than getting an attempt per probe.
        """
        for name, until in list(self._paused.items()):
            if until <= clock or self._probe_at.get(name, math.inf) > clock:
                continue
            self._probe_at[name] = clock + self.config.probe_s
            try:
                answers = self.channels[name].probe()
            except Exception:  # a broken channel must not stop the others
                log.exception("channel %r failed its probe", name)
                answers = False
            if not answers:
                self._silent.add(name)
            elif name in self._silent:
                self._resume(name, clock)

    def _resume(self, name: str, clock: float) -> None:
        """The channel's receiver answers again: end its pause and make its waiting deliveries due now."""
        for state in (self._paused, self._failures, self._probe_at):
            state.pop(name, None)
        self._silent.discard(name)
        d = deliveries.c
        waiting = (d.channel == name) & (d.state == "pending") & (d.next_attempt_ts > clock)
        with self.engine.connect() as conn:
            moved = conn.execute(update(deliveries).where(waiting).values(next_attempt_ts=clock)).rowcount
            conn.commit()
        log.info("alarm channel %r answers again; %d waiting deliveries are due now", name, moved)

    def _attempt_next(self, now: float | None) -> bool:
        """Claim, deliver and record the oldest due delivery of a ready channel; False when there is none."""
        clock = time.time() if now is None else now
        ready = [name for name in self.channels if self._paused.get(name, -math.inf) <= clock]
        if not ready:
            return False
        d = deliveries.c
        due = select(deliveries).where(d.state == "pending", d.next_attempt_ts <= clock, d.channel.in_(ready))
        due = due.order_by(d.id).limit(1)
        if self._locks:
            due = due.with_for_update(skip_locked=True)
        with self.engine.connect() as conn:  # on PostgreSQL the row lock lasts until the outcome is committed
            row = conn.execute(due).one_or_none()
            if row is None:
                return False
            payload = self._payload(conn, row)
            if not self._locks:
                conn.commit()  # SQLite: no read transaction stays open across the delivery
            channel = self.channels[row.channel]
            try:
                result = channel.deliver(payload, row.alarm_id, int(time.time()))
            except Exception as exc:  # a broken channel must not stop the others; the row is retried
                log.exception("channel %r failed on alarm %s", row.channel, row.alarm_id)
                result = DeliveryResult(False, error=f"{type(exc).__name__}: {exc}")
            values = self._outcome(row, result, now)
            conn.execute(update(deliveries).where(deliveries.c.id == row.id).values(**values))
            conn.commit()
        outcome = {"delivered": "delivered", "dead": "dead"}.get(values.get("state"), "retry")
        with self._attempts_lock:
            self._attempts[row.channel, outcome] += 1
        return True

    def _payload(self, conn: Connection, row: Row) -> bytes:
        alarm = conn.execute(
            select(alarms, cameras.c.name.label("camera")).join(cameras).where(alarms.c.id == row.alarm_id)
        ).one()
        event = conn.execute(
            select(events, cameras.c.name.label("camera")).join(cameras).where(events.c.id == row.event_id)
        ).one()
        mode = self.channels[row.channel].snapshot
        return alarm_payload(alarm._mapping, event._mapping, mode, self.snapshot_root, self.config.snapshot_base_url)

    def _outcome(self, row: Row, result: DeliveryResult, now: float | None) -> dict[str, Any]:
        """The row's new columns after an attempt; also pauses or resumes the channel."""
        done = time.time() if now is None else now  # after the attempt: Retry-After counts from the response
        attempts = row.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "last_status": result.status, "last_error": result.error}
        if result.ok or result.permanent:
            for state in (self._paused, self._failures, self._probe_at):
                state.pop(row.channel, None)
            self._silent.discard(row.channel)
            if result.ok:
                return values | {"state": "delivered", "delivered_ts": done}
            return values | {"state": "dead", "response": result.response}
        failures = self._failures[row.channel] = self._failures.get(row.channel, 0) + 1
        wait = result.retry_after_s or 0.0
        self._paused[row.channel] = done + max(self.config.backoff.delay(failures), wait)
        self._probe_at[row.channel] = done + wait  # probe at once (Retry-After permitting): is it away or failing?
        age = done - row.created_ts
        if (self.config.max_attempts and attempts >= self.config.max_attempts) or age >= self.config.max_age_s:
            error = f"gave up after {attempts} attempts in {age:.0f} s: {result.error}"
            return values | {"state": "dead", "last_error": error, "response": result.response}
        return values | {"next_attempt_ts": done + max(self.config.backoff.delay(attempts), wait)}


def outbox_status(url: str, camera: str | None = None, state: str | None = None) -> pd.DataFrame:
    """One row per delivery, oldest first: the alarm, channel, state, attempts, last status/error and next retry.

    ``next_attempt`` (UTC) is when a pending delivery is tried again (NaT once delivered
    or dead); ``response`` is what dead-lettered it.
    """
    d = deliveries.c
    columns = (d.id, d.alarm_id, cameras.c.name.label("camera"), alarms.c.rule, alarms.c.severity, d.channel, d.state,
               d.attempts, d.last_status, d.last_error, d.response, d.next_attempt_ts, d.created_ts, d.delivered_ts)  # fmt: skip
    stmt = (
        select(*columns)
        .join(alarms, alarms.c.id == d.alarm_id)
        .join(cameras, cameras.c.id == d.camera_id)
        .order_by(d.id)
    )
    if camera is not None:
        stmt = stmt.where(cameras.c.name == camera)
    if state is not None:
        stmt = stmt.where(deliveries.c.state == state)
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            frame = pd.read_sql(stmt, conn, dtype={"last_status": "Int64", "delivered_ts": "float64"})
    finally:
        engine.dispose()
    pending = frame.state == "pending"
    frame["next_attempt"] = pd.to_datetime(frame.next_attempt_ts.where(pending), unit="s", utc=True)
    return frame


def pending_count(url: str) -> int:
    """Deliveries still to be sent: the alarm backlog metric."""
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            stmt = select(func.count()).select_from(deliveries).where(deliveries.c.state == "pending")
            return conn.execute(stmt).scalar_one()
    finally:
        engine.dispose()
