"""redis-py's own clients for the Redis the config names: one server, Sentinel, or a cluster.

Every Redis client tripline makes is made here (the service, its actors, the CLI), so each one
follows a Sentinel failover (redis-py's SentinelConnectionPool asks the sentinels for the
primary on every new connection) or a cluster's slots (RedisCluster) the same way. The raw
pipelines of tripline/adapters/redis_io.py route by slot over a RedisCluster's nodes.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.asyncio.sentinel as aiosentinel
import redis.cluster
import redis.sentinel
from redis.connection import SSLConnection, parse_url

from tripline.conf.redis_topology import Kind, Topology, topology
from tripline.conf.schema import RedisConfig

SyncRedis: TypeAlias = redis.Redis | redis.cluster.RedisCluster
"""A synchronous client of any topology."""
AsyncRedis: TypeAlias = aioredis.Redis | aiocluster.RedisCluster
"""An asyncio client of any topology."""

_SENTINEL_TIMEOUT = 2.0
"""How long a sentinel may take to answer which server is the primary (seconds)."""


@dataclass(frozen=True, slots=True)
class Replicas:
    """How many replicas must have a batch of writes (WAIT), and for how long to wait."""

    count: int
    timeout_ms: int


_C = TypeVar("_C")
_WAITS: weakref.WeakKeyDictionary[object, Replicas] = weakref.WeakKeyDictionary()


def replicas_to_wait(client: object) -> Replicas | None:
    """What a client's batches of writes wait for ([redis] wait_replicas); None: nothing."""
    return _WAITS.get(client)


def _waiting(client: _C, where: RedisConfig | Topology | str) -> _C:
    if isinstance(where, RedisConfig) and where.wait_replicas:
        _WAITS[client] = Replicas(where.wait_replicas, where.wait_timeout_ms)
    return client


class NotReplicatedError(redis.ConnectionError):
    """Written on the primary, but not on enough replicas in time: not to be acted on yet.

    An outage to the callers (tried again; an alert is not acknowledged meanwhile): the writes
    are there on the primary, and every write tripline makes may be made again.
    """


def target(where: RedisConfig | Topology | str) -> Topology:
    """The topology of a [redis] section, or of a plain URL (tests, tools)."""
    if isinstance(where, Topology):
        return where
    if isinstance(where, RedisConfig):
        return where.topology()
    return topology(where)


def sync_redis(
    where: RedisConfig | Topology | str,
    *,
    sentinel_password: str = "",
    **options: Any,  # noqa: ANN401 - redis-py's connection options
) -> SyncRedis:
    """A synchronous client; `options` are redis-py's (socket_timeout, ...)."""
    top = target(where)
    password = _sentinel_password(where, sentinel_password)
    if top.kind == Kind.CLUSTER:
        seeds = [redis.cluster.ClusterNode(host, port) for host, port in top.nodes]  # type: ignore[no-untyped-call]
        made = redis.cluster.RedisCluster.from_url(top.url, startup_nodes=seeds, **options)
        return _waiting(made, where)
    if top.kind == Kind.SENTINEL:
        sentinel = redis.sentinel.Sentinel(
            list(top.nodes), sentinel_kwargs=_sentinel_kwargs(top, password)
        )
        client: redis.Redis = sentinel.master_for(
            top.master_name, **_primary_kwargs(top), **options
        )
        return _waiting(client, where)
    return _waiting(redis.Redis.from_url(top.url, **options), where)


