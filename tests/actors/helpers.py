"""Fakes that implement the real interfaces, for actor tests."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import orjson
import pykka
import redis

from tripline.adapters.backends import Result
from tripline.adapters.store import Keys
from tripline.messages import (
    Alert,
    Customer,
    DialIntent,
    EnrichBatch,
    Ping,
    Priority,
    Reason,
    TaskIntent,
    WorkBatch,
)
from tripline.pipeline.dial import Answer
from tripline.pipeline.prioritise import PriorityRules
from tripline.pipeline.validate import Limits
from tripline.service.accept import Accepted, Acceptor
from tripline.service.stats import Stats


class FakeEnricher(pykka.ThreadingActor):
    """Records what shards hand over."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Alert] = []

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, EnrichBatch):
            self.requests.extend(message.alerts)
            return None
        return list(self.requests)


class FakeDialer(pykka.ThreadingActor):
    """Records every message a shard tells the dialer; asked anything, answers with them."""

    def __init__(self) -> None:
        super().__init__()
        self.told: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Ping):
            return list(self.told)
        self.told.append(message)
        return None


class FakeBackend:
    """Answers dials from a script of Results; records every attempt."""

    def __init__(self, *answers: Result, gate: threading.Event | None = None) -> None:
        self.answers = list(answers)
        self.dials: list[DialIntent] = []
        self.tasks: list[Any] = []
        self.gate = gate

    async def dial(self, intent: DialIntent, routing_priority: int) -> Result:  # noqa: ARG002
        self.dials.append(intent)
        if self.gate is not None:  # a threading.Event: the test thread opens it
            await asyncio.to_thread(self.gate.wait, 10)
        return self.answers.pop(0) if self.answers else Result(Answer.DONE, ref=uuid.uuid4().hex)

    async def create_task(self, task: Any) -> Result:
        self.tasks.append(task)
        return Result(Answer.DONE, ref=f"task-{len(self.tasks)}")

    async def close(self) -> None:
        return None


def accept(
    client: redis.Redis, keys: Keys, *docs: dict[str, Any], stats: Stats | None = None
) -> list[Alert]:
    """Record alerts through the real accept path and return them."""
    acceptor = Acceptor(
        client=client,
        keys=keys,
        limits=Limits(),
        rules=PriorityRules.from_config("normal", {"temp_critical": "critical"}, {}),
        record_ttl=3600,
        stats=stats or Stats(),
        clock=time.time,
    )
    verdicts = acceptor.accept([(orjson.dumps(d), False) for d in docs])
    return [v.alert for v in verdicts if isinstance(v, Accepted)]


def customer() -> Customer:
    return Customer(
        customer_id="C",
        name="N",
        phone="+14155550100",
        timezone="Etc/UTC",
        do_not_disturb=False,
        do_not_call=False,
    )


def tasks(alerts: list[Alert], reason: Reason) -> WorkBatch:
    """One batch of tasks for these alerts, as the enricher or a shard hands them over."""
    return WorkBatch(
        works=tuple(TaskIntent(alert=a, reason=reason, due=time.time(), detail="x") for a in alerts)
    )


def intent(alert: Alert, priority: Priority | None = None) -> DialIntent:
    return DialIntent(
        intent_id=alert.idempotency_key,
        alert=alert,
        customer=customer(),
        priority=priority if priority is not None else alert.priority,
        enqueued_at=time.time(),
    )
