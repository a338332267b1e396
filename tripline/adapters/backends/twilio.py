"""Twilio Programmable Voice: Calls.json as the generic fallback."""

from __future__ import annotations

import base64
from urllib.parse import quote

from tripline.adapters.backends import HttpSession, Result, request
from tripline.conf.schema import DialerConfig, TwilioConfig
from tripline.messages import DialIntent, TaskIntent
from tripline.pipeline.dial import Answer, classify


class TwilioBackend(HttpSession):
    """POST /2010-04-01/Accounts/{sid}/Calls.json, form-encoded, HTTP Basic."""

    def __init__(self, *, conf: TwilioConfig, dialer: DialerConfig) -> None:
        """Create the session lazily, on the loop that uses it."""
        self._conf = conf
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
        account = quote(self._conf.account_sid, safe="")
        url = f"{self._conf.base_url}/2010-04-01/Accounts/{account}/Calls.json"
        reply = await request(self._http(), "POST", url, data=form, headers=self._auth)
        if isinstance(reply, Result):
            return reply
        if reply.status in (200, 201):
            sid = reply.body.get("sid") if isinstance(reply.body, dict) else None
            return Result(Answer.DONE, ref=sid if isinstance(sid, str) else "unknown")
        # Twilio's 429 (error 20429) is "not processed and safe to retry".
        return Result(
            classify(reply.status, sent=True),
            retry_after=reply.headers.get("Retry-After"),
            detail=f"HTTP {reply.status}: {str(reply.body)[:200]}",
        )

    async def create_task(self, task: TaskIntent) -> Result:
        """Twilio raises no tasks: configure [tasks] backend separately."""
        return Result(Answer.FAILED, detail=f"twilio backend raises no tasks ({task.reason})")
