"""The subscriber's micro-batching: idle alerts go at once, a trickle under load gathers, and the
tail of a burst is never stranded."""

from __future__ import annotations

import gc
import socket
import threading
import time
import types
import uuid
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pykka
import pytest
import redis
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.matcher import MQTTMatcher

from tests.conftest import alert, ask, publish, wait_for
from tripline.actors.mqtt_subscriber import (
    RECORD_MOST,
    MqttSubscriber,
    _Matcher,
    _no_delay,
    wait_connected,
)
from tripline.adapters import mqtt_io
from tripline.conf.schema import MqttConfig
from tripline.messages import Alert, AlertReceived, ConnectionQuery, Ping, Priority
from tripline.pipeline.validate import Limits, Rejected, validate
from tripline.service.accept import Checked, Duplicate


class GatedAcceptor:
    """Records what it is asked to accept; the first call waits until the test opens the gate."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []
        self.gate = threading.Event()
        self.first = threading.Event()

    def check(self, body: bytes, _retained: bool, **_where: Any) -> Any:
        return body

    def record(self, items: list[bytes]) -> list[Any]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.first.set()
            self.gate.wait(10)
        return [Duplicate(body.decode()) for body in items]  # nothing to route; qos 0: no ack


def received(n: int) -> AlertReceived:
    return AlertReceived(payload=f"alert-{n}".encode(), topic="t", mid=n, qos=0, retain=False)


@pytest.mark.parametrize(
    "question",
    [
        lambda ref: ref.ask(Ping(), block=False),  # a probe: on_receive sees it
        # A proxy's attribute read: pykka answers it without on_receive, and the burst's last
        # alert was left unflushed (and unacknowledged) for good.
        lambda ref: ref.proxy().connected,
    ],
    ids=["ask", "proxy-read"],
)
def test_an_alert_followed_by_a_question_is_flushed_without_waiting_for_more(
    question: Callable[[Any], Any],
) -> None:
    acceptor = GatedAcceptor()
    conf = MqttConfig(client_id=f"test-{uuid.uuid4().hex[:8]}", topic=f"tt/{uuid.uuid4().hex}/x")
    ref = MqttSubscriber.start(conf=conf, acceptor=acceptor, route=lambda *_: None)
    try:
        ref.tell(received(1))
        assert acceptor.first.wait(5)  # the actor is busy with the first batch
        ref.tell(received(2))  # the last alert of the burst...
        pending = question(ref)  # ...with a question right behind it
        acceptor.gate.set()
        pending.get(timeout=5)
        wait_for(lambda: len(acceptor.batches) == 2, timeout=2)
        assert acceptor.batches[1] == [b"alert-2"]
    finally:
        ask(ref, Ping())
        ref.stop()


def critical(key: str) -> Alert:
    checked = validate(orjson.dumps(alert(key)), now=time.time(), limits=Limits())
    assert not isinstance(checked, Rejected)
    return replace(checked[0], priority=Priority.CRITICAL)


class CountingAcceptor:
    """Records each batch and when it came."""

    def __init__(self) -> None:
        self.batches: list[tuple[float, list[bytes]]] = []

    def check(self, body: bytes, _retained: bool, **_where: Any) -> Any:
        if body.startswith(b"critical"):
            return Checked(critical(body.decode()), {})
        return body

    def record(self, items: list[Any]) -> list[Any]:
        bodies = [i.alert.idempotency_key.encode() if isinstance(i, Checked) else i for i in items]
        self.batches.append((time.monotonic(), bodies))
        return [Duplicate(body.decode()) for body in bodies]


def _subscriber(acceptor: Any, linger_ms: float) -> pykka.ActorRef[MqttSubscriber]:
    conf = MqttConfig(
        client_id=f"test-{uuid.uuid4().hex[:8]}",
        topic=f"tt/{uuid.uuid4().hex}/x",
        batch_linger_ms=linger_ms,
    )
    return MqttSubscriber.start(conf=conf, acceptor=acceptor, route=lambda *_: None)


def test_an_idle_subscriber_flushes_a_lone_alert_at_once() -> None:
    acceptor = CountingAcceptor()
    ref = _subscriber(acceptor, linger_ms=5_000)
    try:
        time.sleep(0.1)  # nothing flushed for a while: idle
        sent = time.monotonic()
        ref.tell(received(1))
        wait_for(lambda: len(acceptor.batches) == 1, timeout=2)
        assert acceptor.batches[0][0] - sent < 1.0  # far below the 5 s linger
    finally:
        ask(ref, Ping())
        ref.stop()


def test_alerts_arriving_right_after_a_flush_gather_into_one_batch() -> None:
    acceptor = CountingAcceptor()
    ref = _subscriber(acceptor, linger_ms=300)
    try:
        ref.tell(received(0))  # idle: flushed at once, and the linger starts
        wait_for(lambda: len(acceptor.batches) == 1, timeout=2)
        for n in range(1, 31):  # a trickle, each alert alone in the inbox
            ref.tell(received(n))
            time.sleep(0.002)
        wait_for(lambda: sum(len(b) for _, b in acceptor.batches) == 31, timeout=3)
        # Without the linger each would have been its own batch.
        assert len(acceptor.batches) <= 3, [len(b) for _, b in acceptor.batches]
        assert acceptor.batches[1][0] - acceptor.batches[0][0] >= 0.25
    finally:
        ask(ref, Ping())
        ref.stop()


def test_a_critical_alert_ends_a_linger_at_once() -> None:
    # Through the broker, so that paho's thread checks the payloads as in service.
    acceptor = CountingAcceptor()
    conf = MqttConfig(
        client_id=f"test-{uuid.uuid4().hex[:8]}",
        topic=f"tt/{uuid.uuid4().hex}/x",
        batch_linger_ms=5_000,
        qos=0,
    )
    ref = MqttSubscriber.start(conf=conf, acceptor=acceptor, route=lambda *_: None)
    try:
        assert wait_connected(ref, 5)
        time.sleep(0.2)  # the subscription is made in on_connect
        publish(conf.topic, b"alert-0")  # idle: flushed at once, and a 5 s linger starts
        wait_for(lambda: len(acceptor.batches) == 1, timeout=2)
        sent = time.monotonic()
        publish(conf.topic, b"alert-1", b"critical-1")  # the first lingers, the second won't
        wait_for(lambda: sum(len(b) for _, b in acceptor.batches) == 3, timeout=2)
        (at, critical), (_, rest) = acceptor.batches[-2:]
        assert at - sent < 1.0  # far below the 5 s linger
        # Recorded on its own, ahead of the alert it found lingering (flushed right after).
        assert (critical, rest) == ([b"critical-1"], [b"alert-1"])
    finally:
        ask(ref, Ping())
        ref.stop()


class Exposed(MqttSubscriber):
    def matcher(self) -> object:
        """paho's matcher for per-topic callbacks."""
        assert self._client is not None
        return self._client._on_message_filtered

    def no_delay(self) -> int:
        """TCP_NODELAY on the socket paho opened."""
        assert self._client is not None
        wrapped = self._client.socket()
        assert isinstance(wrapped, mqtt_io.BufferedReads)  # read in chunks
        sock = mqtt_io.raw_socket(wrapped)
        assert isinstance(sock, socket.socket)
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


