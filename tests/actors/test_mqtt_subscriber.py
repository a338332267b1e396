"""The subscriber's micro-batching never strands the tail of a burst."""

from __future__ import annotations

import threading
import uuid
from typing import Any

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
