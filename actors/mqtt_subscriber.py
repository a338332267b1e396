"""MQTT subscriber actor: paho callbacks → AlertReceived; accept in micro-batches; ack; fan out."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pykka
import pykka.messages
import redis
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.matcher import MQTTMatcher
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tripline.actors import Supervised
from tripline.actors._retry import Backoff, tell_later
from tripline.adapters import mqtt_io
from tripline.conf.schema import MqttConfig
from tripline.messages import (
    Alert,
    AlertReceived,
    ConnectionQuery,
    EndSession,
    Ping,
    PublishEvent,
    Snapshot,
)
from tripline.pipeline.prioritise import critical_first
from tripline.pipeline.validate import Rejected
from tripline.service.accept import (
    Accepted,
    Acceptor,
    Checked,
    Conflict,
    Quarantined,
    Verdict,
    snapshots,
)
from tripline.service.workers import implicit_group

log = logging.getLogger("tripline.mqtt")

# A round trip per alert cannot keep up with the broker; ~100 alerts per pipeline can (measured:
# docs/architecture.md, "Measurements the shape rests on").
BATCH_MAX = 100
RECORD_MOST = 1000
"""Most alerts recorded in one round trip. While Redis is away alerts gather here (a failover's
seconds at thousands a second); taken back in one batch, one pipeline of megabytes outlasted
the socket timeout against a Redis catching up (the fault suite's Sentinel failover: 13,881
alerts retried for minutes). In parts, each part acknowledged as it is recorded."""
# While Redis refuses the batch: the alerts stay buffered here and unacknowledged at the broker,
# however long it takes (the broker keeps them too), so there is no limit to the tries.
_ACCEPT_AGAIN = Backoff(first=0.2, cap=5.0)


_PROXY_MESSAGES = (
    pykka.messages.ProxyCall,
    pykka.messages.ProxyGetAttr,
    pykka.messages.ProxySetAttr,
)


class MqttSubscriber(Supervised, pykka.ThreadingActor):
    """Owns the paho client. Acknowledges an alert only after it is durably recorded."""

    def __init__(
        self,
        *,
        conf: MqttConfig,
        acceptor: Acceptor,
        route: Callable[[list[Alert], dict[str, Snapshot]], None],
        group_of: str = "",
        takeover: bool = False,
    ) -> None:
        """Keep collaborators; `route` fans accepted alerts out to the shards.

        `group_of`: the client id the workers' implicit group is named after (the critical
        subscriber's own id has a suffix); empty: `conf.client_id`.
        `takeover`: connect as a lapsed instance's session (conf.client_id is its id) to
        take in what the broker holds for it, subscribing to nothing (see EndSession).
        """
        super().__init__()
        self._conf, self._acceptor, self._route = conf, acceptor, route
        self._group_of = group_of or conf.client_id
        self._takeover = takeover
        self._last_message = time.monotonic()  # paho's thread writes it: one float, atomic
        self._ended = False
        self._buffer: list[tuple[AlertReceived, Checked | Rejected]] = []
        self._failures = 0
        self._last_flush = 0.0
        self._flush_queued = False
        self.connected = threading.Event()
        self._subscribe_mid: int | None = None
        self._urgent = threading.Event()  # set by paho for a critical alert: ends a linger
        self._client: mqtt_io.Client | None = None

    def on_start(self) -> None:
        """Connect with a persistent session; subscription happens in on_connect."""
        client = mqtt_io.Client(  # paho's, its socket read in chunks
            CallbackAPIVersion.VERSION2,
            client_id=self._conf.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if self._conf.username:
            client.username_pw_set(self._conf.username, self._conf.password or None)
        if self._conf.tls:
            # Verified against ca_file (or the system store); hostname checked, never skipped.
            client.tls_set(
                ca_certs=self._conf.ca_file or None,
                certfile=self._conf.cert_file or None,
                keyfile=self._conf.key_file or None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_socket_open = _no_delay
        # paho asks its matcher about every message: ours makes no garbage (see _Matcher).
        client._on_message_filtered = _Matcher()  # noqa: SLF001
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._conf.session_expiry_seconds
        props.ReceiveMaximum = self._conf.receive_maximum
        client.connect_async(
            self._conf.host,
            self._conf.port,
            self._conf.keepalive_seconds,
            clean_start=False,
            properties=props,
        )
        client.loop_start()
        self._client = client

    def on_stop(self) -> None:
        """Flush what is buffered, then disconnect (unacked alerts stay with the broker)."""
        if self._buffer:
            try:
                self._flush()
            except redis.RedisError:
                log.warning(
                    "stopping with %d unacknowledged alerts (broker keeps them)", len(self._buffer)
                )
        if self._client is not None:
            if not self._ended:
                self._client.disconnect()
            mqtt_io.stop_network(self._client)  # its thread may end on its own meanwhile

    # paho thread: check and tell, nothing more.
    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        # msg.topic is a property that decodes the topic's bytes on every read: read once.
        payload, retain, topic = bytes(msg.payload), bool(msg.retain), msg.topic
        self._last_message = time.monotonic()
        # Checked here (the payload's one decode): a critical alert is known as such before it
        # reaches the inbox, and wakes a lingering subscriber at once. check() never raises
        # (an exception here would end paho's network thread): a payload it fails on comes
        # back rejected, and dead-lettered.
        checked = self._acceptor.check(payload, retain, topic=topic)
        self.actor_ref.tell(
            AlertReceived(
                payload=payload,
                topic=topic,
                mid=msg.mid,
                qos=msg.qos,
                retain=retain,
                checked=checked,
            )
        )
        if isinstance(checked, Checked) and checked.urgent:
            self._urgent.set()

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        _flags: object,
        reason: ReasonCode,
        _props: object,
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        topic = self._conf.topic
        if self._takeover:
            self._last_message = time.monotonic()
            # A lapsed instance's session: the broker stops routing its share of new alerts
            # here once it has no subscription, and still delivers what it had queued and in
            # flight for it (measured on Mosquitto 2.0.11: docs/architecture.md, "Leases").
            client.unsubscribe(_subscriptions(topic, self._conf.shared_group, self._group_of))
            log.warning("taking over broker session %s", self._conf.client_id)
            self.connected.set()
            return
        if self._conf.shared_group:
            # An instance scaled out keeps its client id (its session, its pending index); the
            # session may still hold the plain subscription, which would deliver every alert
            # to it besides its share.
            client.unsubscribe(topic)
            topic = f"$share/{self._conf.shared_group}/{topic}"
        else:
            # Back to one process after `tripline run --workers N`: the session may still hold
            # the workers' implicit group, which would deliver every alert a second time.
            client.unsubscribe(f"$share/{implicit_group(self._group_of)}/{topic}")
        # Subscribing here means every reconnect resubscribes. Connected (and so ready) only
        # once the broker has acknowledged it: an alert published before the SUBACK of a first
        # session has nobody to go to and is dropped by the broker.
        _result, self._subscribe_mid = client.subscribe(topic, qos=self._conf.qos)
        log.info("connected to %s:%d, subscribing to %s", self._conf.host, self._conf.port, topic)

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        _props: object,
    ) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            # Not ready: an operator sees it in /readyz and this line; nothing is received.
            log.error("broker refused the subscription to %s: %s", self._conf.topic, refused)
            return
        log.info("subscription to %s acknowledged", self._conf.topic)
        self.connected.set()

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: object,
        reason: ReasonCode,
        _props: object,
    ) -> None:
        self.connected.clear()
        log.warning("disconnected from broker: %s", reason)

    def _handle_receive(self, message: Any) -> Any:  # noqa: ANN401
        # pykka answers a proxy's call or attribute read without on_receive: a question too.
        if isinstance(message, _PROXY_MESSAGES):
            self._flush_before_answering()
        return super()._handle_receive(message)

    def _flush_before_answering(self) -> None:
        """Flush what is buffered before a question (a /readyz probe, a proxy read) is answered.

        The last alerts of a burst arrived with it behind them in the inbox: unflushed, they
        would wait for an alert that may never come (unacknowledged, so the broker sends no
        more once its in-flight window is full).
        """
        if self._buffer and self._failures == 0:
            self._flush_or_retry()

    def on_receive(self, message: Any) -> Any:  # noqa: ANN401
        """Buffer alerts; flush at BATCH_MAX, or when the inbox runs dry (see _flush_or_linger)."""
        if not isinstance(message, AlertReceived):
            self._flush_before_answering()
        match message:
            case AlertReceived():
                checked = message.checked
                if checked is None:
                    checked = self._acceptor.check(
                        message.payload, message.retain, topic=message.topic
                    )
                self._buffer.append((message, checked))
                self._on_buffered(urgent=isinstance(checked, Checked) and checked.urgent)
            case _Flush():
                self._flush_queued = False  # the check above flushed what gathered
            case _Retry():
                self._failures_retry()
            case PublishEvent():
                assert self._client is not None  # noqa: S101 - on_start ran
                # QoS 1: paho keeps it while the broker is away and sends it on reconnect.
                self._client.publish(self._conf.events_topic, message.payload, qos=1)
            case Ping():
                return True
            case ConnectionQuery():
                return self.connected.is_set()
            case EndSession():
                return self._end_session(message.quiet)
            case _:
                return super().on_receive(message)
        return None

    def _end_session(self, quiet: float) -> bool:
        """Ends a taken-over session once it has been quiet for `quiet` seconds.

        False while it is not: not connected, a message within `quiet`, or alerts not yet
        recorded (unacknowledged). Ended with a session expiry of 0, so the broker forgets it
        and stops counting it in the shared group's rotation.
        """
        if not self._takeover or self._client is None:
            return False
        if self._buffer and self._failures == 0:
            self._flush_or_retry()
        idle = time.monotonic() - self._last_message
        if not self.connected.is_set() or self._buffer or idle < quiet:
            return False
        props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 0
        self._client.disconnect(properties=props)
        self._ended = True
        log.warning("broker session %s ended", self._conf.client_id)
        return True

    def _on_buffered(self, *, urgent: bool) -> None:
        if self._failures:
            return  # while Redis is failing only the _Retry timer flushes (one at a time)
        if len(self._buffer) >= BATCH_MAX or urgent:  # a critical alert never lingers
            self._flush_or_retry()
        elif not self._flush_queued and self.actor_inbox.empty():
            self._flush_or_linger()

    def _flush_or_linger(self) -> None:
        """Flush at once when idle; under load, let alerts gather for `batch_linger_ms`.

        Idle means the last flush was longer ago than the linger: a lone alert waits for
        nothing.

        Every batch costs a Redis round trip here and thread hand-offs in every stage behind
        this one; flushing whenever the inbox runs dry would make batches of two or three alerts
        under load (README "Performance"). The wait is this actor's own: paho keeps filling the
        inbox meanwhile, and the _Flush queued behind those alerts flushes them all. A critical
        alert ends the wait (paho sets `_urgent`) and is flushed as soon as it is taken in.

        It holds this thread on purpose. Told a _Flush later instead (the thread free, taking
        each alert as it came), critical alerts' publish-to-callback p50 rose from ~10 to ~16 ms
        and p99 from ~25 to ~45 ms at 400 background alerts/s (three rounds each, back to back):
        a thread woken per alert competes for the interpreter lock with every stage a critical
        alert crosses, where one that sleeps through the linger takes its alerts as one burst.
        """
        wait = self._last_flush + self._conf.batch_linger_ms / 1000 - time.monotonic()
        if wait <= 0:
            self._flush_or_retry()
            return
        # A critical alert arriving meanwhile ends the wait: it never lingers.
        if self._urgent.wait(wait):
            self._urgent.clear()
        self._flush_queued = True
        self.actor_ref.tell(_Flush())

    def _failures_retry(self) -> None:
        if self._buffer:
            self._flush_or_retry()
        else:
            self._failures = 0

    def _flush_or_retry(self) -> None:
        try:
            try:
                self._flush()
            except redis.RedisError:
                raise
            except Exception:
                # Not Redis being away, so about some message of the batch: one at a time, the
                # message our side fails on is quarantined and the others go on.
                log.exception("accepting a batch failed; taking its alerts one at a time")
                self._take_one_by_one()
            self._failures = 0
        except redis.RedisError as exc:
            # Nothing is acknowledged: the alerts stay buffered here and unacked at the broker.
            self._failures += 1
            delay = _ACCEPT_AGAIN.delay(self._failures)
            log.warning(
                "accept failed (%s); retrying %d alerts in %.1fs", exc, len(self._buffer), delay
            )
            tell_later(self.actor_ref, _Retry(), delay)

    def _take_one_by_one(self) -> None:
        """Take the buffer alert by alert; one that fails on its own is quarantined."""
        while self._buffer:
            received, checked = self._buffer[0]
            try:
                self._take(1)
            except redis.RedisError:
                raise
            except Exception as exc:
                key = checked.alert.idempotency_key if isinstance(checked, Checked) else ""
                verdict = self._acceptor.quarantine(
                    received.payload, exc, source="mqtt", topic=received.topic, key=key
                )
                self._buffer = self._buffer[1:]
                self._answer([received], [verdict])

    def _flush(self) -> None:
        """Record, route and acknowledge what is buffered; critical alerts in a batch of their own.

        Flushed with the ~25 others a linger gathers under load, a critical alert would go
        through every stage with them (each stage's Redis round trip, each shard's and the
        enricher's work on the whole batch): alone, it is ahead of them at each (README
        "Performance").
        """
        self._last_flush = time.monotonic()
        ahead, behind = critical_first(self._buffer, _urgent, _sensor)
        self._buffer = ahead + behind  # a Redis failure leaves what was not taken buffered
        if ahead and behind:
            self._take(len(ahead))
        while self._buffer:
            self._take(min(len(self._buffer), RECORD_MOST))

    def _take(self, count: int) -> None:
        batch = self._buffer[:count]
        verdicts = self._acceptor.record([checked for _, checked in batch])
        self._buffer = self._buffer[count:]
        accepted = [v.alert for v in verdicts if isinstance(v, Accepted)]
        try:
            self._route(accepted, snapshots(verdicts))
        except Exception:  # recorded: the resume sweep routes them once the grace has passed
            log.exception(
                "routing %d recorded alerts failed; the sweep resumes them", len(accepted)
            )
        self._answer([received for received, _ in batch], verdicts)

    def _answer(self, batch: list[AlertReceived], verdicts: list[Verdict]) -> None:
        assert self._client is not None  # noqa: S101 - on_start ran
        acks = []
        for received, verdict in zip(batch, verdicts, strict=True):
            if isinstance(verdict, Rejected | Conflict):
                if isinstance(verdict, Conflict):
                    error, problems = "conflict", verdict.as_problems()
                else:
                    error = "quarantined" if isinstance(verdict, Quarantined) else "invalid_alert"
                    problems = [p.as_json() for p in verdict.problems]
                report = {
                    "error": error,
                    "topic": received.topic,
                    "idempotencyKey": verdict.idempotency_key or None,
                    "problems": problems,
                    "payload": received.payload[:512].decode("utf-8", "replace"),
                }
                self._client.publish(self._conf.rejected_topic, orjson.dumps(report), qos=1)
            if received.qos > 0:
                acks.append((received.mid, received.qos))
        self._client.ack_all(acks)  # one wake-up of paho's thread, one send for the run


def _subscriptions(topic: str, shared_group: str, group_of: str) -> list[str]:
    """Every form of the subscription an instance's session may hold."""
    forms = [topic, f"$share/{implicit_group(group_of)}/{topic}"]
    if shared_group:
        forms.append(f"$share/{shared_group}/{topic}")
    return forms


