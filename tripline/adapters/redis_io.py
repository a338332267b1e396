"""The Redis transport: commands in bulk, packed with hiredis, replies read as Redis sent them.

Both ways tripline talks to Redis in bulk are here:

* `execute()` runs the commands queued on a redis-py Pipeline (of the synchronous client) in
  one round trip: the doors' accept batches, the shards' decisions, the resume sweep.
* `AutoPipeline`, on an asyncio loop (the dialer's and the enricher's), coalesces what the
  loop's tasks issue meanwhile into pipelined round trips, one batch on its own connection at
  a time, like ioredis' auto-pipelining: a busier loop makes bigger batches, not more trips.

Both pack with hiredis (`pack`) and read every reply of a batch as Redis sent it (ints, bytes,
lists, None; errors too, so the stream stays in step); both load a Lua script again when Redis
lost its script cache (NOSCRIPT, after a restart) and send again only the calls that did not
run; both let a caller tell an error about one command's own keys (`item_error`) from Redis
failing as a whole. They use redis-py's Connection API (send_packed_command, read_response)
rather than its Pipeline execution, whose per-command bookkeeping and response callbacks were
the larger part of the accept, shard and dialer-loop stages in profiles; and redis-py's Script
asks SCRIPT EXISTS before each pipeline, a round trip per batch on the hot path.

On a Redis Cluster both split a batch by node (the slot of each command's keys, hash tags
included), send each node its part, follow MOVED and ASK (a failover, a resharding), and put
the replies back in order: a batch may mix keys of every slot; each script call must keep its
own keys in one slot (tests/integration/test_scripts_one_slot.py proves they do). Behind
Sentinel, a primary that became a replica (READONLY) fails the batch as a lost connection, so
the next one asks the sentinels for the new primary, as redis-py's own connections do. With
[redis] wait_replicas, a batch that writes ends with a WAIT on its own connection, and its
replies count only once that many replicas have its writes (NotReplicatedError otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Literal, TypeVar

import hiredis
import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.cluster
from redis._parsers import hiredis as _redis_hiredis
from redis.asyncio.retry import Retry  # the asyncio one: redis 8.2 warns of a sync one
from redis.backoff import NoBackoff
from redis.commands.core import DataAccessCommands
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterCrossSlotError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    ReadOnlyError,
    TryAgainError,
)

from tripline.adapters.redis_clients import (
    AsyncRedis,
    NotReplicatedError,
    Replicas,
    SyncRedis,
    replicas_to_wait,
)

T = TypeVar("T")

URGENT: contextvars.ContextVar[bool] = contextvars.ContextVar("tripline_urgent", default=False)
"""Set in a task doing a critical alert's work: its AutoPipeline commands take the urgent lane."""


@contextlib.contextmanager
def lane(*, urgent: bool) -> Iterator[None]:
    """Commands sent inside the block take the urgent lane when `urgent` (see AutoPipeline)."""
    token = URGENT.set(urgent)
    try:
        yield
    finally:
        URGENT.reset(token)


async def urgently(job: Awaitable[T]) -> T:
    """Await `job` with its commands, and those of the tasks it starts, in the urgent lane."""
    with lane(urgent=True):
        return await job


_RELOADS = 3
"""How often a script Redis lost (NOSCRIPT: a restart, a SCRIPT FLUSH) is loaded and run again
before its NoScriptError stands: a failover or repeated flushes may lose it in between."""

# What redis-py's hiredis parser has its reader answer while a reply is incomplete (older
# versions: False, hiredis' own default).
_NOT_ENOUGH_DATA = getattr(_redis_hiredis, "NOT_ENOUGH_DATA", False)


def pack(commands: list[tuple[Any, ...]]) -> bytes:
    """The commands as one buffer of RESP, packed in C."""
    return b"".join([hiredis.pack_command(command) for command in commands])


def script_sha(source: str) -> str:
    """The SHA1 Redis knows a Lua script by (EVALSHA)."""
    return hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


_REDIRECTS = 5
"""How often a cluster's commands are sent again after MOVED, ASK, TRYAGAIN or CLUSTERDOWN (a
failover or a resharding in progress) before the batch fails as Redis unavailable."""

