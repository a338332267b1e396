"""Records live as long as their obligations; nothing stale rings; fresh flags at dialing (#19).

Real Redis and Mosquitto, the emulator over HTTP; one service clock moved to a Friday evening.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from tests.conftest import (
    AppThread,
    EmulatorHandle,
    ServiceHandle,
    alert,
    http,
    wait_for,
)
from tripline.adapters.store import Keys
from tripline.edge.http_api import build_app as service_app
from tripline.supervisor import Service

pytestmark = pytest.mark.integration

TTL = 5  # seconds: below the schema's minimum on purpose, to outlive it within the test


class ClockedService(ServiceHandle):
    """A test's service whose clock runs `offset` seconds from ours, and its record TTL."""

    def __init__(self, *, offset: float, record_ttl: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.offset = offset
        # Past the loader's minimum (3600): a test cannot wait an hour for a TTL to run out.
        self.config = replace(
            self.config, redis=replace(self.config.redis, record_ttl_seconds=record_ttl)
        )

    def now(self) -> float:
        return time.time() + self.offset

    def start(self, port: int | None = None) -> ClockedService:
        self.service = Service(self.config, clock=self.now)
        self.service.start()
        self.http = AppThread(service_app(self.service), port=port)
        wait_for(self.service.broker_connected, timeout=10)
        return self


@pytest.fixture
def clocked(prefix: str, emulator: EmulatorHandle) -> Iterator[Callable[..., ClockedService]]:
    handles: list[ClockedService] = []

    def make(*, offset: float = 0.0, record_ttl: int = 86400, **env: str) -> ClockedService:
        handle = ClockedService(
            offset=offset, record_ttl=record_ttl, prefix=prefix, emulator=emulator, env=env
        )
        handles.append(handle)
        return handle.start()

    yield make
    for handle in handles:
        handle.stop()


def last_friday_evening() -> datetime:
    """The latest Friday 19:00 UTC before now."""
    now = datetime.now(UTC)
    friday = now - timedelta(days=(now.weekday() - 4) % 7)
    evening = friday.replace(hour=19, minute=0, second=0, microsecond=0)
    return evening if evening <= now else evening - timedelta(days=7)


def stamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def post(service: ServiceHandle, doc: dict[str, Any]) -> int:
    status, _ = http("POST", f"{service.url}/v1/alerts", doc)
    return status


def test_a_friday_evening_deferral_is_readable_on_monday_after_the_ttl_would_have_expired(
    clocked: Callable[..., ClockedService], emulator: EmulatorHandle, redis_client: redis.Redis
) -> None:
    """DND at Friday 19:00 local: a task due Monday 09:00; record, context and claim outlive the
    record TTL (5 s here), since the task is due long after it."""
    friday = last_friday_evening()
    emulator.add_customer("C-FRI", timezone="UTC", doNotDisturb=True)
    service = clocked(offset=friday.timestamp() - time.time(), record_ttl=TTL)
    doc = alert(customer="C-FRI", alert_type="temp_high", timestamp=stamp(service.now()))
    assert post(service, doc) == 202
    accepted = time.monotonic()
    key = doc["idempotencyKey"]
    record = wait_for(lambda: (r := service.record(key)) and r.get("taskId") and r)
    assert (record["outcome"], record["reason"]) == ("deferred", "do_not_disturb")
    monday = (friday + timedelta(days=3)).replace(hour=9)
    assert record["facts"]["localTime"].startswith(friday.strftime("%Y-%m-%dT19:00"))
    keys, ref = Keys(service.prefix), record["referenceId"]
    until_monday = monday.timestamp() - friday.timestamp()
    for name in (keys.record(key), keys.history(key), keys.context(ref)):
        assert redis_client.ttl(name) > until_monday, name  # and the record TTL past it
    # The record TTL from acceptance has run out: the records are still there.
    time.sleep(max(0.0, accepted + TTL + 1 - time.monotonic()))
    assert service.record(key) is not None
    code, context = http(
        "GET", f"{service.url}/v1/context/{ref}", headers={"Authorization": "Bearer ctx-token"}
    )
    assert (code, context["alert"]["idempotencyKey"]) == (200, key)
    assert post(service, doc) == 200  # a re-delivery is still a duplicate: the claim lives
    assert len(emulator.workitems()) == 1
    assert not emulator.callbacks()


def test_a_broker_backlog_about_the_past_rings_nobody_but_a_critical_alert_still_matters(
    clocked: Callable[..., ClockedService], emulator: EmulatorHandle
) -> None:
    """Three hours after an outage: high alerts ring nobody past 2 h, critical ones past 4 h."""
    emulator.add_customer("C-OLD")
    service = clocked()
    three_hours_ago = stamp(time.time() - 3 * 3600)
    high = alert(customer="C-OLD", sensor="S-H", alert_type="temp_high", timestamp=three_hours_ago)
    critical = alert(customer="C-OLD", sensor="S-C", timestamp=three_hours_ago)
    service.publish(high, sensor="S-H")
    service.publish(critical, sensor="S-C")
    stale = wait_for(
        lambda: (r := service.record(high["idempotencyKey"])) and r.get("taskId") and r
    )
    assert (stale["outcome"], stale["reason"]) == ("deferred", "stale")
    assert "3h00m old" in stale["detail"]
    assert wait_for(lambda: service.outcome(critical["idempotencyKey"]) == "called")
    (call,) = emulator.callbacks()
    assert call["body"]["data"]["sensorId"] == "S-C"


def test_a_dnd_set_while_the_call_waits_out_its_pending_delay_is_honoured(
    clocked: Callable[..., ClockedService], emulator: EmulatorHandle
) -> None:
    emulator.add_customer("C-FLIP")
    service = clocked(
        TRIPLINE__DIALER__PENDING_SECONDS="{ critical = 0, high = 3, normal = 0, low = 0 }",
        TRIPLINE__CRM__MAX_PROFILE_AGE_SECONDS="1",
    )
    doc = alert(customer="C-FLIP", alert_type="temp_high")
    service.publish(doc, sensor=doc["sensorId"])
    key = doc["idempotencyKey"]
    wait_for(lambda: (service.record(key) or {}).get("state") == "queued")
    status, _ = http("PATCH", f"{emulator.url}/_emulator/customers/C-FLIP", {"doNotDisturb": True})
    assert status == 200
    record = wait_for(lambda: (r := service.record(key)) and r.get("taskId") and r, timeout=15)
    assert (record["outcome"], record["reason"]) == ("deferred", "do_not_disturb")
    assert not emulator.callbacks()
    assert len(emulator.requests("/api/v1/customers/C-FLIP")) == 2  # the decision, the dial


def test_a_re_attempt_days_away_keeps_the_record_until_it_and_the_ttl_past_it(
    clocked: Callable[..., ClockedService], emulator: EmulatorHandle, redis_client: redis.Redis
) -> None:
    emulator.add_customer("C-LATER")
    http(
        "PUT",
        f"{emulator.url}/_emulator/settings",
        {"call_results": ["no_answer"], "call_result_delay_seconds": 0.3},
    )
    days = 3 * 86400
    retry = f"{{ critical = {days}, high = 1, normal = 1, low = 1 }}"
    service = clocked(
        TRIPLINE__REACH__RETRY_AFTER_SECONDS=retry,
        TRIPLINE__OUTCOMES__POLL_SECONDS="0.2",
    )
    doc = alert(customer="C-LATER")
    service.publish(doc, sensor=doc["sensorId"])
    key = doc["idempotencyKey"]
    record = wait_for(lambda: (r := service.record(key)) and r.get("nextAttemptAt") and r)
    assert record["result"] == "pending"
    keys, ref = Keys(service.prefix), record["referenceId"]
    for name in (keys.record(key), keys.history(key), keys.context(ref)):
        assert redis_client.ttl(name) > days + 86400 - 60, name
