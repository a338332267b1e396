"""Enricher actor: the customer from the Redis cache or the CRM, then compliance, then dialer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pykka
import redis.asyncio as aioredis

from actors import Supervised
from actors._loop import LoopThread
from conf.schema import CrmConfig
from messages import Customer, DialIntent, EnrichRequest, Ping, TaskIntent
from pipeline.comply import Allowed, ComplyRules, comply
from pipeline.enrich import customer_to_doc, parse_customer
from tripline.store import Keys

log = logging.getLogger("tripline.enricher")

_CRM_CONCURRENCY = 16  # a storm must not become a CRM outage: at most this many lookups at once


class CrmUnavailableError(Exception):
    """The CRM could not answer (timeout, connection, 5xx, malformed document)."""


class Enricher(Supervised, pykka.ThreadingActor):
    """Looks customers up without ever blocking a shard: CRM calls run on an asyncio loop."""

    def __init__(
        self,
        *,
        conf: CrmConfig,
        redis_url: str,
        keys: Keys,
        rules: ComplyRules,
        dialer: Callable[[], pykka.ActorRef[Any]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Keep collaborators; the dialer is a resolver so it survives its restarts."""
        super().__init__()
        self._conf, self._redis_url, self._keys, self._rules = conf, redis_url, keys, rules
        self._dialer, self._clock = dialer, clock
        self._loop: LoopThread | None = None
        self._lookups: dict[str, asyncio.Future[Customer | None]] = {}

    def on_start(self) -> None:
        """Start the loop with its Redis client and HTTP session."""
        self._loop = LoopThread(f"enricher-loop-{id(self):x}")
        self._loop.call(self._open())

    async def _open(self) -> None:
        self._redis = aioredis.Redis.from_url(self._redis_url)
        timeout = aiohttp.ClientTimeout(total=self._conf.timeout_seconds)
        headers = {"Authorization": f"Bearer {self._conf.token}"} if self._conf.token else {}
        self._http = aiohttp.ClientSession(timeout=timeout, headers=headers)
        self._sem = asyncio.Semaphore(_CRM_CONCURRENCY)

    async def _close(self) -> None:
        await self._http.close()
        await self._redis.aclose()

    def on_stop(self) -> None:
        """Close connections and stop the loop."""
        if self._loop is not None:
            try:
                self._loop.call(self._close())
            except Exception:
                log.warning("enricher: close failed", exc_info=True)
            self._loop.stop()

    def on_receive(self, message: Any) -> Any:  # noqa: ANN401
        """Dispatch one message."""
        match message:
            case EnrichRequest():
                assert self._loop is not None  # noqa: S101 - on_start ran
                self._loop.submit(self._enrich(message))
            case Ping():
                return True
            case _:
                return super().on_receive(message)
        return None

    async def _enrich(self, request: EnrichRequest) -> None:
        alert = request.alert
        try:
            customer: Customer | None = await self._customer(alert.customer_id)
            unavailable = False
        except CrmUnavailableError as exc:
            log.warning("CRM unavailable for %s: %s", alert.customer_id, exc)
            customer, unavailable = None, True
        except Exception:  # the loop must survive anything; the alert becomes a task
            log.exception("enrichment failed for %s", alert.idempotency_key)
            customer, unavailable = None, True
        now = self._clock()
        decision = comply(customer, now=now, rules=self._rules, crm_unavailable=unavailable)
        if isinstance(decision, Allowed):
            assert customer is not None  # noqa: S101 - comply allows only with a customer
            contact = Customer(
                customer_id=customer.customer_id,
                name=customer.name,
                phone=decision.phone,
                timezone=customer.timezone,
                do_not_disturb=False,
                do_not_call=False,
            )
            self._dialer().tell(
                DialIntent(
                    intent_id=alert.idempotency_key,
                    alert=alert,
                    customer=contact,
                    priority=alert.priority,
                    enqueued_at=now,
                )
            )
        else:
            self._dialer().tell(
                TaskIntent(
                    alert=alert,
                    reason=decision.reason,
                    due=decision.due,
                    detail=decision.detail,
                    facts=tuple(decision.facts.items()),
                )
            )

    async def _customer(self, customer_id: str) -> Customer | None:
        """Cache first; on a miss one CRM lookup per customer, however many alerts wait on it."""
        cached = await self._redis.get(self._keys.customer(customer_id))
        if cached is not None:
            parsed = parse_customer(customer_id, orjson.loads(cached))
            if isinstance(parsed, Customer):
                return parsed
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
        url = f"{self._conf.base_url}/api/v1/customers/{customer_id}"
        async with self._sem:
            try:
                async with self._http.get(url) as resp:
                    if resp.status == 404:
                        return None
                    if resp.status != 200:
                        raise CrmUnavailableError(f"HTTP {resp.status}")
                    doc = orjson.loads(await resp.read())
            except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
                raise CrmUnavailableError(repr(exc)) from exc
        parsed = parse_customer(customer_id, doc)
        if isinstance(parsed, str):
            raise CrmUnavailableError(f"bad CRM document: {parsed}")
        await self._redis.set(
            self._keys.customer(customer_id),
            orjson.dumps(customer_to_doc(parsed)),
            ex=self._conf.cache_ttl_seconds,
        )
        return parsed
