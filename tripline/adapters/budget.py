"""The contact center's rate budget, shared by every instance through one Redis key (GCRA)."""

from __future__ import annotations

import asyncio

import redis

from tripline.adapters.redis_clients import AsyncRedis, SyncRedis
from tripline.adapters.store import GCRA_LUA
from tripline.pipeline.govern import Pace, prepay


class RateBudget:
    """`rate_per_minute` requests with bursts of `burst`, counted in Redis for all instances.

    Every request to the contact center takes one: tokens, callbacks, observations, workitems,
    contacts. The dialer's actor thread uses `try_take`; its loop uses `take`.
    """

    def __init__(
        self,
        *,
        key: str,
        rate_per_minute: int,
        burst: int,
        client: SyncRedis | None = None,
        aclient: AsyncRedis | None = None,
        critical_reserve: int = 0,
    ) -> None:
        """Bind to the sync client, the async client, or both.

        `critical_reserve`: requests of the burst (at most burst - 1) that only critical work
        may take. Other work
        conforms only while that many would still fit: in a storm its tasks use the budget up
        to the reserve, and a critical call finds room at once instead of waiting its turn
        (the rate over a minute is the same; only the others' burst is smaller).
        """
        self.key = key
        self._interval_ms = 60_000 / rate_per_minute
        self._tolerance_ms = self._interval_ms * (burst - 1)
        reserve = max(0, min(critical_reserve, burst - 1))  # the others keep one at least
        self._others_ms = self._tolerance_ms - self._interval_ms * reserve
        self._sync = client.register_script(GCRA_LUA) if client is not None else None
        self._async = aclient.register_script(GCRA_LUA) if aclient is not None else None
        self.taken = 0
        """Requests this process counted against the budget."""

    def try_take(self, up_to: int = 1, *, critical: bool = False) -> tuple[int, float]:
        """Take up to `up_to` requests now; returns (taken, seconds to wait when none was).

        Only `critical` work may take the reserve.
        """
        assert self._sync is not None  # noqa: S101 - constructed with a sync client
        tolerance = self._tolerance_ms if critical else self._others_ms
        taken, wait_ms = self._sync(keys=[self.key], args=[self._interval_ms, tolerance, up_to])
        self.taken += int(taken)
        return int(taken), int(wait_ms) / 1000

    async def take(self) -> None:
        """Wait until the budget allows one request, and take it."""
        assert self._async is not None  # noqa: S101 - constructed with an async client
        while True:
            taken, wait_ms = await self._async(
                keys=[self.key], args=[self._interval_ms, self._tolerance_ms, 1]
            )
            if int(taken):
                self.taken += 1
                return
            await asyncio.sleep(int(wait_ms) / 1000)


class PrepaidBudget:
    """Budget taken ahead, on the dialer's thread, for requests about to leave.

    One GCRA round trip takes what can start soon (pipeline.govern.prepay); what is not used
    within `ttl` is let go. The GCRA granted it as conforming, so sending it that much later
    cannot break a per-minute limit, and holding it saves a round trip per call while every
    slot is busy. Once the budget says when its next request fits, it is not asked again
    before then (a storm's tasks pump on every batch).
    """

    def __init__(self, budget: RateBudget, *, ttl: float, most: int) -> None:
        """Take at most `most` requests' worth in one round trip; let it go after `ttl`."""
        self._budget, self._ttl, self._most = budget, ttl, most
        self._prepaid = 0  # taken but not yet used (counted: errs on the side of less)
        self._until = 0.0
        self._free_at = 0.0  # no request but a critical one fits the budget before this
        self._critical_free_at = 0.0  # nor a critical one (it may take the reserve)
        self._pace = Pace(ttl)

    @property
    def taken(self) -> int:
        """Requests this process counted against the shared budget."""
        return self._budget.taken

    def wait(self, now: float, *, queued: int, free: int, critical: bool = False) -> float:
        """0 when one request may leave now (counted as taken); else the seconds to wait.

        `queued` and `free` (work waiting, concurrency slots free) size what is taken ahead.
        A `critical` request may take the budget's reserve; it takes only itself from it.
        """
        if now > self._until:
            self._prepaid = 0
        if self._prepaid == 0:
            free_at = self._critical_free_at if critical else self._free_at
            if now < free_at:
                return free_at - now
            want = 1 if critical else max(1, self._want(queued, free, now))
            try:
                self._prepaid, wait = self._budget.try_take(want, critical=critical)
            except (redis.ConnectionError, redis.TimeoutError):
                wait = 1.0  # Redis is away: nothing may leave uncounted, try again soon
            if wait > 0:
                if critical:
                    self._critical_free_at = now + wait
                else:
                    self._free_at = now + wait
                return wait
            self._until = now + self._ttl
        self._prepaid -= 1
        return 0.0

    def _want(self, queued: int, free: int, now: float) -> int:
        return prepay(queued=queued, free=free, recent=self._pace.recent(now), most=self._most)

    def started(self, now: float) -> None:
        """A request left now (the pace sizes what is taken ahead under load)."""
        self._pace.started(now)
