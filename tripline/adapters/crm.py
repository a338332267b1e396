"""The CRM client: one customer by id, and the paginated list that warms the cache."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import yarl

from tripline.adapters.redis_clients import AsyncRedis
from tripline.adapters.store import Keys
from tripline.conf.schema import CrmConfig
from tripline.messages import Customer
from tripline.pipeline.enrich import customer_to_doc, names_another, parse_customer

log = logging.getLogger("tripline.crm")

PAGE_SIZE = 200


class CrmUnavailableError(Exception):
    """The CRM could not answer (timeout, connection, 5xx, malformed document)."""


class UnusableRecordError(Exception):
    """No usable record of this customer can come from the CRM; the CRM itself is fine.

    The customer is then unknown (no contact), as when the CRM answers 404: one customer's odd
    id or odd record must not count against the CRM and defer everyone else's alerts.
    """

    def __init__(self, detail: str, *, answered: bool) -> None:
        """Say what is wrong; `answered`: the CRM was asked and answered."""
        super().__init__(detail)
        self.answered = answered


def session(conf: CrmConfig) -> aiohttp.ClientSession:
    """The CRM's HTTP session: its timeout and bearer token (on the loop that uses it)."""
    headers = {"Authorization": f"Bearer {conf.token}"} if conf.token else {}
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=conf.timeout_seconds), headers=headers
    )


FETCHED_AT = "fetchedAt"
"""The cached document's field saying when the CRM answered with it (epoch seconds): how old
the flags a call is placed on are (pipeline/freshness.py)."""


def from_cache(customer_id: str, blob: bytes | str | None) -> Customer | None:
    """A cached profile (cache_customer), None when absent or unreadable (ask the CRM)."""
    found = cached_profile(customer_id, blob)
    return None if found is None else found[0]


def cached_profile(
    customer_id: str, blob: bytes | str | None
) -> tuple[Customer, float | None] | None:
    """A cached profile and when the CRM answered with it; None when absent or unreadable.

    The time is None when not known (a profile cached before the time was kept).
    """
    if blob is None:
        return None
    try:
        doc = orjson.loads(blob)
    except orjson.JSONDecodeError:
        return None
    parsed = parse_customer(customer_id, doc)
    if not isinstance(parsed, Customer):
        return None
    fetched = doc.get(FETCHED_AT)
    known = isinstance(fetched, int | float) and not isinstance(fetched, bool)
    return parsed, float(fetched) if known and math.isfinite(fetched) else None


def cache_doc(customer: Customer, fetched_at: float) -> bytes:
    """The cached form of a profile the CRM answered with at `fetched_at`."""
    return orjson.dumps({**customer_to_doc(customer), FETCHED_AT: fetched_at})


def customer_url(base_url: str, customer_id: str) -> yarl.URL:
    """{base_url}/api/v1/customers/{id}, the id one percent-encoded segment, sent as built.

    Raises:
        UnusableRecordError: the id is empty, "." or "..": servers and proxies resolve such a
            segment even percent-encoded (RFC 3986 5.2.4, WHATWG URL), so the answer would be
            about another resource.
    """
    if customer_id in ("", ".", ".."):
        raise UnusableRecordError(
            f"customer id {customer_id!r} cannot be a URL path segment", answered=False
        )
    # encoded=True: yarl would otherwise resolve "." and ".." segments and re-normalise escapes.
    return yarl.URL(f"{base_url}/api/v1/customers/{quote(customer_id, safe='')}", encoded=True)


async def fetch_customer(
    http: aiohttp.ClientSession, base_url: str, customer_id: str
) -> Customer | None:
    """GET /api/v1/customers/{id}: the customer, None when the CRM does not know them.

    Raises:
        CrmUnavailableError: the CRM did not give a usable answer.
        UnusableRecordError: the id cannot be asked for (see customer_url), or the CRM answered
            with another customer's document or one that cannot be read (a bad contacts list).
    """
    doc = await _get(http, customer_url(base_url, customer_id))
    if doc is None:
        return None
    other = names_another(customer_id, doc) if isinstance(doc, dict) else ""
    if other:
        raise UnusableRecordError(other, answered=True)
    parsed = parse_customer(customer_id, doc)
    if isinstance(parsed, str):
        # The CRM answered; this one document is unusable. Not an outage: it must not open
        # the breaker and defer every other customer's alerts.
        raise UnusableRecordError(f"the CRM's document is unusable: {parsed}", answered=True)
    return parsed


async def list_customers(
    http: aiohttp.ClientSession, base_url: str, page_size: int = PAGE_SIZE
) -> AsyncIterator[Customer]:
    """GET /api/v1/customers?page=N&pageSize=M until nextPage is null; skips bad documents."""
    page: int | None = 1
    while page is not None:
        body = await _get(http, f"{base_url}/api/v1/customers?page={page}&pageSize={page_size}")
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise CrmUnavailableError("customer list without an items array")
        for doc in body["items"]:
            cid = doc.get("id") if isinstance(doc, dict) else None
            parsed = parse_customer(str(cid), doc) if isinstance(cid, str) else "no id"
            if isinstance(parsed, str):
                log.warning("CRM list: skipping a customer document: %s", parsed)
                continue
            yield parsed
        following = body.get("nextPage")
        page = following if isinstance(following, int) and following > page else None


async def cache_customer(
    client: AsyncRedis, keys: Keys, customer: Customer, ttl: int, *, fetched_at: float
) -> None:
    """Write one profile to the cache, with when the CRM answered (`fetched_at`)."""
    await client.set(keys.customer(customer.customer_id), cache_doc(customer, fetched_at), ex=ttl)


async def sync_customers(
    http: aiohttp.ClientSession,
    client: AsyncRedis,
    keys: Keys,
    *,
    base_url: str,
    ttl: int,
    clock: Callable[[], float] = time.time,
) -> int:
    """Warm the cache from the CRM's list, a page per Redis pipeline; returns how many."""
    count = 0
    pipe = client.pipeline(transaction=False)
    async for customer in list_customers(http, base_url):
        # Each page's time: a list paged through for minutes must not look fresher than it is.
        pipe.set(keys.customer(customer.customer_id), cache_doc(customer, clock()), ex=ttl)
        count += 1
        if count % PAGE_SIZE == 0:
            await pipe.execute()
    await pipe.execute()
    return count


async def _get(http: aiohttp.ClientSession, url: str | yarl.URL) -> Any:  # noqa: ANN401
    try:
        async with http.get(url) as resp:
            if resp.status == 404:
                return None
            if resp.status != 200:
                raise CrmUnavailableError(f"HTTP {resp.status} from {url}")
            return orjson.loads(await resp.read())
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
        raise CrmUnavailableError(repr(exc)) from exc
