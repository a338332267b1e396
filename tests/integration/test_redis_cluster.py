"""The core scenarios again, on a Redis Cluster of three primaries started here on loopback.

The scenarios are the single-Redis ones, imported and run as they are: only `make_service`
(the service's Redis is the cluster) and `redis_client` (a RedisCluster) are this module's
own. Every alert key, customer and sensor lands on some node: accept batches, shard
decisions, the dialer's steps and the resume sweep each cross every node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis.cluster
from redis.crc import key_slot

from bench.redis_rigs import ClusterRig
from tests.conftest import EmulatorHandle, ServiceHandle, alert, http, wait_for
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
from tripline.adapters.redis_clients import sync_redis
from tripline.adapters.store import Keys
from tripline.conf.redis_topology import Kind

pytestmark = pytest.mark.integration

REUSED = (  # collected here as well: each runs once more, against the cluster
    test_customer_flags_and_unknown_customers_become_tasks_not_calls,
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