_MULTI_KEY = frozenset({b"MGET", b"DEL", b"UNLINK", b"EXISTS", b"TOUCH", b"SINTER", b"SUNION"})
"""Commands whose every argument is a key (a cluster needs them all in one slot)."""


class ClusterUnavailableError(redis.ConnectionError):
    """The cluster did not settle where a command's slot lives: retried as an outage."""


class Batch(DataAccessCommands):
    """Commands queued for execute(), with redis-py's own command methods, on any topology.

    redis-py's cluster pipeline keeps its commands out of reach and refuses EVALSHA; this
    records what each method would send (`command_stack`, as a Pipeline's), for the client it
    was made for.
    """

    _event_dispatcher: Any = None  # what some of redis-py's command methods look at
    _is_async_client: Literal[False] = False  # redis-py's typing: methods of a sync client

    def __init__(self, client: SyncRedis) -> None:
        """Queue commands for `client` (one server, Sentinel's primary, or a cluster)."""
        self.client = client
        self.command_stack: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def execute_command(self, *args: Any, **options: Any) -> Batch:  # noqa: ANN401
        """Queue one command (what redis-py's command methods call)."""
        self.command_stack.append((args, options))
        return self

    def __len__(self) -> int:
        """How many commands are queued."""
        return len(self.command_stack)


def batch(client: SyncRedis) -> Batch:
    """An empty batch of commands for `client`, to fill and run with execute()."""
    return Batch(client)


def mget(client: SyncRedis, keys: list[str]) -> list[Any]:
    """The values of `keys` (None where absent), in one round trip per node.

    On a cluster, a GET each (a cluster's MGET takes keys of one slot only).
    """
    if isinstance(client, redis.cluster.RedisCluster):
        gets = batch(client)
        for key in keys:
            gets.get(key)
        return execute(gets)
    return list(client.mget(keys))


class PipelinedScript:
    """A Lua script queued into pipelines as a bare EVALSHA.

    redis-py's Script object makes every pipeline ask SCRIPT EXISTS first: one extra round trip
    per batch on the hot path. We load once and, if Redis lost its script cache (a restart),
    load again and re-send the calls that did not run (execute()).
    """

    def __init__(self, client: SyncRedis, source: str) -> None:
        """Load the script now (on every primary of a cluster; fails fast if Redis is not there)."""
        self._client, self._source = client, source
        self.sha = str(client.script_load(source))

    def queue(self, pipe: Batch | redis.client.Pipeline, keys: list[str], args: list[Any]) -> None:
        """Add one call of the script to `pipe`."""
        pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)

    def reload(self) -> None:
        """Load the script again (after Redis lost its cache)."""
        self.sha = str(self._client.script_load(self._source))


# Error replies about Redis as a whole, not about one command's keys: every command fails alike.
# "BUSY " with its space: BUSYGROUP (a stream's group exists) is about one command's key.
_SERVER_STATES = ("MISCONF", "BUSY ", "NOREPLICAS", "MASTERDOWN", "CLUSTERDOWN", "LOADING", "OOM")


def item_error(reply: Any) -> bool:  # noqa: ANN401
    """Whether a reply is an error about its own command's keys or arguments.

    WRONGTYPE, a script's runtime error, a bad argument: another alert's commands in the same
    pipeline are not concerned. redis-py gives the server-wide errors (OOM, READONLY, LOADING,
    NOSCRIPT, cluster redirections...) classes of their own; what is left as a plain
    ResponseError is about the command, bar the few states listed in _SERVER_STATES.
    """
    if type(reply) is ClusterCrossSlotError:
        return True  # keys of one command in two slots: that command's own fault
    return type(reply) is redis.ResponseError and not str(reply).startswith(_SERVER_STATES)