def _no_delay(_client: mqtt.Client, _userdata: object, sock: object) -> None:
    """Send our acknowledgements at once: paho leaves Nagle's algorithm on.

    With it on, each PUBACK waits for the broker to acknowledge the previous segment, and a
    broker with Nagle on too (Mosquitto's default, `set_tcp_nodelay false`) sends alerts in
    bursts about 17 ms apart: under 1,000 alerts/s a critical alert reaches this process
    ~10 ms after it reaches the broker (README "Performance").
    """
    sock = mqtt_io.raw_socket(sock)
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Matcher(MQTTMatcher):
    """paho's topic matcher for per-topic callbacks, without garbage for the collector.

    paho asks it for every message, and its iter_match builds a recursive closure: a reference
    cycle (six objects) per message that only the cyclic collector frees. Under 1,000 alerts/s
    that is ~12,000 objects per young collection, each collection a 6-9 ms pause of every
    thread, the slowest critical alerts' delay (README "Performance"). tripline registers no
    per-topic callbacks, so there is nothing to match; with some registered, paho's own
    matching runs.
    """

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def iter_match(self, topic: str) -> Iterator[Any]:
        if not self._root._children and self._root._content is None:  # noqa: SLF001
            return iter(())
        return super().iter_match(topic)  # type: ignore[no-untyped-call,no-any-return]


def _urgent(item: tuple[AlertReceived, Checked | Rejected]) -> bool:
    return isinstance(item[1], Checked) and item[1].urgent


def _sensor(item: tuple[AlertReceived, Checked | Rejected]) -> str | None:
    return item[1].alert.sensor_id if isinstance(item[1], Checked) else None


class _Flush:
    """Flush what gathered while lingering."""


class _Retry:
    """Try the buffered batch again after a Redis failure."""


def wait_connected(subscriber: pykka.ActorRef[MqttSubscriber], timeout: float) -> bool:
    """Block until the subscriber reports a broker connection (subscribed: its SUBACK).

    Asked with a ConnectionQuery, never through a proxy: pykka answers a proxy's attribute
    read without on_receive, so the alerts of a burst buffered just before it were left for a
    next message that might never come (a backlog's last alerts stranded, unacknowledged:
    seen when the questions overlapped the backlog's delivery).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subscriber.ask(ConnectionQuery(), timeout=max(0.1, deadline - time.monotonic())):
            return True
        time.sleep(0.05)
    return False
