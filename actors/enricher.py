"""Enricher actor: the customer from the Redis cache or the CRM, then compliance, then dialer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pykka
import redis

from tripline.actors import Supervised
from tripline.actors._inbox import urgent_first_inbox
from tripline.actors._loop import LoopThread, ride_out
from tripline.actors._retry import Backoff
from tripline.adapters.crm import (
    CrmUnavailableError,
    UnusableRecordError,
    cache_customer,
    fetch_customer,
    from_cache,
    sync_customers,
)
from tripline.adapters.crm import session as crm_session
from tripline.adapters.redis_clients import aclose, async_redis
from tripline.adapters.redis_io import AutoPipeline, urgently
from tripline.adapters.store import Keys
from tripline.conf.schema import CrmConfig, RedisConfig
from tripline.messages import (
    Alert,
    Customer,
    DialIntent,
    EnrichBatch,
    Ping,
    Priority,
    StatusQuery,
    TaskIntent,
    WorkBatch,
)
from tripline.pipeline.breaker import Breaker, allow, record
from tripline.pipeline.comply import (
    Allowed,
    Blocked,
    ComplyRules,
    comply,
    normalise_phone,
    schedulable,
)
from tripline.service.stats import Stats

log = logging.getLogger("tripline.enricher")

# A batch that met a Redis outage past ride_out's tries waits and tries again, for as long as it
# takes: its alerts stay 'accepted' (the resume sweep steps in only if this actor dies).
_REDIS_AGAIN = Backoff(first=5.0, cap=5.0)
_PHONES_KEPT = 50_000  # customers' numbers kept for the do-not-call check (~10 MB at most)
_CRM_CONCURRENCY = 16  # a storm must not become a CRM outage: at most this many lookups at once


_UNAVAILABLE = object()  # a customer the CRM could not be asked about


@dataclass(frozen=True, slots=True)
class _NoRecord:
    """The CRM answered, but has no usable record of this customer: unknown, as on a 404."""

    detail: str


def _intent(
    alert: Alert,
    customer: Customer | None,
    decision: Allowed | Blocked,
    now: float,
    rules: ComplyRules,
) -> DialIntent | TaskIntent:
    """What the dialer gets for one alert: a call, or a task when compliance blocked it."""
    scheduled = 0.0
    if isinstance(decision, Blocked):
        if customer is None or not schedulable(decision, alert.priority, rules):
            return decision.task(alert)
        scheduled = decision.due  # a callback the contact center works when the window opens
    assert customer is not None  # noqa: S101 - comply allows only with a customer
    phone = decision.phone if isinstance(decision, Allowed) else normalise_phone(customer.phone)
    contact = Customer(
        customer_id=customer.customer_id,
        name=customer.name,
        phone=phone or customer.phone,
        timezone=customer.timezone,
        do_not_disturb=False,
        do_not_call=False,
        country=customer.country,
        region=customer.region,
    )
    return DialIntent(
        intent_id=alert.idempotency_key,
        alert=alert,
        customer=contact,
        priority=alert.priority,
        enqueued_at=now,
        facts=tuple(decision.facts.items()),
        scheduled_for=scheduled,
    )


def _batch_done(future: Future[None]) -> None:
    """A batch that failed is said so: its alerts stay 'accepted' and the sweep re-routes them."""
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.error("enrichment batch failed; its alerts wait for the resume sweep: %r", exc)


class Enricher(Supervised, pykka.ThreadingActor):
    """Looks customers up without ever blocking a shard: CRM calls run on an asyncio loop.

    The breaker state lives on the loop (only coroutines touch it); the actor thread only
    submits work.
    """

    # The critical lane: a critical alert's batch goes ahead of those waiting (actors/_inbox.py).
    _create_actor_inbox = staticmethod(urgent_first_inbox)

    def __init__(
        self,
        *,
        conf: CrmConfig,
        redis_conf: RedisConfig,
        keys: Keys,
        rules: ComplyRules,
        dialer: Callable[[], pykka.ActorRef[Any]],
        stats: Stats | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Keep collaborators; the dialer is a resolver so it survives its restarts."""
        super().__init__()
        self._conf, self._redis_conf, self._keys, self._rules = conf, redis_conf, keys, rules
        self._dialer, self._clock, self._stats = dialer, clock, stats or Stats()
        self._loop: LoopThread | None = None
        self._lookups: dict[str, asyncio.Future[Customer | None]] = {}
        self._breaker = Breaker()
        self._retries: set[asyncio.Task[None]] = set()  # strong refs to retried batches
        self._synced: int | None = None
        # Each customer's number as last seen (normalised), least recently seen first: its
        # do-not-call check can go with the profile look-up (see _enrich). Loop-only.
        self._phones: OrderedDict[str, str] = OrderedDict()

    def on_start(self) -> None:
        """Start the loop with its Redis client, HTTP session and the prefetch job."""
        self._loop = LoopThread(f"enricher-loop-{id(self):x}")
        self._loop.call(self._open())

    async def _open(self) -> None:
        self._redis = async_redis(self._redis_conf)
        # The per-batch reads share round trips and skip redis-py's per-command bookkeeping.
        self._auto = AutoPipeline(self._redis)
        self._http = crm_session(self._conf)
        self._sem = asyncio.Semaphore(_CRM_CONCURRENCY)
        if self._conf.sync_interval_seconds > 0:
            self._sync_task = asyncio.get_running_loop().create_task(self._sync_forever())

    async def _close(self) -> None:
        await self._http.close()
        await self._auto.aclose()
        await aclose(self._redis)

    def on_stop(self) -> None:
        """Close connections and stop the loop."""
        if self._loop is not None:
            self._loop.stop(closing=self._close)
            self._loop = None

    def on_receive(self, message: Any) -> Any:  # noqa: ANN401
        """Dispatch one message."""
        match message:
            case EnrichBatch():
                assert self._loop is not None  # noqa: S101 - on_start ran
                job = self._enrich(message.alerts)
                # The shards send critical alerts in batches of their own: Redis' urgent lane.
                if any(a.priority == Priority.CRITICAL for a in message.alerts):
                    job = urgently(job)
                self._loop.submit(job).add_done_callback(_batch_done)
            case StatusQuery():
                return {
                    "crm": {"breaker": self._breaker.state.value, "cacheWarmedWith": self._synced}
                }
            case Ping():
                return True
            case _:
                return super().on_receive(message)
        return None

    async def _enrich(self, alerts: tuple[Alert, ...]) -> None:
        """One batch: profiles and the do-not-call list in one round trip (CRM for misses)."""
        started = time.perf_counter()
        ids = {a.customer_id for a in alerts}
        # The numbers these customers had when last seen are checked against the do-not-call
        # list in the profiles' round trip; only a customer new to this process, or whose
        # number changed, costs a second one (two round trips in a row for every batch would
        # sit on a critical alert's way).
        guessed = {cid: phone for cid in ids if (phone := self._phones.get(cid))}
        try:
            cached, listed = await ride_out(
                lambda: asyncio.gather(self._cached(ids), self._on_dnc_list(guessed))
            )
            customers: dict[str, Customer | object | None] = dict(cached)
            missing = [cid for cid, found in cached.items() if found is None]
            fetched = await asyncio.gather(*(self._lookup(cid) for cid in missing))
            customers.update(zip(missing, fetched, strict=True))
            phones = {
                cid: normalise_phone(c.phone)
                for cid, c in customers.items()
                if isinstance(c, Customer) and c.phone
            }
            unchecked = {cid: p for cid, p in phones.items() if p and guessed.get(cid) != p}
            if unchecked:
                listed |= await ride_out(lambda: self._on_dnc_list(unchecked))
        except (redis.ConnectionError, redis.TimeoutError):
            # Redis is down, not the CRM: the alerts stay 'accepted' and this batch tries again
            # later (the resume sweep only steps in if this actor dies meanwhile).
            log.warning("enrichment of %d alerts waits for Redis", len(alerts))
            self._retry_later(alerts)
            return
        self._remember_phones(ids, phones)
        now = self._clock()
        works = []
        for alert in alerts:
            found = customers.get(alert.customer_id)
            customer = found if isinstance(found, Customer) else None
            decision = comply(
                customer,
                now=now,
                rules=self._rules,
                alert_type=alert.alert_type,
                on_dnc_list=phones.get(alert.customer_id) in listed,
                crm_unavailable=found is _UNAVAILABLE,
                unknown_because=found.detail if isinstance(found, _NoRecord) else "",
            )
            works.append(_intent(alert, customer, decision, now, self._rules))
        self._dialer().tell(WorkBatch(works=tuple(works)))  # one hand-off per batch
        self._stats.stage_seconds.labels("enrich").observe(time.perf_counter() - started)

    def _remember_phones(self, ids: set[str], phones: dict[str, str | None]) -> None:
        for cid in ids:
            if phone := phones.get(cid):
                self._phones[cid] = phone
                self._phones.move_to_end(cid)
            else:
                self._phones.pop(cid, None)
        while len(self._phones) > _PHONES_KEPT:
            self._phones.popitem(last=False)

    def _retry_later(self, alerts: tuple[Alert, ...]) -> None:
        loop = asyncio.get_running_loop()

        def again() -> None:
            task = loop.create_task(self._enrich(alerts))
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)

        loop.call_later(_REDIS_AGAIN.delay(1), again)

    async def _cached(self, ids: set[str]) -> dict[str, Customer | None]:
        order = sorted(ids)
        if not order:
            return {}
        blobs = await self._auto.mget([self._keys.customer(cid) for cid in order])
        out: dict[str, Customer | None] = {}
        for cid, blob in zip(order, blobs, strict=True):
            out[cid] = from_cache(cid, blob)
        return out

    async def _lookup(self, customer_id: str) -> Customer | object | None:
        """The CRM for a cache miss.

        _UNAVAILABLE when it cannot answer; _NoRecord when it has no usable record of them.
        """
        try:
            return await self._customer(customer_id)
        except CrmUnavailableError as exc:
            log.warning("CRM unavailable for %s: %s", customer_id, exc)
        except UnusableRecordError as exc:
            log.warning("no usable CRM record of %r: %s", customer_id, exc)
            return _NoRecord(str(exc))
        except (redis.ConnectionError, redis.TimeoutError):
            raise
        except Exception:  # the loop must survive anything; the alert becomes a task
            log.exception("enrichment failed for %s", customer_id)
        return _UNAVAILABLE

    async def _on_dnc_list(self, phones: Mapping[str, str | None]) -> set[str | None]:
        numbers = sorted({p for p in phones.values() if p})
        if not numbers:
            return set()
        flags = await self._auto.execute("SMISMEMBER", self._keys.dnc(), *numbers)
        return {n for n, flag in zip(numbers, flags, strict=True) if flag}

    async def _customer(self, customer_id: str) -> Customer | None:
        """One CRM lookup per customer, however many alerts wait on it.

        The cache is read again first: another batch may have fetched this customer since ours
        read the cache, and a second CRM request would cost more than this GET.
        """
        cached = from_cache(customer_id, await self._redis.get(self._keys.customer(customer_id)))
        if cached is not None:
            return cached
        pending = self._lookups.get(customer_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Customer | None] = asyncio.get_running_loop().create_future()
        self._lookups[customer_id] = future
        try:
            result = await self._fetch(customer_id)
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._lookups[customer_id]

    async def _fetch(self, customer_id: str) -> Customer | None:
        now = self._clock()
        self._breaker, allowed = allow(
            self._breaker, now=now, cool_off=self._conf.breaker_cool_off_seconds
        )
        if not allowed:  # a CRM that is down must not cost every alert its timeout
            raise CrmUnavailableError("circuit breaker open")
        async with self._sem:
            try:
                customer = await fetch_customer(self._http, self._conf.base_url, customer_id)
            except CrmUnavailableError:
                self._breaker = record(
                    self._breaker,
                    ok=False,
                    now=self._clock(),
                    threshold=self._conf.breaker_threshold,
                )
                raise
            except UnusableRecordError as exc:
                # An answer about this customer, not a CRM failure; an id that was never sent
                # tells nothing either way (and must not close a half-open breaker).
                if exc.answered:
                    self._breaker = record(
                        self._breaker,
                        ok=True,
                        now=self._clock(),
                        threshold=self._conf.breaker_threshold,
                    )
                raise
        self._breaker = record(
            self._breaker, ok=True, now=self._clock(), threshold=self._conf.breaker_threshold
        )
        if customer is not None:
            await cache_customer(
                self._redis,
                self._keys,
                customer,
                self._conf.cache_ttl_seconds,
                fetched_at=self._clock(),
            )
        return customer

    async def _sync_forever(self) -> None:
        """Prefetch the CRM into the cache now and every sync interval, as the guide advises."""
        while True:
            try:
                self._synced = await sync_customers(
                    self._http,
                    self._redis,
                    self._keys,
                    base_url=self._conf.base_url,
                    ttl=self._conf.cache_ttl_seconds,
                    clock=self._clock,
                )
                log.info("CRM cache warmed with %d customers", self._synced)
            except Exception as exc:  # a failed prefetch only means colder cache; try later
                log.warning("CRM prefetch failed: %r", exc)
            await asyncio.sleep(self._conf.sync_interval_seconds)
