"""A Sentinel-watched primary fails (kill -9) under a running service, which carries on.

A primary, one replica and three sentinels start here on loopback (bench/redis_rigs.py); the
service is told the sentinels and the name they watch, never the primary's address. The
20,000-alert stream through such a failover is the fault suite's (`python -m bench.faults
--only sentinel-failover`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.redis_rigs import SentinelRig
from tests.conftest import EmulatorHandle, ServiceHandle, alert, http, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[SentinelRig]:
    rig = SentinelRig(tmp_path / "sentinel")
    yield rig
    rig.close()


def test_a_primary_failover_loses_no_record_and_calls_nobody_twice(
    sentinel: SentinelRig,
    make_service: Callable[..., ServiceHandle],
    emulator: EmulatorHandle,
) -> None:
    first_primary = sentinel.primary().port
    service = make_service(
        # Any address but a Redis: only the sentinels may say where the primary is.
        TRIPLINE__REDIS__URL="redis://192.0.2.1:1/0",
        # One customer's calls here: the caps would stop the fourth, not what this is about.
        TRIPLINE__COMPLY__NUMBER_CAPS='["100/24h"]',
        TRIPLINE__COMPLY__CUSTOMER_CAPS='["100/24h"]',
        **sentinel.env(),
    ).start()
    emulator.add_customer("C-S")
    status, doc = http("GET", f"{service.url}/status")
    assert status == 200
    assert doc["redis"]["topology"] == "sentinel"
    assert doc["redis"]["masterName"] == sentinel.name
    assert doc["redis"]["primary"] == f"127.0.0.1:{first_primary}"

    before = [alert(customer="C-S", sensor=f"S-{n}") for n in range(3)]
    for d in before:
        service.publish(d, sensor=d["sensorId"])
    wait_for(lambda: all(service.outcome(d["idempotencyKey"]) == "called" for d in before))

    old = sentinel.kill_primary()
    # Published while there is no primary: the broker keeps them until one is recorded.
    during = [alert(customer="C-S", sensor=f"S-{n}") for n in range(3, 5)]
    for d in during:
        service.publish(d, sensor=d["sensorId"])
    new = sentinel.wait_promoted(old).port
    assert new != old.port

    # Records written before the failover are on the promoted replica: the same alerts are
    # duplicates, a new alert of a sensor called before is in its cooldown, new sensors call.
    after = [*during, *(alert(customer="C-S", sensor=f"S-{n}") for n in range(5, 7))]
    cooled = alert(customer="C-S", sensor="S-0")
    for d in [*before, cooled, *after[len(during) :]]:
        service.publish(d, sensor=d["sensorId"])
    wait_for(lambda: all(service.outcome(d["idempotencyKey"]) == "called" for d in after), 30)
    wait_for(lambda: service.outcome(cooled["idempotencyKey"]) == "suppressed")
    assert (service.record(cooled["idempotencyKey"]) or {}).get("reason") == "cooldown"
    wait_for(lambda: service.stats.snapshot()["suppressed"].get("duplicate") == len(before))
    assert len(emulator.callbacks()) == len(before) + len(after)
    assert http("GET", f"{service.url}/status")[1]["redis"]["primary"] == f"127.0.0.1:{new}"
    assert http("GET", f"{service.url}/readyz")[1]["redis"] is True
