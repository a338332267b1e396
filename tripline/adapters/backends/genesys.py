"""Genesys Cloud: OAuth client credentials, queue-routed callbacks and Task Management workitems."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from tripline.adapters.backends import (
    HttpSession,
    Reply,
    Result,
    oversized,
    request,
    shown,
    unavailable,
)
from tripline.adapters.backends.outcomes import genesys_conversation, genesys_query_body
from tripline.adapters.store import iso
from tripline.conf.schema import DialerConfig, GenesysConfig
from tripline.messages import DialIntent, Outcome, TaskIntent
from tripline.pipeline.dial import Answer, classify
from tripline.pipeline.govern import Occupancy
from tripline.pipeline.reach import Evidence

_TOKEN_MARGIN = 60.0  # renew a minute early: a token expiring in flight costs a 401 round trip
_NAME_MAX, _DESCRIPTION_MAX = 256, 512  # WorkitemCreate limits


class GenesysBackend(HttpSession):
    """Our own small client: explicit timeouts, and no POST re-sent after an ambiguous failure."""

    schedules = True
    """A callback can be scheduled for later (callbackScheduledTime)."""

    def __init__(
        self,
        *,
        conf: GenesysConfig,
        dialer: DialerConfig,
        clock: Callable[[], float] = time.time,
        extra_request: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Create the session lazily, on the loop that uses it.

        `extra_request` is awaited before every request the dialer did not budget for (token
        fetches, a resend after a 401, occupancy polls): it takes one from the rate budget.
        """
        self._conf, self._clock = conf, clock
        self._extra = extra_request
        super().__init__(
            request_timeout=dialer.request_timeout_seconds,
            connect_timeout=dialer.connect_timeout_seconds,
        )
        self._token = ""
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()
        self._fetches = 0

    async def dial(self, intent: DialIntent, routing_priority: int) -> Result:
        """POST /api/v2/conversations/callbacks: a queue-routed call with the reference triple."""
        alert = intent.alert
        data = {
            "sensorId": alert.sensor_id,
            "alertType": alert.alert_type,
            "referenceId": alert.reference_id,
            "telemetryHash": alert.telemetry_hash,
        }
        body: dict[str, Any] = {
            "routingData": {"queueId": self._conf.queue_id, "priority": routing_priority},
            "callbackNumbers": [intent.customer.phone],
            "callbackUserName": intent.customer.name[:_NAME_MAX],
            "data": data,
        }
        if self._conf.script_id:
            body["scriptId"] = self._conf.script_id
        if intent.scheduled_for:  # worked when the customer's calling window opens
            body["callbackScheduledTime"] = iso(intent.scheduled_for)
        if self._conf.caller_id:
            body["callerId"] = self._conf.caller_id
        if self._conf.caller_id_name:
            body["callerIdName"] = self._conf.caller_id_name
        problem = oversized(data)
        if problem:  # the guide's trap: never let the platform truncate or refuse it for us
            return Result(Answer.FAILED, detail=problem)
        reply = await self._post("/api/v2/conversations/callbacks", body)
        if isinstance(reply, Result):
            return reply
        conversation = reply.body.get("conversation") if isinstance(reply.body, dict) else None
        call_id = conversation.get("id") if isinstance(conversation, dict) else None
        if not isinstance(call_id, str) or not call_id:
            # The callback exists (2xx) but we cannot name it: still called, never re-sent.
            return Result(Answer.DONE, ref="unknown", detail="2xx without conversation.id")
        return Result(Answer.DONE, ref=call_id)

    async def create_task(self, task: TaskIntent) -> Result:
        """POST /api/v2/taskmanagement/workitems within WorkitemCreate's field rules."""
        alert = task.alert
        title, opening = task_words(task)
        name = f"{title}: {alert.alert_type} on {alert.sensor_id}"[:_NAME_MAX]
        description = (
            f"{opening} {task.detail} "
            f"Alert {alert.idempotency_key}, reference {alert.reference_id}, "
            f"value {alert.current_value:g} {alert.unit} "
            f"(threshold {alert.threshold:g})."
        )[:_DESCRIPTION_MAX]
        body = {
            "name": name,
            "typeId": self._conf.workitem_type_id,
            "description": description,
            "dateDue": iso(task.due),
            "externalTag": alert.idempotency_key[:_NAME_MAX],
        }
        if self._conf.workbin_id:
            body["workbinId"] = self._conf.workbin_id
        reply = await self._post("/api/v2/taskmanagement/workitems", body)
        if isinstance(reply, Result):
            return reply
        ref = reply.body.get("id") if isinstance(reply.body, dict) else None
        return Result(Answer.DONE, ref=ref if isinstance(ref, str) else "unknown")

    async def occupancy(self, now: float) -> Occupancy:
        """Poll POST /api/v2/analytics/queues/observations/query for the configured queue."""
        await self._budget_extra()
        body = {
            "filter": {
                "type": "or",
                "predicates": [
                    {"dimension": "queueId", "operator": "matches", "value": self._conf.queue_id}
                ],
            },
            "metrics": ["oOnQueueUsers", "oWaiting", "oInteracting"],
        }
        reply = await self._post("/api/v2/analytics/queues/observations/query", body)
        if isinstance(reply, Result):
            return Occupancy(1.0, 0, now, ok=False, detail=reply.detail)
        return read_genesys_observations(reply.body, now)

    async def post_contacts(
        self, contacts: list[dict[str, Any]], *, urgent: bool
    ) -> Reply | Result:
        """POST /api/v2/outbound/contactlists/{id}/contacts?priority=…: append to the campaign."""
        path = (
            f"/api/v2/outbound/contactlists/{quote(self._conf.contact_list_id, safe='')}/contacts"
            f"?priority={'true' if urgent else 'false'}"
        )
        return await self._post(path, contacts)

    async def results(self, calls: list[tuple[str, float]]) -> dict[str, Evidence]:
        """The callbacks' results: one analytics details query for up to 100 conversations.

        Raises:
            ResultsUnavailableError: the query was not answered (asked again next poll).
        """
        if not calls:
            return {}
        await self._budget_extra()
        ids = [call_id for call_id, _ in calls]
        body = genesys_query_body(ids, min(at for _, at in calls), self._clock())
        reply = await self._send("POST", "/api/v2/analytics/conversations/details/query", body)
        if isinstance(reply, Result):
            raise unavailable("conversation details", reply)
        wanted, found = set(ids), {}
        rows = reply.body.get("conversations") if isinstance(reply.body, dict) else None
        for conversation in rows if isinstance(rows, list) else []:
            cid = conversation.get("conversationId") if isinstance(conversation, dict) else None
            if isinstance(cid, str) and cid in wanted:
                evidence = genesys_conversation(conversation)
                if evidence is not None:
                    found[cid] = evidence
        return found

    async def cancel(self, call_id: str) -> bool:
        """Disconnect a callback still waiting for an agent; never one an agent has taken.

        GET /api/v2/conversations/callbacks/{id} first (its live state): with an agent on it
        (alerting, dialing, talking) it is left alone — a resolve must not cut off an agent
        who is talking to the customer. Then PATCH … {state: disconnected}.
        """
        path = f"/api/v2/conversations/callbacks/{quote(call_id, safe='')}"
        await self._budget_extra()
        live = await self._send("GET", path, None)
        if not isinstance(live, Reply) or not waiting_for_an_agent(live.body):
            return False
        await self._budget_extra()
        reply = await self._send("PATCH", path, {"state": "disconnected"})
        return isinstance(reply, Reply)

    async def bulk_contacts(self, contact_ids: list[str]) -> Reply | Result:
        """POST /api/v2/outbound/contactlists/{id}/contacts/bulk: contacts with callRecords."""
        path = (
            f"/api/v2/outbound/contactlists/{quote(self._conf.contact_list_id, safe='')}"
            "/contacts/bulk"
        )
        return await self._send("POST", path, contact_ids)

    async def uncallable_contact(self, contact_id: str) -> bool:
        """PUT …/contacts/{id} {callable: false}: the campaign will not dial it."""
        lst = quote(self._conf.contact_list_id, safe="")
        path = f"/api/v2/outbound/contactlists/{lst}/contacts/{quote(contact_id, safe='')}"
        reply = await self._send("PUT", path, {"id": contact_id, "callable": False})
        return isinstance(reply, Reply)

    async def _budget_extra(self) -> None:
        if self._extra is not None:
            await self._extra()

    async def _post(self, path: str, body: Any) -> Reply | Result:  # noqa: ANN401
        """POST with a valid token (see _send)."""
        return await self._send("POST", path, body)

    async def _send(self, method: str, path: str, body: Any) -> Reply | Result:  # noqa: ANN401
        """Send with a valid token.

        The caller budgeted one request; a token fetch uses it, and the request itself then
        takes another, so what leaves never outruns the budget.
        """
        fetches = self._fetches
        token = await self._get_token()
        if isinstance(token, Result):
            return token
        for attempt in range(2):
            if self._fetches != fetches:
                fetches = self._fetches
                await self._budget_extra()
            reply = await request(
                self._http(),
                method,
                self._conf.base_url + path,
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
            if isinstance(reply, Result):
                return reply
            if reply.status == 401 and attempt == 0:
                # 401 means the request was refused before it acted: renew the token, resend once.
                self._token_expires = 0.0
                await self._budget_extra()  # the renewal's own request
                token = await self._get_token()
                if isinstance(token, Result):
                    return token
                continue
            return reply if 200 <= reply.status < 300 else _answer(reply)
        return Result(Answer.FAILED, detail="unauthorized twice")  # pragma: no cover

    async def _get_token(self) -> str | Result:
        # One fetch at a time: concurrent calls share it instead of each asking for a token.
        async with self._token_lock:
            if self._token and self._clock() < self._token_expires:
                return self._token
            return await self._fetch_token()

    async def _fetch_token(self) -> str | Result:
        now = self._clock()
        self._fetches += 1
        basic = base64.b64encode(f"{self._conf.client_id}:{self._conf.client_secret}".encode())
        reply = await request(
            self._http(),
            "POST",
            self._conf.login_url + "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic.decode()}"},
        )
        if isinstance(reply, Result):
            # The token request failed, so the call itself was certainly never sent.
            return Result(Answer.UNSENT, detail=f"token: {reply.detail}")
        if reply.status != 200:
            result = _answer(reply)
            answer = (
                Answer.FAILED
                if result.answer == Answer.FAILED
                else (
                    Answer.RATE_LIMITED if result.answer == Answer.RATE_LIMITED else Answer.UNSENT
                )
            )
            return Result(answer, retry_after=result.retry_after, detail=f"token: {result.detail}")
        token = reply.body.get("access_token") if isinstance(reply.body, dict) else None
        expires = reply.body.get("expires_in") if isinstance(reply.body, dict) else None
        if not isinstance(token, str) or not token or not isinstance(expires, int):
            return Result(Answer.UNSENT, detail="token: response without access_token/expires_in")
        self._token = token
        self._token_expires = now + max(0.0, expires - _TOKEN_MARGIN)
        return token


