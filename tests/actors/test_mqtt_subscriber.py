"""The subscriber's micro-batching: idle alerts go at once, a trickle under load gathers, and the
tail of a burst is never stranded."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pykka

from actors.mqtt_subscriber import MqttSubscriber
from conf.schema import MqttConfig
from messages import AlertReceived, Ping
from tests.conftest import ask, wait_for
from tripline.accept import Duplicate


class GatedAcceptor:
    """Records what it is asked to accept; the first call waits until the test opens the gate."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []
        self.gate = threading.Event()
        self.first = threading.Event()

    def accept(self, items: list[tuple[bytes, bool]]) -> list[Any]:
        self.batches.append([body for body, _ in items])
        if len(self.batches) == 1:
            self.first.set()
            self.gate.wait(10)
        return [Duplicate(body.decode()) for body, _ in items]  # nothing to route; qos 0: no ack


def received(n: int) -> AlertReceived:
    return AlertReceived(payload=f"alert-{n}".encode(), topic="t", mid=n, qos=0, retain=False)


def test_an_alert_followed_by_a_ping_is_flushed_without_waiting_for_more() -> None:
    acceptor = GatedAcceptor()
    conf = MqttConfig(client_id=f"test-{uuid.uuid4().hex[:8]}", topic=f"tt/{uuid.uuid4().hex}/x")
    ref = MqttSubscriber.start(conf=conf, acceptor=acceptor, route=lambda _: None)
    try:
        ref.tell(received(1))
        assert acceptor.first.wait(5)  # the actor is busy with the first batch
        ref.tell(received(2))  # the last alert of the burst...
        pending = ref.ask(Ping(), block=False)  # ...with a probe right behind it
        acceptor.gate.set()
        pending.get(timeout=5)
        wait_for(lambda: len(acceptor.batches) == 2, timeout=2)
        assert acceptor.batches[1] == [b"alert-2"]
    finally:
        ask(ref, Ping())
        ref.stop()


class CountingAcceptor:
    """Records each batch and when it came."""

    def __init__(self) -> None:
        self.batches: list[tuple[float, list[bytes]]] = []

    def accept(self, items: list[tuple[bytes, bool]]) -> list[Any]:
        self.batches.append((time.monotonic(), [body for body, _ in items]))
        return [Duplicate(body.decode()) for body, _ in items]


def _subscriber(acceptor: Any, linger_ms: float) -> pykka.ActorRef[MqttSubscriber]:
    conf = MqttConfig(
        client_id=f"test-{uuid.uuid4().hex[:8]}",
        topic=f"tt/{uuid.uuid4().hex}/x",
        batch_linger_ms=linger_ms,
    )
    return MqttSubscriber.start(conf=conf, acceptor=acceptor, route=lambda _: None)


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