def execute(
    pipe: Batch | redis.client.Pipeline, *scripts: PipelinedScript, item_errors: bool = False
) -> list[Any]:
    """Run the commands queued on `pipe` in one round trip; the replies come unparsed.

    Replies are Redis' own: integers, bytes, lists, None (`SET NX` answers b'OK' or None). We
    pack with hiredis and read the replies ourselves: redis-py's per-command bookkeeping and
    response callbacks are a large part of the accept and shard stages in a profile. On
    NOSCRIPT (Redis lost its script cache) `scripts` are loaded again and the script calls that
    did not run are sent again, nothing else. Any other error reply raises, as redis-py's
    pipelines do — unless `item_errors`: then an error about one command's own keys (see
    item_error) is left in its place for the caller to pin on the alert it belongs to. A
    connection failure raises redis' ConnectionError / TimeoutError. `pipe` keeps its
    commands: a retry sends them again.
    """
    commands = [args for args, _ in pipe.command_stack]  # kept: a retry sends them again
    if not commands:
        return []
    send = _sender(pipe)
    replies = send(commands)
    for _ in range(_RELOADS):  # a flush may come again between a reload and the run
        lost = [n for n, r in enumerate(replies) if isinstance(r, redis.exceptions.NoScriptError)]
        if not lost:
            break
        for script in scripts:  # those scripts did not run: load them, run just those again
            script.reload()
        again = send([commands[n] for n in lost])
        for n, reply in zip(lost, again, strict=True):
            replies[n] = reply
    for reply in replies:
        if isinstance(reply, redis.ResponseError) and not (item_errors and item_error(reply)):
            raise reply
    return replies


_Send = Callable[[list[tuple[Any, ...]]], list[Any]]


def _sender(pipe: Batch | redis.client.Pipeline) -> _Send:
    """How to send a list of commands for `pipe`'s client: to its server, or over a cluster."""
    if isinstance(pipe, redis.cluster.ClusterPipeline):
        raise TypeError("a cluster's commands go in a redis_io.batch(client), not a pipeline")
    if isinstance(pipe, Batch):
        client = pipe.client
        wait = replicas_to_wait(client)
        if isinstance(client, redis.cluster.RedisCluster):
            return lambda commands: _cluster_round_trip(client, commands, wait)
        pool = client.connection_pool
    else:
        pool, wait = pipe.connection_pool, None
    return lambda commands: _round_trip(pool, commands, wait)


def _round_trip(
    pool: redis.ConnectionPool, commands: list[tuple[Any, ...]], wait: Replicas | None = None
) -> list[Any]:
    sent = _with_wait(commands, wait)
    conn = pool.get_connection()
    try:
        conn.send_packed_command([pack(sent)])  # type: ignore[no-untyped-call]
        parser = getattr(conn, "_parser", None)
        replies: list[Any] = []
        if isinstance(getattr(parser, "_reader", None), hiredis.Reader):
            # Straight from the parser's hiredis reader: redis-py's read_response costs more
            # than the parsing per reply (README "Performance"). Error replies come back as
            # redis-py's exception objects (its parser's replyError), in their places.
            replies = _read_sync(parser, len(sent))
        else:
            for _ in sent:  # every reply is read, errors too: the stream stays in step
                try:
                    replies.append(conn.read_response())
                except redis.ResponseError as exc:
                    replies.append(exc)
        _check_primary(replies)
    except BaseException:
        conn.disconnect()  # type: ignore[no-untyped-call]  # replies may be left unread
        raise
    finally:
        pool.release(conn)
    return _replicated(replies, len(commands), wait)


_READS = frozenset(
    {
        b"GET", b"MGET", b"HGET", b"HMGET", b"HGETALL", b"HEXISTS", b"HLEN", b"LRANGE",
        b"LLEN", b"ZRANGE", b"ZRANGEBYSCORE", b"ZSCORE", b"ZCARD", b"ZCOUNT", b"SISMEMBER",
        b"SMISMEMBER", b"SMEMBERS", b"SCARD", b"EXISTS", b"TTL", b"PTTL", b"TYPE", b"XLEN",
        b"XRANGE", b"XREVRANGE", b"PING", b"ASKING",
    }
)  # fmt: skip
"""Commands that write nothing: a batch of only these waits for no replica."""


def _with_wait(commands: list[tuple[Any, ...]], wait: Replicas | None) -> list[tuple[Any, ...]]:
    """The commands, then a WAIT for the replicas when some of them write."""
    if wait is None or all(_name(c) in _READS for c in commands):
        return commands
    return [*commands, ("WAIT", wait.count, wait.timeout_ms)]


