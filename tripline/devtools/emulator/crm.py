"""The CRM: customers by id (demo ones, synthetic CUST-<n>, and those a test puts), paged lists."""

from __future__ import annotations

import asyncio

from aiohttp import web

from tripline.devtools.emulator.customers import check_contacts, synthetic_customer
from tripline.devtools.emulator.state import EMULATOR, _error, _json_body


async def crm_customer(request: web.Request) -> web.Response:
    """GET /api/v1/customers/{id}: the CRM."""
    emulator = request.app[EMULATOR]
    if emulator.settings.crm_latency_ms:
        await asyncio.sleep(emulator.settings.crm_latency_ms / 1000)
    if emulator.settings.crm_down:
        return _error(503, "CRM unavailable", "service.unavailable")
    cid = request.match_info["id"]
    customer = emulator.customers.get(cid) or synthetic_customer(cid)
    if customer is None:
        return _error(404, f"customer {cid} not found", "not.found")
    return web.json_response(customer)


async def crm_list(request: web.Request) -> web.Response:
    """GET /api/v1/customers?page=N&pageSize=M: the paginated list the cache is warmed from."""
    emulator = request.app[EMULATOR]
    if emulator.settings.crm_latency_ms:
        await asyncio.sleep(emulator.settings.crm_latency_ms / 1000)
    if emulator.settings.crm_down:
        return _error(503, "CRM unavailable", "service.unavailable")
    try:
        page = int(request.query.get("page", "1"))
        size = int(request.query.get("pageSize", "100"))
    except ValueError:
        return _error(400, "page and pageSize must be integers", "bad.request")
    if page < 1 or not 1 <= size <= 1000:
        return _error(400, "page >= 1 and 1 <= pageSize <= 1000", "bad.request")
    ids = list(emulator.customers) + [
        f"CUST-{n}" for n in range(emulator.settings.synthetic_customers)
    ]
    chunk = ids[(page - 1) * size : page * size]
    items = [emulator.customers.get(c) or synthetic_customer(c) for c in chunk]
    more = page * size < len(ids)
    return web.json_response(
        {
            "items": items,
            "page": page,
            "pageSize": size,
            "total": len(ids),
            "nextPage": page + 1 if more else None,
        }
    )


async def put_customer(request: web.Request) -> web.Response:
    """PUT /_emulator/customers/{id}: add or replace a CRM customer (`contacts` is checked)."""
    body = await _json_body(request)
    if isinstance(body, web.Response) or not isinstance(body, dict):
        return _error(400, "customer must be a JSON object", "bad.request")
    if "contacts" in body and (problem := check_contacts(body["contacts"])):
        return _error(400, problem, "bad.request")
    cid = request.match_info["id"]
    request.app[EMULATOR].customers[cid] = {**body, "id": cid}
    return web.json_response(request.app[EMULATOR].customers[cid])


async def patch_customer(request: web.Request) -> web.Response:
    """PATCH /_emulator/customers/{id}: change some of a known customer's fields (404 if unknown).

    A CRM change while tripline holds a decision, e.g. `{"doNotDisturb": true}` while a call
    waits out its pending delay; demo and synthetic customers too (the change is kept).
    """
    body = await _json_body(request)
    if isinstance(body, web.Response) or not isinstance(body, dict):
        return _error(400, "the change must be a JSON object", "bad.request")
    if "contacts" in body and (problem := check_contacts(body["contacts"])):
        return _error(400, problem, "bad.request")
    emulator = request.app[EMULATOR]
    cid = request.match_info["id"]
    known = emulator.customers.get(cid) or synthetic_customer(cid)
    if known is None:
        return _error(404, f"customer {cid} not found", "not.found")
    emulator.customers[cid] = {**known, **body, "id": cid}
    return web.json_response(emulator.customers[cid])
