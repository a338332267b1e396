"""The core scenarios again, on a Redis Cluster of three primaries started here on loopback.

The scenarios are the single-Redis ones, imported and run as they are: only `make_service`
(the service's Redis is the cluster) and `redis_client` (a RedisCluster) are this module's
own. Every alert key, customer and sensor lands on some node: accept batches, shard
decisions, the dialer's steps and the resume sweep each cross every node.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis.cluster
from redis.crc import key_slot

from bench.redis_rigs import ClusterRig
from tests.conftest import EmulatorHandle, ServiceHandle, alert, http, publish, wait_for
from tests.integration.test_compliance import (
    test_internal_dnc_list_and_dnd_and_invalid_phone_defer,
    test_number_cap_holds_across_a_restart,
)
from tests.integration.test_end_to_end import (
    test_customer_flags_and_unknown_customers_become_tasks_not_calls,
    test_guide_payload_over_mqtt_becomes_exactly_one_callback,
    test_restart_mid_stream_keeps_idempotency_and_cooldown,
    test_same_key_published_five_times_is_called_once,
    test_ten_alerts_of_one_sensor_inside_cooldown_give_one_call,
    test_webhook_accepts_then_answers_duplicates_with_200,
)
from tests.integration.test_scripts_one_slot import (
    test_every_script_is_called_with_keys_of_one_slot,
    wire,  # noqa: F401 - its fixture
)
from tests.tripline.service.test_ledger import _writer, decide, decisions, drain
from tripline.adapters.ledger.ndjson import FileStore
from tripline.adapters.redis_clients import sync_redis
from tripline.adapters.store import Keys
from tripline.conf.redis_topology import Kind

pytestmark = [pytest.mark.integration, pytest.mark.long(33)]

REUSED = (  # collected here as well: each runs once more, against the cluster
    test_customer_flags_and_unknown_customers_become_tasks_not_calls,
    test_every_script_is_called_with_keys_of_one_slot,
    test_guide_payload_over_mqtt_becomes_exactly_one_callback,
    test_internal_dnc_list_and_dnd_and_invalid_phone_defer,
    test_number_cap_holds_across_a_restart,
    test_restart_mid_stream_keeps_idempotency_and_cooldown,
    test_same_key_published_five_times_is_called_once,
    test_ten_alerts_of_one_sensor_inside_cooldown_give_one_call,
    test_webhook_accepts_then_answers_duplicates_with_200,
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterRig]:
    rig = ClusterRig(Path(tmp_path_factory.mktemp("cluster")) / "rig")
    yield rig
    rig.close()


@pytest.fixture
def redis_client(cluster: ClusterRig) -> Iterator[redis.cluster.RedisCluster]:
    client = sync_redis(cluster.url)
    assert isinstance(client, redis.cluster.RedisCluster)
    yield client
    client.close()


@pytest.fixture
def make_service(
    prefix: str, emulator: EmulatorHandle, cluster: ClusterRig
) -> Iterator[Callable[..., ServiceHandle]]:
    handles: list[ServiceHandle] = []

    def make(**env: str) -> ServiceHandle:
        env = {"TRIPLINE__REDIS__URL": cluster.url, **env}
        handle = ServiceHandle(prefix=prefix, emulator=emulator, env=env)
        handles.append(handle)
        return handle

    yield make
    for handle in handles:
        handle.stop()


def test_the_service_runs_on_the_cluster_and_says_so(
    service: ServiceHandle, cluster: ClusterRig
) -> None:
    assert service.config.redis.topology().kind == Kind.CLUSTER
    status, doc = http("GET", f"{service.url}/status")
    assert status == 200
    assert doc["redis"]["topology"] == "cluster"
    assert doc["redis"]["seeds"] == [f"127.0.0.1:{n.port}" for n in cluster.nodes]
    assert http("GET", f"{service.url}/readyz")[1]["redis"] is True


def test_hostile_ids_land_on_one_slot_per_alert_and_are_called(
    service: ServiceHandle,
    emulator: EmulatorHandle,
    redis_client: redis.cluster.RedisCluster,
) -> None:
    # Braces and separators in every id: escaped in key names, so no id can choose a slot
    # for another id's keys, and each alert's script calls stay within one slot.
    customers = ["C{x}:1", "}{", "C%7B", "{c:C}"]
    docs = [
        alert(f"k{{{n}}}:a}}", customer=c, sensor=f"S{{{n}}}:%") for n, c in enumerate(customers)
    ]
    for c in customers:
        emulator.add_customer(c)
    for doc in docs:
        service.publish(doc, sensor=str(doc["sensorId"]))
    wait_for(lambda: all(service.outcome(str(d["idempotencyKey"])) == "called" for d in docs))
    assert len(emulator.callbacks()) == len(docs)
    keys = Keys(service.prefix)
    slots = {key_slot(keys.record(str(d["idempotencyKey"])).encode()) for d in docs}
    assert len(slots) == len(docs)  # spread over the cluster, as keys of unrelated alerts are
    nodes = {redis_client.nodes_manager.get_node_from_slot(s).name for s in slots}
    assert len(nodes) > 1


def test_every_decision_reaches_the_ledger_once_through_the_slots_outboxes(
    make_service: Callable[..., ServiceHandle],
    emulator: EmulatorHandle,
    redis_client: redis.cluster.RedisCluster,
    tmp_path: Path,
) -> None:
    # The store fails until the file in its place goes: meanwhile every decision waits in the
    # outbox of its record's slot, and /healthz and /metrics say so.
    blocked = tmp_path / "ledger"
    blocked.write_text("not a directory: the ledger's store fails until this file goes")
    service = make_service(
        TRIPLINE__LEDGER__PATH=str(blocked), TRIPLINE__LEDGER__LAG_ALARM_SECONDS="1"
    ).start()
    customers = ["C{x}:1", "}{|", "C%7B", "{c:C}"]
    for c in customers:
        emulator.add_customer(c)
    docs = [
        alert(f"k{{{n}}}:|{n}}}", customer=customers[n % 4], sensor=f"S{{{n % 8}}}:|")
        for n in range(48)
    ]
    by_sensor: dict[str, list[Any]] = {}
    for doc in docs:
        by_sensor.setdefault(str(doc["sensorId"]), []).append(doc)
    for sensor, batch in by_sensor.items():
        publish(f"{service.topic_root}/sensors/{sensor}/alerts", *batch)
    names = [str(d["idempotencyKey"]) for d in docs]
    wait_for(lambda: all(service.outcome(quote(n, safe="")) for n in names), 60)
    keys = Keys(service.prefix, ledger=True, slot_outboxes=True)
    outboxes = {keys.ledger_outbox(n) for n in names}
    nodes = {
        redis_client.nodes_manager.get_node_from_slot(key_slot(o.encode())).name for o in outboxes
    }
    assert len(nodes) == 3  # every primary holds some of them

    def lagging() -> dict[str, Any] | None:
        led = http("GET", f"{service.url}/healthz")[1]["ledger"]
        return led if led["status"] == "lagging" and led["lagEntries"] >= len(names) else None

    led = wait_for(lagging, 30)
    assert led["storeReachable"] is False
    assert sum(redis_client.xlen(o) for o in outboxes) == led["lagEntries"]
    scraped = str(http("GET", f"{service.url}/metrics")[1])
    waiting = re.search(r"^tripline_ledger_lag_entries(?:\{[^}]*\})? (\S+)$", scraped, re.MULTILINE)
    assert waiting is not None
    assert float(waiting.group(1)) >= len(names)

    blocked.unlink()  # the store is back: the writer catches up
    wait_for(lambda: http("GET", f"{service.url}/healthz")[1]["ledger"]["lagEntries"] == 0, 60)
    assert decisions(FileStore(blocked)) == Counter(names)  # each decision once
    assert all(redis_client.xlen(o) == 0 for o in outboxes)


# A writer in a process of its own whose store never returns: it has read its batch (and says
# how many) when the test kills it, before any acknowledgement.
DOOMED = """
import sys, time
from prometheus_client import CollectorRegistry
from tripline.adapters.ledger.entry import PhoneHasher
from tripline.adapters.ledger.ndjson import FileStore
from tripline.adapters.redis_clients import sync_redis
from tripline.adapters.store import Keys
from tripline.service.ledger import LedgerWriter