def _replicated(replies: list[Any], count: int, wait: Replicas | None) -> list[Any]:
    """The replies of the `count` commands; short of the replicas waited for, an outage.

    The writes are on the primary then, not (yet) on the replicas that would take over from
    it: nothing may be acted on (an alert acknowledged, a call placed) on their strength.
    """
    if len(replies) == count or wait is None:
        return replies
    acked = replies[count]
    if not isinstance(acked, int) or acked < wait.count:
        raise NotReplicatedError(
            f"written on the primary, on {acked!r} of {wait.count} replicas after "
            f"{wait.timeout_ms} ms ([redis] wait_replicas)"
        )
    return replies[:count]


def _name(command: tuple[Any, ...]) -> bytes:
    head = command[0]
    return (head.encode() if isinstance(head, str) else bytes(head)).upper()


def _check_primary(replies: list[Any]) -> None:
    """A server that cannot take writes now fails the batch as a lost connection.

    READONLY: it became a replica (a failover); the connection is dropped by the caller, so
    the next one asks the sentinels (or the cluster) where the primary is now, as redis-py's
    Sentinel connections do. MASTERDOWN, NOREPLICAS (`min-replicas-to-write` unmet): a primary
    cut off from its replicas. Each is Redis away for a while, never one alert's fault.
    """
    for reply in replies:  # by exact type: ~10x cheaper than isinstance, on every reply
        kind = type(reply)
        if kind in _REFUSALS or (kind is _PLAIN_ERROR and str(reply).startswith("NOREPLICAS")):
            raise redis.ConnectionError(f"Redis takes no writes now ({kind.__name__}): {reply}")


_REFUSALS = frozenset({ReadOnlyError, MasterDownError})
_PLAIN_ERROR = redis.ResponseError


