"""NICE CXone: access-key OAuth with API discovery; a Studio script places the call."""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import orjson

from tripline.adapters.backends import (
    HttpSession,
    Reply,
    Result,
    oversized,
    request,
    shown,
    studio,
    unavailable,
)
from tripline.adapters.backends.outcomes import cxone_completed
from tripline.adapters.store import iso
from tripline.conf.schema import CxoneConfig, DialerConfig
from tripline.messages import DialIntent, TaskIntent
from tripline.pipeline.dial import Answer, classify
from tripline.pipeline.govern import Occupancy
from tripline.pipeline.reach import Evidence

_TOKEN_MARGIN = 60.0
_DISPOSITIONS_KEPT = 600.0  # the disposition catalogue changes rarely: read it every 10 min
_COMPLETED_PAGE = 1000
_COMPLETED_PAGES = 10  # at most this many pages per poll; what is past them waits for the next


class CxoneBackend(HttpSession):
    """Spawns the configured Studio script with the reference triple as its parameters."""

    def __init__(
        self,
        *,
        conf: CxoneConfig,
        dialer: DialerConfig,
        clock: Callable[[], float] = time.time,
        extra_request: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Create the session lazily, on the loop that uses it."""
        self._conf, self._clock, self._extra = conf, clock, extra_request
        super().__init__(
            request_timeout=dialer.request_timeout_seconds,
            connect_timeout=dialer.connect_timeout_seconds,
        )
        self._token, self._token_expires, self._api = "", 0.0, ""
        self._dispositions: dict[int, str] = {}
        self._dispositions_at = float("-inf")

    async def dial(self, intent: DialIntent, routing_priority: int) -> Result:  # noqa: ARG002
        """POST …/scripts/{scriptId}/start {skillId, parameters}: the script dials and queues."""
        alert = intent.alert
        values = {
            "phone": intent.customer.phone,
            "sensorId": alert.sensor_id,
            "alertType": alert.alert_type,
            "referenceId": alert.reference_id,
        }
        problem = oversized(values)
        if problem:
            return Result(Answer.FAILED, detail=problem)
        # Studio receives them as p1..p4: the number, then the reference triple; each escaped,
        # since CXone splits at every `|` and a sensorId may hold one (studio.py).
        body = {"skillId": self._conf.skill_id, "parameters": studio.join(values.values())}
        script = quote(self._conf.script_id, safe="")
        reply = await self._call("POST", f"/scripts/{script}/start", json=body)
        if isinstance(reply, Result):
            return reply
        contact = reply.body.get("contactId") if isinstance(reply.body, dict) else None
        return Result(Answer.DONE, ref=str(contact) if contact is not None else "unknown")

    async def results(self, calls: list[tuple[str, float]]) -> dict[str, Evidence]:
        """Completed contacts since the oldest call: GET …/contacts/completed?updatedSince=.

        Raises:
            ResultsUnavailableError: CXone did not answer (asked again next poll).
        """
        if not calls:
            return {}
        wanted = {call_id for call_id, _ in calls}
        await self._load_dispositions()
        if self._extra is not None:
            await self._extra()
        since = iso(min(at for _, at in calls) - 60)
        found: dict[str, Evidence] = {}
        for page in range(_COMPLETED_PAGES):  # a busy tenant completes more than one page
            if page and self._extra is not None:
                await self._extra()
            params = {"updatedSince": since, "top": _COMPLETED_PAGE, "skip": page * _COMPLETED_PAGE}
            reply = await self._call("GET", "/contacts/completed", params=params)
            if isinstance(reply, Result):
                raise unavailable("completed contacts", reply)
            rows = reply.body.get("completedContacts") if isinstance(reply.body, dict) else None
            rows = rows if isinstance(rows, list) else []
            for contact in rows:
                cid = str(contact.get("contactId")) if isinstance(contact, dict) else ""
                if cid in wanted:
                    evidence = cxone_completed(contact, self._dispositions)
                    if evidence is not None:
                        found[cid] = evidence
            if len(rows) < _COMPLETED_PAGE or len(found) == len(wanted):
                break
        return found

    async def cancel(self, call_id: str) -> bool:  # noqa: ARG002
        """Never: POST …/contacts/{id}/end would end the contact in any state.

        It would cut off an agent talking to the customer, and the contact's live state is
        not read here; the ladder stops after the call instead (call-outcomes.md §3c).
        """
        return False

    async def _load_dispositions(self) -> None:
        """GET …/dispositions: names for the ids a completed contact carries (its wrap-up)."""
        if self._clock() - self._dispositions_at < _DISPOSITIONS_KEPT:
            return
        if self._extra is not None:
            await self._extra()
        reply = await self._call("GET", "/dispositions")
        rows = reply.body.get("dispositions") if isinstance(reply, Reply) else None
        if isinstance(reply, Reply) and isinstance(reply.body, dict) and isinstance(rows, list):
            self._dispositions = {
                row["dispositionId"]: str(row.get("dispositionName", ""))
                for row in rows
                if isinstance(row, dict) and isinstance(row.get("dispositionId"), int)
            }
            self._dispositions_at = self._clock()

    async def create_task(self, task: TaskIntent) -> Result:
        """CXone has no task API in this integration: configure [tasks] backend separately."""
        return Result(Answer.FAILED, detail=f"cxone backend raises no tasks ({task.reason})")

    async def occupancy(self, now: float) -> Occupancy:
        """GET …/skills/{skillId}/activity."""
        if self._extra is not None:
            await self._extra()
        reply = await self._call("GET", f"/skills/{quote(self._conf.skill_id, safe='')}/activity")
        if isinstance(reply, Result):
            return Occupancy(1.0, 0, now, ok=False, detail=reply.detail)
        return read_cxone_activity(reply.body, now)

    async def _call(self, method: str, path: str, **kwargs: Any) -> Reply | Result:  # noqa: ANN401
        ready = await self._authenticate()
        if isinstance(ready, Result):
            return ready
        version = quote(self._conf.api_version, safe="")
        url = f"{self._api}/incontactapi/services/{version}{path}"
        reply = await request(
            self._http(), method, url, headers={"Authorization": f"Bearer {self._token}"}, **kwargs
        )
        if isinstance(reply, Result) or 200 <= reply.status < 300:
            return reply
        if reply.status == 401:
            self._token_expires = 0.0
        answer = classify(reply.status, sent=True)
        return Result(
            answer,
            retry_after=reply.headers.get("Retry-After"),
            detail=f"HTTP {reply.status}: {shown(reply.body)}",
        )

    async def _authenticate(self) -> Result | None:
        """Discovery → password grant with the access key → tenant's API endpoint."""
        if self._token and self._clock() < self._token_expires:
            return None
        if self._extra is not None:
            await self._extra()
        base = self._conf.discovery_url
        oidc = await request(self._http(), "GET", f"{base}/.well-known/openid-configuration")
        endpoint = _field(oidc, "token_endpoint")
        if endpoint is None:
            return Result(Answer.UNSENT, detail="cxone discovery: no token_endpoint")
        form = {
            "grant_type": "password",
            "username": self._conf.access_key_id,
            "password": self._conf.access_key_secret,
            "client_id": self._conf.client_id,
            "client_secret": self._conf.client_secret,
        }
        token = await request(self._http(), "POST", endpoint, data=form)
        if isinstance(token, Result) or token.status != 200 or not isinstance(token.body, dict):
            failed = isinstance(token, Reply) and 400 <= token.status < 500 and token.status != 429
            return Result(Answer.FAILED if failed else Answer.UNSENT, detail="cxone token refused")
        access, expires = token.body.get("access_token"), token.body.get("expires_in")
        tenant = _tenant(token.body.get("id_token"))
        if not isinstance(access, str) or not isinstance(expires, int) or not tenant:
            return Result(Answer.UNSENT, detail="cxone token without access_token/tenant")
        config = await request(
            self._http(),
            "GET",
            f"{base}/.well-known/cxone-configuration",
            params={"tenantId": tenant},  # from the id_token: encoded as one value
        )
        api = _field(config, "api_endpoint")
        if api is None:
            return Result(Answer.UNSENT, detail="cxone discovery: no api_endpoint")
        self._token, self._api = access, api.rstrip("/")
        self._token_expires = self._clock() + max(0.0, expires - _TOKEN_MARGIN)
        return None


def _field(answer: Reply | Result, name: str) -> str | None:
    """A string field of a discovery document, or None.

    None for no reply, an error status, a body that is not an object, or no such string field:
    an error page that happens to parse is not a document to follow.
    """
    if not isinstance(answer, Reply) or not 200 <= answer.status < 300:
        return None
    if not isinstance(answer.body, dict):
        return None
    value = answer.body.get(name)
    return value if isinstance(value, str) else None


def _tenant(id_token: object) -> str:
    """The tenantId claim of the id_token (read, not verified: we only route by it)."""
    if not isinstance(id_token, str) or id_token.count(".") != 2:
        return ""
    payload = id_token.split(".")[1]
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return ""
    tenant = claims.get("tenantId") if isinstance(claims, dict) else None
    return tenant if isinstance(tenant, str) else ""


def read_cxone_activity(body: Any, now: float) -> Occupancy:  # noqa: ANN401
    """Occupancy from GET /skills/{id}/activity: (logged in - available) / logged in."""
    rows = body.get("skillActivity") if isinstance(body, dict) else None
    if not isinstance(rows, list) or not rows or not isinstance(rows[0], dict):
        return Occupancy(1.0, 0, now, ok=False, detail="skill activity without rows")
    row = rows[0]
    logged_in, available, queued = (
        row.get("agentsLoggedIn"),
        row.get("agentsAvailable"),
        row.get("queueCount"),
    )
    if not all(isinstance(v, int) and v >= 0 for v in (logged_in, available, queued)):
        return Occupancy(1.0, 0, now, ok=False, detail="bad skill activity counts")
    assert isinstance(logged_in, int)  # noqa: S101 - checked just above
    assert isinstance(available, int)  # noqa: S101
    assert isinstance(queued, int)  # noqa: S101
    occupancy = 1.0 if logged_in == 0 else (logged_in - min(available, logged_in)) / logged_in
    return Occupancy(occupancy, queued, now)
