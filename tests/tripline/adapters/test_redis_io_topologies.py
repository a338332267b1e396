"""The raw pipelines on a Redis Cluster and behind a failover, on servers started here.

A batch mixing every slot is split by node and its replies come back in order; a slot moving
between nodes (ASK while it moves, MOVED after) is followed; a script call whose keys span
two slots is that call's error alone; a server that became a replica (READONLY), or a
primary short of its replicas (NOREPLICAS), fails the batch as a lost connection, so the next
one looks for the primary again; with [redis] wait_replicas a batch of writes counts only once
that many replicas have it (WAIT).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.cluster
from redis.crc import key_slot
from redis.exceptions import ClusterCrossSlotError

from bench.redis_rigs import ClusterRig, Server
from tests.conftest import wait_for
from tripline.adapters.redis_clients import NotReplicatedError, aclose, async_redis, sync_redis
from tripline.adapters.redis_io import (
    AutoPipeline,
    PipelinedScript,
    batch,
    execute,
    item_error,
    mget,
    slot_of,
)
from tripline.conf.schema import RedisConfig

pytestmark = pytest.mark.integration

ECHO_LUA = "return {KEYS[1], ARGV[1]}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterRig]:
    rig = ClusterRig(Path(tmp_path_factory.mktemp("io-cluster")) / "rig")
    yield rig
    rig.close()


@pytest.fixture
def client(cluster: ClusterRig) -> Iterator[redis.cluster.RedisCluster]:
    made = sync_redis(cluster.url)
    assert isinstance(made, redis.cluster.RedisCluster)
    yield made
    made.close()


def node_of(client: redis.cluster.RedisCluster, key: str) -> str:
    return str(client.nodes_manager.get_node_from_slot(key_slot(key.encode())).name)


def test_a_batch_over_every_node_answers_in_order(client: redis.cluster.RedisCluster) -> None:
    echo = PipelinedScript(client, ECHO_LUA)
    keys = [f"io-order-{n}" for n in range(60)]
    assert len({node_of(client, k) for k in keys}) == 3
    work = batch(client)
    for n, key in enumerate(keys):
        work.set(key, n, ex=60)
        echo.queue(work, [f"{{{key}}}:x"], [n])
    replies = execute(work, echo)
    assert replies[0::2] == [b"OK"] * len(keys)
    assert replies[1::2] == [[f"{{{k}}}:x".encode(), str(n).encode()] for n, k in enumerate(keys)]
    assert mget(client, keys) == [str(n).encode() for n in range(len(keys))]


def test_a_script_call_over_two_slots_is_its_own_error(client: redis.cluster.RedisCluster) -> None:
    echo = PipelinedScript(client, ECHO_LUA)
    work = batch(client)
    work.set("io-cross-a", 1, ex=60)
    work.execute_command("EVALSHA", echo.sha, 2, "{one}:k", "{two}:k", "x")
    work.set("io-cross-b", 2, ex=60)
    first, crossed, last = execute(work, echo, item_errors=True)
    assert (first, last) == (b"OK", b"OK")
    assert isinstance(crossed, ClusterCrossSlotError)
    assert item_error(crossed)
    with pytest.raises(ClusterCrossSlotError):
        execute(work, echo)
    assert isinstance(slot_of(("EVALSHA", "x", 2, "{one}:k", "{two}:k")), ClusterCrossSlotError)
    assert slot_of(("EVALSHA", "x", 2, "{one}:k", "{one}:j")) == key_slot(b"one")
    assert slot_of(("PING",)) is None


def test_a_script_lost_on_every_node_is_loaded_again(client: redis.cluster.RedisCluster) -> None:
    echo = PipelinedScript(client, ECHO_LUA)
    client.script_flush()  # every primary's cache: as after a restart of each
    work = batch(client)
    for n in range(12):
        echo.queue(work, [f"io-flush-{n}"], [n])
    assert execute(work, echo) == [[f"io-flush-{n}".encode(), str(n).encode()] for n in range(12)]


def _ids(client: redis.cluster.RedisCluster) -> dict[int, str]:
    """Node id by port."""
    found: dict[int, str] = {}
    for node in client.get_nodes():  # type: ignore[no-untyped-call]
        node_id = client.get_redis_connection(node).execute_command("CLUSTER", "MYID")  # type: ignore[no-untyped-call]
        found[int(node.port)] = node_id.decode() if isinstance(node_id, bytes) else str(node_id)
    return found


def _server(cluster: ClusterRig, port: int) -> redis.Redis:
    return next(n for n in cluster.nodes if n.port == port).client()


def test_a_slot_moving_to_another_node_is_followed(
    cluster: ClusterRig, client: redis.cluster.RedisCluster
) -> None:
    key, new_key = "{io-move}:old", "{io-move}:new"
    slot = key_slot(b"io-move")
    source = client.nodes_manager.get_node_from_slot(slot)
    target = next(n for n in client.get_primaries() if n.name != source.name)  # type: ignore[no-untyped-call]
    ids = _ids(client)
    src, dst = _server(cluster, int(source.port)), _server(cluster, int(target.port))
    client.set(key, "kept", ex=600)

    async def go() -> None:
        aclient = async_redis(cluster.url)
        auto = AutoPipeline(aclient)

        async def auto_pipelined(*commands: tuple[Any, ...]) -> list[Any]:
            return list(await asyncio.gather(*(auto.send(*c) for c in commands)))

        try:
            assert await auto_pipelined(("GET", key)) == [b"kept"]  # its map: the slot's source
            # While the slot moves: keys not yet on the target are asked there (ASK, ASKING).
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[int(source.port)])  # type: ignore[no-untyped-call]
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[int(target.port)])  # type: ignore[no-untyped-call]
            work = batch(client)
            work.set(new_key, "sync", ex=600)
            work.get(key)
            assert execute(work) == [b"OK", b"kept"]
            assert await auto_pipelined(("SET", new_key, "async"), ("GET", key)) == [b"OK", b"kept"]
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", key)  # type: ignore[no-untyped-call]
            for node in cluster.nodes:
                node.client().execute_command(  # type: ignore[no-untyped-call]
                    "CLUSTER", "SETSLOT", slot, "NODE", ids[int(target.port)]
                )
            # Moved: the clients' slot maps still name the source, which answers MOVED.
            work = batch(client)
            work.get(key)
            work.get(new_key)
            assert execute(work) == [b"kept", b"async"]
            assert await auto_pipelined(("GET", key), ("GET", new_key)) == [b"kept", b"async"]
            assert node_of(client, key) == target.name  # the map was read again
        finally:
            await auto.aclose()
            await aclose(aclient)

    asyncio.run(go())


def test_a_primary_turned_replica_fails_the_batch_as_a_lost_connection(tmp_path: Path) -> None:
    primary = Server(tmp_path, "primary", [])
    replica = Server(tmp_path, "replica", ["--replicaof", "127.0.0.1", str(primary.port)])
    try:
        client = sync_redis(f"redis://127.0.0.1:{replica.port}/0")
        assert isinstance(client, redis.Redis)
        work = batch(client)
        work.set("io-readonly", 1)
        with pytest.raises(redis.ConnectionError, match="ReadOnlyError"):
            execute(work)
        # Dropped: the next batch connects anew (to whichever server is primary by then).
        pooled = client.connection_pool._available_connections
        assert pooled
        assert all(c._sock is None for c in pooled)

        async def go() -> None:
            aclient = async_redis(f"redis://127.0.0.1:{replica.port}/0")
            auto = AutoPipeline(aclient)
            try:
                with pytest.raises(redis.ConnectionError, match="ReadOnlyError"):
                    await auto.execute("SET", "io-readonly", 1)
                assert auto._conn is not None
                assert not auto._conn.is_connected
            finally:
                await auto.aclose()
                await aclose(aclient)

        asyncio.run(go())
    finally:
        replica.stop()
        primary.stop()


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """A primary and one replica in step with it (its first sync at once: Redis 7 waits 5 s)."""
    primary = Server(tmp_path, "primary", ["--repl-diskless-sync-delay", "0"])
    replica = Server(tmp_path, "replica", ["--replicaof", "127.0.0.1", str(primary.port)])
    try:
        wait_for(lambda: replica.client().info("replication")["master_link_status"] == "up")
        # And the primary counts it: the replica's side of the link comes up first, and a WAIT
        # in between found 0 replicas (CI, under load).
        wait_for(lambda: _online_replicas(primary) == 1)
        yield primary, replica
    finally:
        replica.stop()
        primary.stop()


def _online_replicas(server: Server) -> int:
    """Replicas the primary sees online (INFO replication: slave<n> with state=online)."""
    info = server.client().info("replication")
    return sum(
        1
        for key, value in info.items()
        if key.startswith("slave") and isinstance(value, dict) and value.get("state") == "online"
    )


def test_writes_wait_for_the_replicas_asked_for(replicated: tuple[Server, Server]) -> None:
    primary, replica = replicated
    url = f"redis://127.0.0.1:{primary.port}/0"
    one = sync_redis(RedisConfig(url=url, wait_replicas=1))
    two = sync_redis(RedisConfig(url=url, wait_replicas=2, wait_timeout_ms=50))
    work = batch(one)
    work.set("io-wait", "1")
    assert execute(work) == [b"OK"]  # WAIT's own reply is not among them
    assert replica.client().get("io-wait") == b"1"  # there before the reply counted
    work = batch(two)
    work.set("io-wait", "2")
    with pytest.raises(NotReplicatedError, match="1 of 2 replicas"):
        execute(work)
    assert primary.client().get("io-wait") == b"2"  # written, not to be acted on
    reads = batch(two)
    reads.get("io-wait")
    assert execute(reads) == [b"2"]  # nothing written: no replica waited for

    async def go() -> None:
        one, two = (
            async_redis(RedisConfig(url=url, wait_replicas=1)),
            async_redis(RedisConfig(url=url, wait_replicas=2, wait_timeout_ms=50)),
        )
        enough, short = AutoPipeline(one), AutoPipeline(two)
        try:
            assert await enough.execute("SET", "io-wait", "3") == b"OK"
            assert replica.client().get("io-wait") == b"3"
            with pytest.raises(NotReplicatedError):
                await short.execute("SET", "io-wait", "4")
            assert await short.execute("GET", "io-wait") == b"4"
        finally:
            for auto, client in ((enough, one), (short, two)):
                await auto.aclose()
                await aclose(client)

    asyncio.run(go())


def test_a_primary_short_of_its_replicas_is_an_outage(replicated: tuple[Server, Server]) -> None:
    primary, _ = replicated
    primary.client().config_set("min-replicas-to-write", 2)  # it has one: NOREPLICAS
    client = sync_redis(f"redis://127.0.0.1:{primary.port}/0")
    work = batch(client)
    work.set("io-noreplicas", 1)
    with pytest.raises(redis.ConnectionError, match="NOREPLICAS"):
        execute(work)