def _command_keys(command: tuple[Any, ...]) -> tuple[Any, ...]:
    """The keys of a command: those of a script call, all of a multi-key one, else the first.

    Only what the raw pipelines send: a command whose key is elsewhere goes to the wrong node
    at worst, which answers MOVED, and it is sent on (one more round trip).
    """
    name = _name(command)
    if name in (b"EVALSHA", b"EVAL"):
        return tuple(command[3 : 3 + int(command[2])])
    if name in _MULTI_KEY:
        return tuple(command[1:])
    if name in (b"XREADGROUP", b"XREAD"):  # ... STREAMS key [key ...] id [id ...]
        words = [w.upper() if isinstance(w, bytes) else str(w).upper().encode() for w in command]
        at = words.index(b"STREAMS") + 1
        return tuple(command[at : at + (len(command) - at) // 2])
    if name == b"XGROUP":  # XGROUP CREATE key group id
        return tuple(command[2:3])
    return tuple(command[1:2])


def slot_of(command: tuple[Any, ...]) -> int | ClusterCrossSlotError | None:
    """The cluster slot a command's keys live in; None for no key; an error for two slots."""
    keys = _command_keys(command)
    if not keys:
        return None
    slots = {key_slot(k if isinstance(k, bytes) else str(k).encode()) for k in keys}
    if len(slots) > 1:
        return ClusterCrossSlotError(
            f"Keys in request don't hash to the same slot: {command[0]} {len(keys)} keys"
        )
    return slots.pop()


_Plan = dict[str, tuple[Any, list[tuple[int, bool]]]]
"""Per node name: the node and the commands (index, sent after ASKING) it gets this round."""


def _plan(
    manager: Any,  # noqa: ANN401 - redis-py's NodesManager (sync or asyncio)
    commands: list[tuple[Any, ...]],
    todo: list[int],
    asked: dict[int, tuple[str, int]],
    replies: list[Any],
) -> _Plan:
    """Which node each command goes to this round (a command asked elsewhere goes there)."""
    plan: _Plan = {}
    for n in todo:
        if n in asked:
            host, port = asked[n]
            node = manager.get_node(host=host, port=port)
            if node is not None:
                plan.setdefault(node.name, (node, []))[1].append((n, True))
                continue
        slot = slot_of(commands[n])
        if isinstance(slot, ClusterCrossSlotError):
            replies[n] = slot
            continue
        try:
            node = manager.default_node if slot is None else manager.get_node_from_slot(slot)
        except redis.exceptions.SlotNotCoveredError as exc:
            raise ClusterUnavailableError(str(exc)) from exc
        plan.setdefault(node.name, (node, []))[1].append((n, False))
    return plan


def _wire(commands: list[tuple[Any, ...]], sent: list[tuple[int, bool]]) -> list[tuple[Any, ...]]:
    """The commands of one node's part, each asked one after an ASKING."""
    wire: list[tuple[Any, ...]] = []
    for n, asking in sent:
        if asking:
            wire.append(("ASKING",))
        wire.append(commands[n])
    return wire


def _settle(
    sent: list[tuple[int, bool]],
    got: list[Any],
    replies: list[Any],
    asked: dict[int, tuple[str, int]],
) -> tuple[list[int], bool]:
    """Put one node's replies in place; the commands to send again, and whether to re-read slots.

    The slot map is stale after MOVED or CLUSTERDOWN (a failover, a resharding): it is read
    again before the next round; ASK sends just that command to the node named, after ASKING.
    """
    again: list[int] = []
    stale = False
    answers = iter(got)
    for n, asking in sent:
        if asking:
            next(answers)  # ASKING's own OK
        reply = replies[n] = next(answers)
        asked.pop(n, None)
        if isinstance(reply, MovedError | ClusterDownError | TryAgainError):  # MOVED: an AskError
            stale = stale or not isinstance(reply, TryAgainError)
            again.append(n)
        elif isinstance(reply, AskError):  # the slot is moving: this key is on the new node
            asked[n] = (reply.host, reply.port)
            again.append(n)
    return again, stale


def _cluster_round_trip(
    client: redis.cluster.RedisCluster,
    commands: list[tuple[Any, ...]],
    wait: Replicas | None = None,
) -> list[Any]:
    """Each node its part of `commands` (one round trip each); the replies in order."""
    replies: list[Any] = [None] * len(commands)
    todo, asked = list(range(len(commands))), dict[int, tuple[str, int]]()
    for attempt in range(_REDIRECTS + 1):
        again: list[int] = []
        stale = False
        for node, sent in _plan(client.nodes_manager, commands, todo, asked, replies).values():
            pool = client.get_redis_connection(node).connection_pool
            try:
                got = _round_trip(pool, _wire(commands, sent), wait)
            except (redis.ConnectionError, redis.TimeoutError):
                _refresh(client)  # a node failed: learn who took its slots over
                raise
            more, moved = _settle(sent, got, replies, asked)
            again += more
            stale = stale or moved
        if not again:
            return replies
        if attempt == _REDIRECTS:
            break
        if stale:
            _refresh(client)
        time.sleep(0.05 * attempt)  # TRYAGAIN, CLUSTERDOWN: the cluster settles in moments
        todo = again
    raise ClusterUnavailableError(f"the cluster kept redirecting: {replies[again[0]]}")


def _refresh(client: redis.cluster.RedisCluster) -> None:
    """Read the slot map again (the nodes answering CLUSTER SLOTS); a failure is left for later."""
    with contextlib.suppress(redis.RedisError):
        client.nodes_manager.initialize()


def _read_sync(parser: Any, count: int) -> list[Any]:  # noqa: ANN401 - redis-py's parser
    """`count` replies read with the parser's own hiredis reader and socket (see _round_trip)."""
    reader: hiredis.Reader = parser._reader  # noqa: SLF001
    replies: list[Any] = []
    while not _parsed(reader, replies, count):
        try:
            parser.read_from_socket()
        except OSError as exc:  # a reset: redis-py's read_response says ConnectionError
            raise _reset(exc) from exc
    return replies


def _parsed(reader: hiredis.Reader, replies: list[Any], count: int) -> bool:
    """Take what the reader holds into `replies`, up to `count`; whether that many are in."""
    while len(replies) < count:
        reply = reader.gets()
        if reply is False or reply is _NOT_ENOUGH_DATA:
            return False
        if isinstance(reply, redis.ConnectionError):
            raise reply  # LOADING and the like: as read_response raises them
        replies.append(reply)
    return True


def _reset(exc: OSError) -> redis.ConnectionError:
    return redis.ConnectionError(f"Error while reading from Redis: {exc!r}")


async def settled(futures: list[asyncio.Future[Any]]) -> list[Any]:
    """The futures' results in order, an exception in place of a failed one.

    What `asyncio.gather(*futures, return_exceptions=True)` answers, for the futures of
    AutoPipeline.send(): those of one batch resolve together, so the first await is the only
    one that waits, and none of gather's per-future callbacks and bookkeeping is paid
    (~0.5 against ~2.8 µs per command at 400 a batch, ~1.2 against ~6.4 at 10: a fifth of the
    dialer loop's time under load went to gather).
    """
    out: list[Any] = []
    for n, future in enumerate(futures):
        try:
            out.append(await future)
        except asyncio.CancelledError:
            for rest in futures[n + 1 :]:  # nobody is left to read what they end with
                rest.add_done_callback(_retrieved)
            raise
        except Exception as exc:
            out.append(exc)
    return out


async def replies(futures: list[asyncio.Future[Any]]) -> list[Any]:
    """The futures' results in order; the first failure raised (every failure retrieved)."""
    out = await settled(futures)
    for reply in out:
        if isinstance(reply, BaseException):
            raise reply
    return out


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # read: no "exception was never retrieved" at shutdown


class AutoPipeline:
    """Coalesces the Redis commands that a loop's tasks issue into pipelined round trips.

    Like ioredis' auto-pipelining: each call path keeps its plain sequential awaits, and the
    dozens of calls in flight share their round trips. One connection of its own, one batch on
    it at a time: what is issued while a batch is out goes together in the next one, so a busier
    loop makes bigger batches instead of more round trips. It packs and reads the replies itself
    (redis-py's Connection API) rather than through a Pipeline object, whose per-command
    bookkeeping is the larger part of the dialer loop's time in a profile. A connection failure
    fails every command of the batch (callers ride it out and retry); NOSCRIPT after a Redis
    restart reloads the script and retries that one command. On a cluster, a batch is split by
    node (a connection of its own to each), sent to all at once and its replies put in order.

    The urgent lane: a command sent from a task doing a critical alert's work (`urgently`,
    `lane`) goes on a second connection with batches of its own, so it never waits behind the
    batch in flight nor the hundreds queued behind it (in the 50,000-sensor storm a critical
    alert's 'queued' record waited 10-260 ms there). Redis orders commands per connection only:
    a critical alert's steps all take the urgent lane, so they keep their order; across lanes
    they may overtake other alerts' commands, which no step depends on.
    """

    def __init__(
        self, client: AsyncRedis, *, _sources: dict[str, str] | None = None, _urgent: bool = True
    ) -> None:
        """Send through a connection made like `client`'s; register scripts with script()."""
        self._client = client
        self._queued: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._sources: dict[str, str] = {} if _sources is None else _sources
        # Connects only when first used.
        self._urgent = (
            AutoPipeline(client, _sources=self._sources, _urgent=False) if _urgent else None
        )
        self._sending: asyncio.Task[None] | None = None
        self._conn: aioredis.connection.AbstractConnection | None = None
        self._node_conns: dict[str, aioredis.connection.AbstractConnection] = {}
        self._wait = replicas_to_wait(client)
        self.round_trips = 0
        """Batches sent so far."""

    def script(self, source: str) -> str:
        """Register a Lua script; returns its SHA1 for evalsha()."""
        sha = script_sha(source)
        self._sources[sha] = source
        return sha

    async def evalsha(self, sha: str, keys: list[str], args: list[Any]) -> Any:  # noqa: ANN401
        """Run a registered script in the next batch."""
        return await self.execute("EVALSHA", sha, len(keys), *keys, *args)

    async def execute(self, *command: Any) -> Any:  # noqa: ANN401
        """Queue one command for the next batch and wait for its reply (unparsed: ints, bytes)."""
        return await self.send(*command)

    def send(self, *command: Any) -> asyncio.Future[Any]:  # noqa: ANN401
        """Queue one command for the next batch; its reply is the future's result.

        For a batch of commands awaited together (asyncio.gather over futures makes no task
        per command, as it would over coroutines).
        """
        if self._urgent is not None and URGENT.get():
            return self._urgent.send(*command)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queued.append((command, future))
        if len(self._queued) == 1 and self._sending is None:
            loop.call_soon(self._flush)
        return future

    async def mget(self, keys: list[str]) -> list[Any]:
        """The values of `keys` (None where absent), in the next batch.

        One MGET; on a cluster a GET each (a cluster's MGET takes keys of one slot only).
        """
        if isinstance(self._client, aiocluster.RedisCluster):
            return await replies([self.send("GET", key) for key in keys])
        return list(await self.execute("MGET", *keys))

    def send_script(self, sha: str, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        """A registered script in the next batch, as send() does a command."""
        return self.send("EVALSHA", sha, len(keys), *keys, *args)

    async def aclose(self) -> None:
        """Wait for the batch in flight, then close the connection (the urgent lane's too)."""
        if self._urgent is not None:
            await self._urgent.aclose()
        if self._sending is not None:
            with contextlib.suppress(Exception):
                await self._sending
        if self._conn is not None:
            await self._conn.disconnect()
            self._conn = None
        conns, self._node_conns = list(self._node_conns.values()), {}
        for conn in conns:
            await conn.disconnect()

    def _flush(self) -> None:
        if self._sending is not None or not self._queued:
            return  # the batch in flight flushes what queued meanwhile when it is done
        batch, self._queued = self._queued, []
        self._sending = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending = None
        if not task.cancelled():  # cancelled: the loop is stopping, start nothing new
            self._flush()

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        try:
            replies = await self._round_trip([command for command, _ in batch])
        except BaseException as exc:  # the connection failed: every command of it failed
            error = exc if isinstance(exc, Exception) else redis.ConnectionError(repr(exc))
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
            return
        for (command, future), reply in zip(batch, replies, strict=True):
            answer = reply
            if isinstance(reply, redis.exceptions.NoScriptError) and command[0] == "EVALSHA":
                answer = await self._reload_and_run(command)
            if future.done():
                continue
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)

    async def _reload_and_run(self, command: tuple[Any, ...]) -> Any:  # noqa: ANN401
        """A script call Redis lost the script of: loaded again and run; its reply or error."""
        answer: Any = None
        for _ in range(_RELOADS):  # a flush may come again between the load and the run
            try:
                await self._client.script_load(self._sources[command[1]])
                answer = await self._client.execute_command(*command)
            except Exception as exc:
                answer = exc
            if not isinstance(answer, redis.exceptions.NoScriptError):
                break
        return answer

    async def _round_trip(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        client = self._client
        if isinstance(client, aiocluster.RedisCluster):
            replies = await self._cluster_round_trip(client, commands)
        else:
            if self._conn is None:
                self._conn = client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
            replies = await _exchange(self._conn, commands, self._wait)
        self.round_trips += 1
        return replies

    async def _cluster_round_trip(
        self, client: aiocluster.RedisCluster, commands: list[tuple[Any, ...]]
    ) -> list[Any]:
        """Each node its part of the batch, all at once; the replies in order (see execute)."""
        await client.initialize()  # once: the slot map
        replies: list[Any] = [None] * len(commands)
        todo, asked = list(range(len(commands))), dict[int, tuple[str, int]]()
        for attempt in range(_REDIRECTS + 1):
            parts = list(_plan(client.nodes_manager, commands, todo, asked, replies).values())
            got = await asyncio.gather(
                *(self._on_node(node, _wire(commands, sent)) for node, sent in parts),
                return_exceptions=True,
            )
            for answer in got:
                if isinstance(answer, BaseException):
                    with contextlib.suppress(redis.RedisError):
                        await client.nodes_manager.initialize()  # who took a failed node's slots
                    raise answer
            again: list[int] = []
            stale = False
            for (_, sent), answer in zip(parts, got, strict=True):
                more, moved = _settle(sent, answer, replies, asked)  # type: ignore[arg-type]
                again += more
                stale = stale or moved
            if not again:
                return replies
            if attempt == _REDIRECTS:
                break
            if stale:
                with contextlib.suppress(redis.RedisError):
                    await client.nodes_manager.initialize()
            await asyncio.sleep(0.05 * attempt)
            todo = again
        raise ClusterUnavailableError(f"the cluster kept redirecting: {replies[again[0]]}")

    async def _on_node(
        self,
        node: aiocluster.ClusterNode,
        commands: list[tuple[Any, ...]],
    ) -> list[Any]:
        """One node's part, on this pipeline's own connection to that node."""
        conn = self._node_conns.get(node.name)
        if conn is None:
            # As redis-py's cluster makes its own: no retry inside the connection (a dead
            # node is the cluster's business: the slot map is read again, the batch retried).
            kwargs = {**node.connection_kwargs, "retry": Retry(NoBackoff(), 0)}
            conn = self._node_conns[node.name] = node.connection_class(**kwargs)
        try:
            return await _exchange(conn, commands, self._wait)
        except BaseException:
            self._node_conns.pop(node.name, None)
            raise


async def _exchange(
    conn: aioredis.connection.AbstractConnection,
    commands: list[tuple[Any, ...]],
    wait: Replicas | None = None,
) -> list[Any]:
    """Send `commands` on `conn` and read every reply; a failure leaves `conn` disconnected.

    `wait`: the replicas that must have the writes before the replies count (see execute).
    """
    sent = _with_wait(commands, wait)
    try:
        if not conn.is_connected:
            # connect() itself: a Sentinel-managed connection asks the sentinels where the
            # primary is there; send_packed_command would connect to its default address.
            await conn.connect()  # type: ignore[no-untyped-call]
        # hiredis packs in C what redis-py's async connection packs argument by argument.
        await _write(conn, pack(sent))
        # One deadline for the batch, not a timer per reply.
        async with asyncio.timeout(getattr(conn, "socket_timeout", None)):
            replies = await _read_replies(conn, len(sent))
        _check_primary(replies)
    except TimeoutError as exc:
        await conn.disconnect()
        raise redis.TimeoutError(f"no reply from Redis for {len(commands)} commands") from exc
    except BaseException:
        # Replies may be left unread: the next batch starts on a fresh connection.
        await conn.disconnect()
        raise
    return _replicated(replies, len(commands), wait)


async def _write(conn: aioredis.connection.AbstractConnection, data: bytes) -> None:
    """What redis-py's send_packed_command does, but for its `wait_for` around every write.

    Python 3.11's wait_for wraps the write in a task of its own, with a timer: one more turn
    of the event loop per round trip, for a write the socket nearly always takes at once. The
    deadline is kept for when it matters: the kernel took less than all, and the rest waits
    for room (`socket_timeout`, as redis-py applies it).
    """
    if not hasattr(conn, "_writer"):  # a redis-py that keeps its stream elsewhere
        await conn.send_packed_command(data, check_health=False)
        return
    writer = conn._writer  # noqa: SLF001
    if writer is None or writer.transport.is_closing():
        raise redis.ConnectionError("Connection closed by the server before write")
    try:
        writer.write(data)
        if writer.transport.get_write_buffer_size():
            async with asyncio.timeout(getattr(conn, "socket_timeout", None)):
                await writer.drain()
    except TimeoutError:  # an OSError too: the caller says it as redis.TimeoutError
        # Dropped, unsent bytes and all: a close would wait for them to drain first, and the
        # caller's disconnect with it (redis-py disconnects without waiting here too).
        writer.transport.abort()
        raise
    except OSError as exc:  # a reset while writing: a ConnectionError, as redis-py says it
        writer.transport.abort()
        raise redis.ConnectionError(f"Error while writing to Redis: {exc!r}") from exc


async def _read_replies(conn: aioredis.connection.AbstractConnection, count: int) -> list[Any]:
    """`count` replies, errors in their places; straight from hiredis when the parser has it.

    redis-py's read_response costs several times the parsing per reply (a timeout context, the
    peer's name formatted, awaits within awaits): the dialer loop's larger cost in a profile.
    """
    parser = getattr(conn, "_parser", None)
    reader = getattr(parser, "_reader", None)
    replies: list[Any] = []
    if not isinstance(reader, hiredis.Reader):
        for _ in range(count):  # every reply is read, errors too: the stream stays in step
            try:
                replies.append(await conn.read_response(timeout=math.inf))
            except redis.ResponseError as exc:
                replies.append(exc)
        return replies
    while not _parsed(reader, replies, count):
        try:
            await parser.read_from_socket()  # type: ignore[union-attr]
        except OSError as exc:  # a reset: redis-py's read_response says ConnectionError
            raise _reset(exc) from exc
    return replies
