"""Outages: Redis down means no acknowledgement, 503 with Retry-After and /readyz false."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable, Iterator

import pytest
import redis

from bench.faults import pings
from tests.conftest import EmulatorHandle, ServiceHandle, alert, free_port, http, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def own_redis() -> Iterator[tuple[int, Callable[[], None], Callable[[], None]]]:
    """A Redis of this test's own, which it may stop and start."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="tripline-redis-")
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        procs.append(
            subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "yes",
                    "--dir",
                    workdir,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        client = redis.Redis(port=port)
        wait_for(lambda: pings(client), timeout=10)

    def stop() -> None:
        redis.Redis(port=port).shutdown(nosave=True)
        procs[-1].wait(10)

    start()
    yield port, start, stop
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


def test_redis_outage_is_a_503_and_recovers(
    make_service: Callable[..., ServiceHandle],
    emulator: EmulatorHandle,
    own_redis: tuple[int, Callable[[], None], Callable[[], None]],
) -> None:
    port, start, stop = own_redis
    emulator.add_customer("C-OUT")
    service = make_service(TRIPLINE__REDIS__URL=f"redis://127.0.0.1:{port}/0").start()
    stop()
    status, body = http("POST", f"{service.url}/v1/alerts", alert(customer="C-OUT"))
    assert status == 503
    assert body["error"] == "unavailable"
    status, ready = http("GET", f"{service.url}/readyz")
    assert (status, ready["redis"]) == (503, False)

    start()
    doc = alert(customer="C-OUT")
    wait_for(
        lambda: http("POST", f"{service.url}/v1/alerts", doc)[0] in (200, 202),
        timeout=15,
        interval=0.2,
    )
    wait_for(lambda: service.outcome(doc["idempotencyKey"]) == "called", timeout=15)


def test_restart_budget_exhausted_makes_the_service_unhealthy(
    make_service: Callable[..., ServiceHandle],
) -> None:
    service = make_service(TRIPLINE__STATUS__RESTART_BUDGET="1").start()
    assert service.service is not None
    s = service.service
    s.ref("shard-0").stop()
    # "restarts" counts from the moment the death is seen; the new instance is reachable
    # through ref() only once the slot is running again (stopping the old ref is a no-op).
    wait_for(
        lambda: (
            http("GET", f"{service.url}/status")[1]["actors"]["shard-0"]
            == {"status": "running", "restarts": 1, "lastError": "stopped unexpectedly"}
        )
    )
    s.ref("shard-0").stop()
    wait_for(lambda: http("GET", f"{service.url}/healthz")[0] == 503)
    body = http("GET", f"{service.url}/status")[1]
    assert body["actors"]["shard-0"]["status"] == "stopped_by_restart_budget"
    assert body["healthy"] is False
