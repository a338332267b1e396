"""How `check-config --probe` reads each 2xx answer: a short summary, or the Problem with it.

Pure. Each reader takes a decoded JSON body of any shape (a reader meets whatever a server sends)
and says what it found — never a secret, never a phone number — or what is missing.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from tripline.adapters.backends.cxone import read_cxone_activity
from tripline.adapters.backends.genesys import read_genesys_observations
from tripline.edge.probe_answers import Problem
from tripline.pipeline.enrich import parse_customer

CAMPAIGN_COLUMNS = ("phone", "name", "sensorId", "alertType", "referenceId", "telemetryHash")
"""The columns of a campaign contact (tripline.adapters.backends.campaign.contact_for)."""


def _name(body: Any, key: str = "name") -> str:  # noqa: ANN401
    value = body.get(key) if isinstance(body, dict) else None
    return value if isinstance(value, str) else ""


def read_queue(body: Any) -> str | Problem:  # noqa: ANN401
    """GET /api/v2/routing/queues/{id}: a Queue with its name."""
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        return Problem("no Queue object (no id)")
    members = body.get("memberCount")
    extra = f", {members} members" if isinstance(members, int) else ""
    return f"queue {_name(body)!r}{extra}"


def read_observations(body: Any, now: float) -> str | Problem:  # noqa: ANN401
    """The queue observations, read as the dialer reads them."""
    seen = read_genesys_observations(body, now)
    if not seen.ok:
        return Problem(seen.detail)
    return f"occupancy {seen.occupancy:.0%}, {seen.waiting} waiting"


def read_details(body: Any) -> str | Problem:  # noqa: ANN401
    """A conversation details query (for a conversation id no org has): an object."""
    if body is None:
        return "no conversations (as expected)"
    if not isinstance(body, dict):
        return Problem("no query response object")
    rows = body.get("conversations", [])
    return f"{len(rows) if isinstance(rows, list) else 0} conversations (none expected)"


def read_contact_list(body: Any) -> str | Problem:  # noqa: ANN401
    """GET …/contactlists/{id}: the columns tripline's contacts fill, `phone` a phone column."""
    if not isinstance(body, dict) or not isinstance(body.get("columnNames"), list):
        return Problem("no ContactList object (no columnNames)")
    missing = [c for c in CAMPAIGN_COLUMNS if c not in body["columnNames"]]
    if missing:
        return Problem(f"contact list {_name(body)!r} lacks the columns {', '.join(missing)}")
    phones = body.get("phoneColumns")
    names = (
        [p.get("columnName") for p in phones if isinstance(p, dict)]
        if isinstance(phones, list)
        else []
    )
    if "phone" not in names:
        return Problem(f"contact list {_name(body)!r}: column 'phone' is not a phone column")
    return f"contact list {_name(body)!r} with tripline's columns"


def read_worktype(body: Any) -> str | Problem:  # noqa: ANN401
    """GET /api/v2/taskmanagement/worktypes/{id}: a Worktype."""
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        return Problem("no Worktype object (no id)")
    return f"worktype {_name(body)!r}"


def read_skill(body: Any) -> str | Problem:  # noqa: ANN401
    """GET …/skills/{id}: the skill (flat, or wrapped in `skills` as older versions answer)."""
    if isinstance(body, dict) and isinstance(body.get("skills"), list) and body["skills"]:
        body = body["skills"][0]
    if not isinstance(body, dict) or "skillId" not in body:
        return Problem("no skill object (no skillId)")
    if body.get("isActive") is False:
        return Problem(f"skill {_name(body, 'skillName')!r} is inactive")
    media = _name(body, "mediaTypeName")
    return f"skill {_name(body, 'skillName')!r}" + (f" ({media})" if media else "")


def read_activity(body: Any, now: float) -> str | Problem:  # noqa: ANN401
    """GET …/skills/{id}/activity, read as the dialer reads it."""
    seen = read_cxone_activity(body, now)
    if not seen.ok:
        return Problem(seen.detail)
    return f"occupancy {seen.occupancy:.0%}, {seen.waiting} queued"


def read_completed(body: Any) -> str | Problem:  # noqa: ANN401
    """GET …/contacts/completed: an object with completedContacts (or no content at all)."""
    if body is None:
        return "no completed contacts in the last hour"
    if not isinstance(body, dict):
        return Problem("no completed-contacts object")
    rows = body.get("completedContacts", [])
    if not isinstance(rows, list):
        return Problem("completedContacts is not a list")
    return f"completed contacts readable ({body.get('totalRecords', len(rows))} in the last hour)"


def read_account(body: Any) -> str | Problem:  # noqa: ANN401
    """GET /2010-04-01/Accounts/{sid}.json: an active account (its auth_token never shown)."""
    if not isinstance(body, dict) or not isinstance(body.get("sid"), str):
        return Problem("no Account resource (no sid)")
    status, kind = _name(body, "status"), _name(body, "type")
    name = _name(body, "friendly_name")
    if status != "active":
        return Problem(f"account {name!r} is {status or 'of unknown status'}, not active")
    return f"account {name!r}, active" + (f", {kind}" if kind else "")


def read_customer_page(body: Any) -> str | Problem:  # noqa: ANN401
    """GET /api/v1/customers?page=1&pageSize=1: {items: [...], total?, nextPage?}."""
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        return Problem("no customer list (no items array)")
    total = body.get("total")
    return f"customer list readable ({total if isinstance(total, int) else 'some'} customers)"


def read_customer(customer_id: str, body: Any) -> str | Problem:  # noqa: ANN401
    """GET /api/v1/customers/{id}: a document the enricher can use (no number shown)."""
    parsed = parse_customer(customer_id, body)
    if isinstance(parsed, str):
        return Problem(f"an unusable customer document: {parsed}")
    phones = (1 if parsed.phone else 0) + sum(1 for c in parsed.contacts if c.phone)
    return (
        f"customer {customer_id!r}: {phones} number(s) to call, "
        f"time zone {parsed.timezone or 'none'}"
    )


def genesys_token(body: Any) -> tuple[str, str] | Problem:  # noqa: ANN401
    """POST /oauth/token (client credentials): the access token, and a summary without it."""
    token = body.get("access_token") if isinstance(body, dict) else None
    expires = body.get("expires_in") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        return Problem("no access_token in the token response")
    if not isinstance(expires, int) or isinstance(expires, bool):
        return Problem("no expires_in (seconds) in the token response")
    return token, f"token valid for {expires} s"


def discovered(body: Any, name: str) -> str | Problem:  # noqa: ANN401
    """A URL field of a CXone discovery document (`token_endpoint`, `api_endpoint`)."""
    value = body.get(name) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        return Problem(f"no {name} URL in the discovery document")
    return value.rstrip("/")


def cxone_token(body: Any) -> tuple[str, str] | Problem:  # noqa: ANN401
    """The password grant's answer: the access token and the tenant its id_token names."""
    access = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(access, str) or not access:
        return Problem("no access_token in the token response")
    if not isinstance(body.get("expires_in"), int):
        return Problem("no expires_in (seconds) in the token response")
    tenant = _tenant(body.get("id_token"))
    if not tenant:
        return Problem("no id_token naming a tenantId in the token response")
    return access, tenant


def _tenant(id_token: object) -> str:
    """The tenantId claim of an id_token (read, not verified: it only says where to ask)."""
    if not isinstance(id_token, str) or id_token.count(".") != 2:
        return ""
    payload = id_token.split(".")[1]
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return ""
    tenant = claims.get("tenantId") if isinstance(claims, dict) else None
    return tenant if isinstance(tenant, str) else ""