def task_words(task: TaskIntent) -> tuple[str, str]:
    """A task's title and opening: no call placed, or a called customer not reached."""
    if task.outcome == Outcome.CALLED:
        return "not reached", "Called, but nobody was reached."
    return task.reason.value, f"No call placed ({task.reason.value})."


_ENDED = frozenset({"disconnected", "terminated"})


def waiting_for_an_agent(conversation: Any) -> bool:  # noqa: ANN401
    """Whether a callback conversation is live and no agent (or user) is on it yet."""
    participants = conversation.get("participants") if isinstance(conversation, dict) else None
    if not isinstance(participants, list):
        return False
    live = [
        p for p in participants if isinstance(p, dict) and str(p.get("state", "")) not in _ENDED
    ]
    return bool(live) and not any(p.get("purpose") in ("agent", "user") for p in live)


def _answer(reply: Reply) -> Result:
    answer = classify(reply.status, sent=True)
    if answer == Answer.DONE:
        return Result(answer)
    message = reply.body.get("message") if isinstance(reply.body, dict) else reply.body
    return Result(
        answer,
        retry_after=reply.headers.get("Retry-After"),
        detail=f"HTTP {reply.status}: {shown(message)}",
    )


def read_genesys_observations(body: Any, now: float) -> Occupancy:  # noqa: ANN401
    """Occupancy from POST /api/v2/analytics/queues/observations/query, all queues summed.

    occupancy = (on-queue - idle) / on-queue; waiting = oWaiting for voice.
    """
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        return Occupancy(1.0, 0, now, ok=False, detail="observations without results")
    on_queue = idle = waiting = 0
    for group in body["results"]:
        if not isinstance(group, dict) or not isinstance(group.get("data"), list):
            return Occupancy(1.0, 0, now, ok=False, detail="malformed observation group")
        for item in group["data"]:
            if not isinstance(item, dict):
                continue
            count = (
                item.get("stats", {}).get("count", 0) if isinstance(item.get("stats"), dict) else 0
            )
            if not isinstance(count, int) or count < 0:
                return Occupancy(1.0, 0, now, ok=False, detail="bad observation count")
            if item.get("metric") == "oOnQueueUsers":
                on_queue += count
                if item.get("qualifier") == "IDLE":
                    idle += count
            elif item.get("metric") == "oWaiting":
                waiting += count
    occupancy = 1.0 if on_queue == 0 else (on_queue - idle) / on_queue
    return Occupancy(occupancy, waiting, now)
