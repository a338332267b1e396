"""The customer's flags at the moment of dialing: the cached profile when fresh, else the CRM.

The do-not-call, do-not-disturb and consent flags a call is placed on are at most
`[crm] max_profile_age_seconds` old (pipeline/freshness.py). The cached profile is read in the
round trip of the last checks (no trip of its own); an older one is read from the CRM again,
one request per customer of the round, behind a breaker of the dialer's own (the same rules as
the enricher's: `breaker_threshold` failures in a row open it for `breaker_cool_off_seconds`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from tripline.actors.dialing.follow import as_customer, contacts_of
from tripline.actors.dialing.records import Records
from tripline.adapters import crm
from tripline.adapters.redis_io import replies
from tripline.conf.schema import CrmConfig
from tripline.messages import Customer, DialIntent
from tripline.pipeline.breaker import Breaker, allow, record
from tripline.pipeline.comply import Blocked, ComplyRules, normalise_phone
from tripline.pipeline.freshness import dial_time_flags, profile_fresh

log = logging.getLogger("tripline.dialer")


@dataclass(frozen=True, slots=True)
class Profile:
    """What is known of a customer at the moment of dialing."""

    customer: Customer | None
    """The profile whose flags apply; None: the CRM has none (or none usable), or — when
    `unverified` — nothing newer than the decision's."""
    why_none: str = ""
    """Why there is no profile (the CRM does not know the customer, or its record is unusable)."""
    unverified: str = ""
    """Set when the CRM could not be asked (it is down, or its breaker is open): the flags are
    the newest known (the cached profile, else the decision's) — the documented fallback."""


class Profiles:
    """Reads profiles for the last checks: the cache when fresh enough, else the CRM."""

    def __init__(self, *, conf: CrmConfig, records: Records, clock: Callable[[], float]) -> None:
        """Keep collaborators (on the dialer's loop)."""
        self._conf, self._records, self._clock = conf, records, clock
        self._breaker = Breaker()
        self._http: aiohttp.ClientSession | None = None

    def send(self, customer_id: str) -> asyncio.Future[Any]:
        """Ask for the cached profile with the step being sent (the last checks' round trip)."""
        return self._records.auto.send("GET", self._records.keys.customer(customer_id))

    async def resolve(self, cached: dict[str, asyncio.Future[Any]]) -> dict[str, Profile]:
        """Each customer's profile now: its cached one (sent with `send`), or a CRM read.

        The reads of a round go out together, one per customer.
        """
        blobs = await replies(list(cached.values()))
        now = self._clock()
        found: dict[str, Profile] = {}
        stale: dict[str, Customer | None] = {}
        for customer_id, blob in zip(cached, blobs, strict=True):
            entry = crm.cached_profile(customer_id, blob)
            customer, fetched_at = entry if entry is not None else (None, None)
            if customer is not None and profile_fresh(
                fetched_at, now=now, max_age=self._conf.max_profile_age_seconds
            ):
                found[customer_id] = Profile(customer)
            else:
                stale[customer_id] = customer
        read = await asyncio.gather(*(self._read(cid, known) for cid, known in stale.items()))
        found.update(zip(stale, read, strict=True))
        return found

    async def flags(
        self, intent: DialIntent, found: dict[str, Profile], *, now: float, rules: ComplyRules
    ) -> Blocked | None:
        """The flags of the profile read at dialing, for the number about to be called.

        None when they allow the call (or when the CRM could not be asked and nothing newer than
        the decision's flags is known: they allowed it; the record's history says so).
        """
        profile = found.get(intent.customer.customer_id)
        if profile is None:
            return None
        if profile.unverified:  # the documented fallback: the newest flags known
            await self._records.note(
                intent.intent_id, "profile_unverified", profileUnverified=profile.unverified
            )
            if profile.customer is None:
                return None
        blocked = dial_time_flags(
            None if profile.customer is None else _through(profile.customer, intent),
            now=now,
            rules=rules,
            why_none=profile.why_none or "the number is no longer one of the customer's in the CRM",
        )
        if blocked is None:
            return None
        # The record says why a call its decision allowed became a task.
        return replace(blocked, facts={**blocked.facts, "checked": "at_dialing"})

    async def _read(self, customer_id: str, known: Customer | None) -> Profile:
        """The CRM's profile now; when it cannot be asked, the newest known (`known`)."""
        try:
            customer = await self.read(customer_id)
        except crm.UnusableRecordError as exc:
            return Profile(None, why_none=f"the CRM's record is unusable now: {exc}")
        except crm.CrmUnavailableError as exc:
            log.warning(
                "profile of %s not read again at dialing (%s): older flags", customer_id, exc
            )
            return Profile(known, unverified=f"the CRM could not be asked ({exc})")
        except Exception as exc:  # a round's calls must be settled whatever the read met
            log.exception("profile of %s: reading it again failed", customer_id)
            return Profile(known, unverified=f"reading the CRM failed ({exc!r})"[:200])
        if customer is None:
            return Profile(None, why_none="the customer is no longer known to the CRM")
        return Profile(customer)

    async def read(self, customer_id: str) -> Customer | None:
        """The profile as the CRM has it now (cached, with its time); None when unknown to it.

        Raises:
            crm.CrmUnavailableError: the breaker is open, or the CRM did not answer usably.
            crm.UnusableRecordError: the CRM answered with a document that cannot be read.
        """
        conf = self._conf
        self._breaker, allowed = allow(
            self._breaker, now=self._clock(), cool_off=conf.breaker_cool_off_seconds
        )
        if not allowed:  # a CRM that is down must not cost every call its timeout
            raise crm.CrmUnavailableError("circuit breaker open")
        if self._http is None:
            self._http = crm.session(conf)
        try:
            customer = await crm.fetch_customer(self._http, conf.base_url, customer_id)
        except crm.CrmUnavailableError:
            self._count(ok=False)
            raise
        except crm.UnusableRecordError as exc:
            if exc.answered:  # an answer about this customer, not a CRM failure
                self._count(ok=True)
            raise
        self._count(ok=True)
        if customer is not None:  # the next call to this customer need not ask again
            key = self._records.keys.customer(customer_id)
            doc = crm.cache_doc(customer, self._clock())
            cached = self._records.auto.send("SET", key, doc, "EX", conf.cache_ttl_seconds)
            cached.add_done_callback(_cached)  # not waited for: a cache, not a decision
        return customer

    def _count(self, *, ok: bool) -> None:
        self._breaker = record(
            self._breaker, ok=ok, now=self._clock(), threshold=self._conf.breaker_threshold
        )

    async def close(self) -> None:
        """Close the CRM session."""
        if self._http is not None:
            await self._http.close()


def _cached(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.info("a profile read at dialing was not cached: %r", exc)


def _through(customer: Customer, intent: DialIntent) -> Customer | None:
    """The fresh profile as seen through the contact being called (None: no longer listed).

    Its consent is the contact's and the account holder's (as the ladder judges it); the
    number is the one about to be called, whatever the CRM's formatting of it.
    """
    for contact in contacts_of(customer):
        if (normalise_phone(contact.phone) or contact.phone) == intent.customer.phone:
            return as_customer(customer, contact)
    return None