class AwayAcceptor(CountingAcceptor):
    """Redis away for the first `failures` batches (nothing recorded), then back."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def record(self, items: list[Any]) -> list[Any]:
        if self.failures:
            self.failures -= 1
            raise redis.ConnectionError("away")
        return super().record(items)


def test_what_gathered_while_redis_was_away_is_recorded_in_parts() -> None:
    acceptor = AwayAcceptor(failures=1)
    ref = _subscriber(acceptor, linger_ms=0)
    try:
        ref.tell(received(0))  # fails: the retry timer now flushes what gathers meanwhile
        count = RECORD_MOST * 2 + 500
        for n in range(1, count):
            ref.tell(received(n))
        wait_for(lambda: sum(len(b) for _, b in acceptor.batches) == count, timeout=10)
        sizes = [len(b) for _, b in acceptor.batches]
        assert max(sizes) <= RECORD_MOST, sizes
        assert [x for _, b in acceptor.batches for x in b] == [
            f"alert-{n}".encode() for n in range(count)
        ]  # in order, each once
    finally:
        ask(ref, Ping())
        ref.stop()


def test_the_broker_connection_sends_without_nagle_delay() -> None:
    # Nagle's algorithm held each PUBACK for the broker's TCP acknowledgement: under load a
    # critical alert reached paho ~10 ms after the broker had it (README "Performance").
    conf = MqttConfig(client_id=f"test-{uuid.uuid4().hex[:8]}", topic=f"tt/{uuid.uuid4().hex}/x")
    ref = Exposed.start(conf=conf, acceptor=CountingAcceptor(), route=lambda *_: None)
    try:
        assert wait_connected(ref, 5)  # type: ignore[arg-type]
        assert ref.proxy().no_delay().get(timeout=5) == 1
    finally:
        ask(ref, Ping())
        ref.stop()


def test_only_tcp_sockets_get_no_delay() -> None:
    left, right = socket.socketpair()  # a unix socket: TCP options would raise
    try:
        _no_delay(mqtt.Client(CallbackAPIVersion.VERSION2), None, left)
        _no_delay(mqtt.Client(CallbackAPIVersion.VERSION2), None, object())  # not a socket
    finally:
        left.close()
        right.close()


def _rec_closures() -> int:
    return sum(
        1 for o in gc.get_objects() if isinstance(o, types.FunctionType) and o.__name__ == "rec"
    )


@pytest.mark.parametrize(("matcher", "left"), [(MQTTMatcher, 50), (_Matcher, 0)])
def test_matching_a_topic_leaves_no_garbage_for_the_collector(
    matcher: type[MQTTMatcher], left: int
) -> None:
    # paho's matcher left a reference cycle per message; under load the young collections
    # that freed them paused every thread for 6-9 ms (README "Performance").
    with warnings.catch_warnings():
        # What earlier tests of this worker left for the collector (a socket a server
        # thread dropped) is not this test's to report: only counted closures are.
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    gc.disable()
    try:
        before = _rec_closures()
        m = matcher()
        for _ in range(50):
            assert list(m.iter_match("t/sensors/S-1/alerts")) == []  # type: ignore[no-untyped-call]
        assert _rec_closures() - before == left
    finally:
        gc.enable()


def test_per_topic_callbacks_still_match() -> None:
    m = _Matcher()
    m["t/+/alerts"] = "cb"
    assert list(m.iter_match("t/S-1/alerts")) == ["cb"]
    assert list(m.iter_match("u/S-1/alerts")) == []


def test_the_subscriber_uses_the_garbage_free_matcher() -> None:
    conf = MqttConfig(client_id=f"test-{uuid.uuid4().hex[:8]}", topic=f"tt/{uuid.uuid4().hex}/x")
    ref = Exposed.start(conf=conf, acceptor=CountingAcceptor(), route=lambda *_: None)
    try:
        assert isinstance(ref.proxy().matcher().get(timeout=5), _Matcher)
    finally:
        ask(ref, Ping())
        ref.stop()


class HeldSubackBroker:
    """A one-connection MQTT 5 stub: CONNACKs, answers UNSUBSCRIBE, holds each SUBACK until told.

    `reason` is the SUBACK's reason code (0x01: granted QoS 1; 0x87: not authorized).
    """

    def __init__(self, reason: int = 0x01) -> None:
        self.reason = reason
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.subscribed = threading.Event()  # the SUBSCRIBE has arrived
        self.release = threading.Event()  # send its SUBACK
        self.conn: socket.socket | None = None
        threading.Thread(target=self._serve, daemon=True).start()

    def _read(self, conn: socket.socket) -> tuple[int, bytes]:
        first = conn.recv(1)
        if not first:
            raise ConnectionError
        length, shift = 0, 0
        while True:  # the remaining length: a variable byte integer
            byte = conn.recv(1)[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        body = b""
        while len(body) < length:
            body += conn.recv(length - len(body))
        return first[0] >> 4, body

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        self.conn = conn
        try:
            while True:
                kind, body = self._read(conn)
                if kind == 1:  # CONNECT → CONNACK: no session present, success, no properties
                    conn.sendall(bytes([0x20, 3, 0, 0, 0]))
                elif kind == 10:  # UNSUBSCRIBE → UNSUBACK: "no subscription existed"
                    conn.sendall(bytes([0xB0, 4, *body[:2], 0, 0x11]))
                elif kind == 8:  # SUBSCRIBE → SUBACK, once released
                    self.subscribed.set()
                    self.release.wait(10)
                    conn.sendall(bytes([0x90, 4, *body[:2], 0, self.reason]))
                elif kind == 12:  # PINGREQ
                    conn.sendall(bytes([0xD0, 0]))
        except (ConnectionError, OSError, IndexError):
            pass

    def close(self) -> None:
        self.release.set()
        if self.conn is not None:
            self.conn.close()
        self.server.close()


@pytest.mark.parametrize(("reason", "ready"), [(0x01, True), (0x87, False)])
def test_the_subscriber_is_connected_only_once_the_broker_acknowledged_the_subscription(
    reason: int, ready: bool
) -> None:
    # Before the SUBACK, an alert published for a first session has no subscriber at the
    # broker and is dropped: /readyz must not say ready yet (a CI flake published into it).
    broker = HeldSubackBroker(reason)
    conf = MqttConfig(
        host="127.0.0.1",
        port=broker.port,
        client_id=f"test-{uuid.uuid4().hex[:8]}",
        topic=f"tt/{uuid.uuid4().hex}/x",
    )
    ref = MqttSubscriber.start(conf=conf, acceptor=CountingAcceptor(), route=lambda *_: None)
    try:
        assert broker.subscribed.wait(5)
        time.sleep(0.2)  # what paho needs to call back, were it to set "connected" early
        assert ref.ask(ConnectionQuery(), timeout=5) is False
        broker.release.set()
        if ready:
            wait_for(lambda: ref.ask(ConnectionQuery(), timeout=5), timeout=5)
        else:  # a refused subscription: never ready
            time.sleep(0.3)
            assert ref.ask(ConnectionQuery(), timeout=5) is False
    finally:
        ask(ref, Ping())
        ref.stop()
        broker.close()
