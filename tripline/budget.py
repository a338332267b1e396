"""The contact center's rate budget, shared by every instance through one Redis key (GCRA)."""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio as aioredis

from tripline.store import GCRA_LUA


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
        client: redis.Redis | None = None,
        aclient: aioredis.Redis | None = None,
    ) -> None:
        """Bind to the sync client, the async client, or both."""
        self.key = key
        self._interval_ms = 60_000 / rate_per_minute
        self._tolerance_ms = self._interval_ms * (burst - 1)
        self._sync = client.register_script(GCRA_LUA) if client is not None else None
        self._async = aclient.register_script(GCRA_LUA) if aclient is not None else None
        self.taken = 0
        """Requests this process counted against the budget."""

    def try_take(self, up_to: int = 1) -> tuple[int, float]:
        """Take up to `up_to` requests now; returns (taken, seconds to wait when none was)."""
        assert self._sync is not None  # noqa: S101 - constructed with a sync client
        taken, wait_ms = self._sync(
            keys=[self.key], args=[self._interval_ms, self._tolerance_ms, up_to]
        )
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
