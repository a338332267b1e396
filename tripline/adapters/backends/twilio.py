"""Twilio Programmable Voice: Calls.json as the generic fallback."""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlencode

from tripline.adapters.backends import HttpSession, Reply, Result, request, shown
from tripline.adapters.backends.outcomes import twilio_status
from tripline.conf.schema import DialerConfig, OutcomesConfig, TwilioConfig
from tripline.messages import DialIntent, TaskIntent
from tripline.pipeline.dial import Answer, classify
from tripline.pipeline.reach import Evidence

RECONCILE_AFTER = 300.0
"""Seconds after which a call without a pushed result is read from the Call resource."""


class TwilioBackend(HttpSession):
    """POST /2010-04-01/Accounts/{sid}/Calls.json, form-encoded, HTTP Basic."""

    def __init__(
        self,
        *,
        conf: TwilioConfig,
        dialer: DialerConfig,
        outcomes: OutcomesConfig | None = None,
        instance: str = "",
        clock: Callable[[], float] = time.time,
        extra_request: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Create the session lazily, on the loop that uses it.

        `extra_request` takes one request from the rate budget for each the dialer did not
        budget (the results' reconciliation reads).
        """
        self._conf, self._outcomes, self._instance = conf, outcomes or OutcomesConfig(), instance
        self._clock, self._extra = clock, extra_request
        super().__init__(
            request_timeout=dialer.request_timeout_seconds,
            connect_timeout=dialer.connect_timeout_seconds,
        )
        basic = base64.b64encode(f"{conf.account_sid}:{conf.auth_token}".encode()).decode()
        self._auth = {"Authorization": f"Basic {basic}"}

    async def dial(self, intent: DialIntent, routing_priority: int) -> Result:  # noqa: ARG002
        """Place the call; the TwiML URL carries the referenceId for the agent's screen."""
        twiml = self._conf.twiml_url
        reference = quote(intent.alert.reference_id, safe="")
        form = {
            "To": intent.customer.phone,
            "From": self._conf.from_number,
            "Url": f"{twiml}{'&' if '?' in twiml else '?'}referenceId={reference}",
        }
        status_url = self._outcomes.twilio_status_url
        if status_url:
            # Which alert, attempt and instance the callback is about travel in the URL Twilio
            # signs, so the status endpoint can trust them.
            query = urlencode({"key": intent.intent_id, "n": intent.attempt, "i": self._instance})
            form["StatusCallback"] = f"{status_url}{'&' if '?' in status_url else '?'}{query}"
            form["StatusCallbackMethod"] = "POST"
        if self._outcomes.twilio_machine_detection:
            form["MachineDetection"] = self._outcomes.twilio_machine_detection
        reply = await request(
            self._http(), "POST", self._calls_url(), data=form, headers=self._auth
        )
        if isinstance(reply, Result):
            return reply
        if reply.status in (200, 201):
            sid = reply.body.get("sid") if isinstance(reply.body, dict) else None
            return Result(Answer.DONE, ref=sid if isinstance(sid, str) else "unknown")
        # Twilio's 429 (error 20429) is "not processed and safe to retry".
        return Result(
            classify(reply.status, sent=True),
            retry_after=reply.headers.get("Retry-After"),
            detail=f"HTTP {reply.status}: {shown(reply.body)}",
        )

    def _calls_url(self, sid: str = "") -> str:
        account = quote(self._conf.account_sid, safe="")
        call = f"/{quote(sid, safe='')}" if sid else ""
        return f"{self._conf.base_url}/2010-04-01/Accounts/{account}/Calls{call}.json"

    async def results(self, calls: list[tuple[str, float]]) -> dict[str, Evidence]:
        """GET …/Calls/{sid}.json per call: the reconciliation of missed status callbacks.

        With status callbacks configured, only calls older than RECONCILE_AFTER are read: the
        callback normally came long before, and each read is a request of the rate budget.
        """
        found: dict[str, Evidence] = {}
        pushed = bool(self._outcomes.twilio_status_url)
        now = self._clock()
        for sid, placed in calls:
            if pushed and now - placed < RECONCILE_AFTER:
                continue
            if self._extra is not None:
                await self._extra()
            reply = await request(self._http(), "GET", self._calls_url(sid), headers=self._auth)
            if isinstance(reply, Reply) and reply.status == 200 and isinstance(reply.body, dict):
                fields = {k: str(v) for k, v in reply.body.items() if isinstance(v, str | int)}
                evidence = twilio_status(fields, snake_case=True)
                if evidence is not None:
                    found[sid] = evidence
        return found

    async def cancel(self, call_id: str) -> bool:
        """Status=canceled: only a call still queued or ringing can be cancelled."""
        reply = await request(
            self._http(),
            "POST",
            self._calls_url(call_id),
            data={"Status": "canceled"},
            headers=self._auth,
        )
        # Twilio answers with the call: only a call that was still queued or ringing is
        # 'canceled'; one already answered goes on (and is not recorded as cancelled).
        status = (
            reply.body.get("status")
            if isinstance(reply, Reply) and isinstance(reply.body, dict)
            else None
        )
        return isinstance(reply, Reply) and reply.status == 200 and status == "canceled"

    async def create_task(self, task: TaskIntent) -> Result:
        """Twilio raises no tasks: configure [tasks] backend separately."""
        return Result(Answer.FAILED, detail=f"twilio backend raises no tasks ({task.reason})")