class Stuck(FileStore):
    def write(self, entries):
        print(len(entries), flush=True)
        time.sleep(3600)

url, prefix, path = sys.argv[1:]
writer = LedgerWriter(
    client=sync_redis(url), keys=Keys(prefix, ledger=True, slot_outboxes=True),
    store=Stuck(path), hasher=PhoneHasher(b"k"), consumer="doomed", batch_size=60,
    retention_days=1825, registry=CollectorRegistry(),
)
while True:
    writer.run_once()
"""


def test_a_writer_killed_between_read_and_ack_loses_nothing_on_the_cluster(
    redis_client: redis.cluster.RedisCluster,
    cluster: ClusterRig,
    prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = Keys(prefix, ledger=True, slot_outboxes=True)
    names = decide(redis_client, keys, 90, tag="c")
    outboxes = {keys.ledger_outbox(n) for n in names}
    nodes = {
        redis_client.nodes_manager.get_node_from_slot(key_slot(o.encode())).name for o in outboxes
    }
    assert len(nodes) == 3  # the decisions' outboxes are on every primary
    with subprocess.Popen(
        [sys.executable, "-c", DOOMED, cluster.url, prefix, str(tmp_path / "never")],
        stdout=subprocess.PIPE,
        text=True,
    ) as doomed:
        try:
            read = int(doomed.stdout.readline()) if doomed.stdout else 0
        finally:
            doomed.kill()  # kill -9: read, not written, never acknowledged
    assert read > 0
    assert pending(redis_client, outboxes) == read  # delivered to the dead writer, no one else
    store = FileStore(tmp_path / "ledger")
    monkeypatch.setattr("tripline.service.ledger._CLAIM_IDLE_MS", 0)
    survivor = _writer(redis_client, prefix, store, "survivor", keys=keys)
    assert drain(survivor) == 90  # its batch claimed by the sweep, the rest read
    assert decisions(store) == Counter(names)
    assert pending(redis_client, outboxes) == 0


def pending(client: redis.cluster.RedisCluster, outboxes: set[str]) -> int:
    """Entries delivered to a writer of the group and not acknowledged, in these outboxes."""
    count = 0
    for outbox in outboxes:
        with contextlib.suppress(redis.ResponseError):  # NOGROUP: no writer read it yet
            count += int(client.xpending(outbox, "ledger")["pending"])
    return count
