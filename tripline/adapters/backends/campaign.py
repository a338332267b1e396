"""Genesys campaign contacts: non-critical calls appended in batches to a Power campaign.

The campaign is always running; its dialer paces the contacts, checks DNC and callable times.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from tripline.adapters.backends import Reply, Result, oversized, unavailable
from tripline.adapters.backends.genesys import GenesysBackend
from tripline.adapters.backends.outcomes import genesys_contact
from tripline.messages import DialIntent, Priority, TaskIntent
from tripline.pipeline.dial import Answer
from tripline.pipeline.reach import Evidence


class GenesysCampaignBackend:
    """Collects dials into batches by size or time; one POST per batch and urgency."""

    batching = True
    """The dialer sends batched work without a budget token or a concurrency slot each: the
    batch's one request takes the token (`take_budget`)."""

    def __init__(
        self,
        *,
        genesys: GenesysBackend,
        batch_size: int,
        batch_seconds: float,
        take_budget: Callable[[], Awaitable[None]],
    ) -> None:
        """Share the Genesys client (and its OAuth token) of the callback backend."""
        self._genesys, self._size, self._seconds = genesys, batch_size, batch_seconds
        self._take_budget = take_budget
        self._pending: dict[bool, list[tuple[DialIntent, asyncio.Future[Result]]]] = {
            True: [],
            False: [],
        }
        self._timers: dict[bool, asyncio.TimerHandle | None] = {True: None, False: None}

    async def dial(self, intent: DialIntent, routing_priority: int) -> Result:  # noqa: ARG002
        """Add the contact to the next batch; answers when that batch was posted."""
        urgent = intent.priority <= Priority.HIGH
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending[urgent].append((intent, future))
        if len(self._pending[urgent]) >= self._size:
            self._flush_soon(urgent)
        elif self._timers[urgent] is None:
            self._timers[urgent] = asyncio.get_running_loop().call_later(
                self._seconds, self._flush_soon, urgent
            )
        return await future

    def _flush_soon(self, urgent: bool) -> None:
        timer, self._timers[urgent] = self._timers[urgent], None
        if timer is not None:
            timer.cancel()
        batch, self._pending[urgent] = self._pending[urgent], []
        if batch:
            asyncio.get_running_loop().create_task(self._flush(batch, urgent=urgent))

    async def _flush(
        self, batch: list[tuple[DialIntent, asyncio.Future[Result]]], *, urgent: bool
    ) -> None:
        contacts, ids, ready = [], [], []
        for intent, future in batch:
            contact = contact_for(intent)
            problem = oversized(contact["data"])
            if problem:
                future.set_result(Result(Answer.FAILED, detail=problem))
                continue
            contacts.append(contact)
            ids.append(contact["id"])
            ready.append(future)
        if not contacts:
            return
        try:
            await self._take_budget()
            reply = await self._genesys.post_contacts(contacts, urgent=urgent)
        except Exception as exc:  # every waiter must get an answer
            reply = Result(Answer.UNCERTAIN, detail=f"batch failed: {exc!r}"[:300])
        for contact_id, future in zip(ids, ready, strict=True):
            if not future.done():
                future.set_result(
                    reply
                    if isinstance(reply, Result)
                    else Result(Answer.DONE, ref=f"contact:{contact_id}")
                )

    async def results(self, calls: list[tuple[str, float]]) -> dict[str, Evidence]:
        """Each contact's last call result: POST …/contacts/bulk, up to 100 contacts."""
        ids = {call_id.removeprefix("contact:"): call_id for call_id, _ in calls}
        if not ids:
            return {}
        await self._take_budget()
        reply = await self._genesys.bulk_contacts(list(ids))
        if not isinstance(reply, Reply):
            raise unavailable("campaign contacts", reply)
        found: dict[str, Evidence] = {}
        for contact in reply.body if isinstance(reply.body, list) else []:
            cid = contact.get("id") if isinstance(contact, dict) else None
            if isinstance(cid, str) and cid in ids:
                evidence = genesys_contact(contact, PHONE_COLUMN)
                if evidence is not None:
                    found[ids[cid]] = evidence
        return found

    async def cancel(self, call_id: str) -> bool:
        """A campaign contact is dialed by the campaign: it is made uncallable, not hung up."""
        await self._take_budget()
        return await self._genesys.uncallable_contact(call_id.removeprefix("contact:"))

    async def create_task(self, task: TaskIntent) -> Result:
        """Tasks go through Genesys task management as usual."""
        return await self._genesys.create_task(task)

    async def close(self) -> None:
        """Answer what is still waiting; the shared Genesys client is closed by its owner."""
        for urgent in (True, False):
            self._flush_soon(urgent)
        await asyncio.sleep(0)


PHONE_COLUMN = "phone"
"""The contact list's phone column (its callRecords are keyed by it)."""


def contact_for(intent: DialIntent) -> dict[str, Any]:
    """The campaign contact: its id derives from the alert, so a re-post updates, never adds.

    Each re-attempt is a contact of its own (`-<n>`): re-posting the first one would only
    update it, never dial it again.
    """
    alert = intent.alert
    digest = hashlib.sha256(alert.idempotency_key.encode()).hexdigest()[:32]
    attempt = f"-{intent.attempt}" if intent.attempt > 1 else ""
    return {
        "id": f"tl-{digest}{attempt}",
        "callable": True,
        "data": {
            "phone": intent.customer.phone,
            "name": intent.customer.name[:255],
            "sensorId": alert.sensor_id,
            "alertType": alert.alert_type,
            "referenceId": alert.reference_id,
            "telemetryHash": alert.telemetry_hash,
        },
    }