class _BlockingSentinelPool(aiosentinel.SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """Sentinel's pool (asks for the primary), waiting for a free connection when all are busy."""


class _BoundedCluster(aiocluster.RedisCluster):
    """A RedisCluster whose commands wait for one of `connections` turns instead of failing.

    redis-py's asyncio cluster refuses a command past a node's max_connections
    (MaxConnectionsError): a storm's thousands of coroutines on one loop would meet that,
    where the blocking pool of a single server queues them.
    """

    def __init__(self, *args: Any, connections: int, **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(*args, **kwargs)
        self._turns = asyncio.Semaphore(connections)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        async with self._turns:
            return await super().execute_command(*args, **kwargs)


def async_redis(
    where: RedisConfig | Topology | str,
    *,
    connections: int = 32,
    socket_timeout: float | None = None,
    sentinel_password: str = "",
) -> AsyncRedis:
    """An asyncio client whose commands wait for a free connection instead of failing.

    A storm puts thousands of coroutines on one loop; a plain pool refuses the excess with
    MaxConnectionsError. A blocking pool queues them behind a bounded set of connections.
    `socket_timeout`: how long a reply may take (an AutoPipeline's batch deadline); None waits.
    """
    top = target(where)
    password = _sentinel_password(where, sentinel_password)
    if top.kind == Kind.CLUSTER:
        seeds = [aiocluster.ClusterNode(host, port) for host, port in top.nodes]
        bounded = _BoundedCluster.from_url(
            top.url,
            startup_nodes=seeds,
            connections=connections,
            max_connections=connections + 8,  # per node: the raw pipelines' own ones too
            socket_timeout=socket_timeout,
        )
        return _waiting(bounded, where)
    if top.kind == Kind.SENTINEL:
        sentinel = aiosentinel.Sentinel(
            list(top.nodes), sentinel_kwargs=_sentinel_kwargs(top, password)
        )
        client: aioredis.Redis = sentinel.master_for(
            top.master_name,
            connection_pool_class=_BlockingSentinelPool,
            max_connections=connections,
            timeout=None,
            socket_timeout=socket_timeout,
            **_primary_kwargs(top),
        )
        return _waiting(client, where)
    pool = aioredis.BlockingConnectionPool.from_url(
        top.url, max_connections=connections, timeout=None, socket_timeout=socket_timeout
    )
    return _waiting(aioredis.Redis(connection_pool=pool), where)


async def aclose(client: AsyncRedis) -> None:
    """Close an asyncio client and its connections, whichever its topology (sentinels too)."""
    if isinstance(client, aiocluster.RedisCluster):
        await client.aclose()
        return
    pool = client.connection_pool
    await client.aclose(close_connection_pool=True)
    if isinstance(pool, aiosentinel.SentinelConnectionPool):
        for watcher in pool.sentinel_manager.sentinels:
            await watcher.aclose(close_connection_pool=True)


def primary_address(client: SyncRedis) -> str | None:
    """The server a Sentinel-managed client writes to now (asks a sentinel); None otherwise."""
    pool = getattr(client, "connection_pool", None)
    if not isinstance(pool, redis.sentinel.SentinelConnectionPool):
        return None
    host, port = pool.get_master_address()  # type: ignore[no-untyped-call]
    return f"{host}:{port}"


def _sentinel_password(where: RedisConfig | Topology | str, given: str) -> str:
    return given or (where.sentinel_password if isinstance(where, RedisConfig) else "")


def _sentinel_kwargs(top: Topology, password: str) -> dict[str, Any]:
    """How to talk to the sentinels: short timeouts, TLS as the primary's, their password."""
    kwargs: dict[str, Any] = {
        "socket_timeout": _SENTINEL_TIMEOUT,
        "socket_connect_timeout": _SENTINEL_TIMEOUT,
    }
    if top.url.startswith("rediss://"):
        kwargs["ssl"] = True
    if password:
        kwargs["password"] = password
    return kwargs


def _primary_kwargs(top: Topology) -> dict[str, Any]:
    """The url's credentials, database and options, for connections to whichever is primary."""
    kwargs: dict[str, Any] = parse_url(top.url)  # type: ignore[no-untyped-call]
    for where in ("host", "port", "path"):  # the sentinels say where the primary is
        kwargs.pop(where, None)
    if kwargs.pop("connection_class", None) is SSLConnection:
        kwargs["ssl"] = True  # SentinelConnectionPool picks its own SSL connection class
    return kwargs
