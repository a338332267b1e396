"""`tripline emulate`: a local Genesys Cloud, NICE CXone, Twilio and CRM.

The real paths, fields, OAuth and 429s, one module per vendor; every request is recorded for
tests to read (GET /_emulator/requests).

Placed calls play outcomes: each takes the next item of the `call_results` setting (answered
when none is left) and shows it `call_result_delay_seconds` later, where each vendor reports
results — the Genesys details query, callback state and campaign contacts' callRecords, CXone
completed contacts, Twilio's Call resource and signed status callbacks (GET /_emulator/calls
lists them all). Cancelling before the result (PATCH the callback, end the contact, Status=
canceled) shows as cancelled instead.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from tripline.devtools.emulator.crm import crm_customer, crm_list, patch_customer, put_customer
from tripline.devtools.emulator.customers import demo_customers, synthetic_customer
from tripline.devtools.emulator.cxone import (
    CXONE_APP,
    CXONE_APP_SECRET,
    CXONE_KEY,
    CXONE_KEY_SECRET,
    CXONE_TENANT,
    cxone_configuration,
    cxone_openid,
    cxone_script_start,
    cxone_skill,
    cxone_skill_activity,
    cxone_token,
)
from tripline.devtools.emulator.cxone_outcomes import (
    completed_contacts,
    dispositions,
    end_contact,
)
from tripline.devtools.emulator.genesys import (
    ATTRIBUTE_MAX,
    CLIENT_ID,
    CLIENT_SECRET,
    TOKEN_SECONDS,
    callbacks,
    contacts,
    get_contact_list,
    get_queue,
    get_worktype,
    observations,
    token,
    workitems,
)
from tripline.devtools.emulator.genesys_outcomes import (
    contacts_bulk,
    details_query,
    get_callback,
    patch_callback,
    put_contact,
)
from tripline.devtools.emulator.state import (
    EMULATOR,
    Emulator,
    Settings,
    _record,
    delete_requests,
    get_calls,
    get_requests,
    put_settings,
)
from tripline.devtools.emulator.twilio import (
    TWILIO_TOKEN,
    twilio_account,
    twilio_call,
    twilio_calls,
    twilio_update_call,
)

__all__ = [
    "ATTRIBUTE_MAX",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "CXONE_APP",
    "CXONE_APP_SECRET",
    "CXONE_KEY",
    "CXONE_KEY_SECRET",
    "CXONE_TENANT",
    "EMULATOR",
    "TOKEN_SECONDS",
    "TWILIO_TOKEN",
    "Emulator",
    "Settings",
    "build_app",
    "demo_customers",
    "synthetic_customer",
]


def build_app(emulator: Emulator | None = None) -> web.Application:
    """The emulator's aiohttp application."""
    app = web.Application(middlewares=[_record])
    app[EMULATOR] = emulator or Emulator()
    app.on_cleanup.append(_stop_tasks)
    v = "/incontactapi/services/{version}"
    twilio_call_path = "/2010-04-01/Accounts/{sid}/Calls/{CallSid}.json"
    app.add_routes(
        [
            web.post("/oauth/token", token),
            web.post("/api/v2/conversations/callbacks", callbacks),
            web.get("/api/v2/conversations/callbacks/{conversationId}", get_callback),
            web.patch("/api/v2/conversations/callbacks/{conversationId}", patch_callback),
            web.post("/api/v2/taskmanagement/workitems", workitems),
            web.post("/api/v2/outbound/contactlists/{contactListId}/contacts", contacts),
            web.post("/api/v2/outbound/contactlists/{contactListId}/contacts/bulk", contacts_bulk),
            web.put(
                "/api/v2/outbound/contactlists/{contactListId}/contacts/{contactId}", put_contact
            ),
            web.post("/api/v2/analytics/queues/observations/query", observations),
            web.get("/api/v2/routing/queues/{queueId}", get_queue),
            web.get("/api/v2/taskmanagement/worktypes/{worktypeId}", get_worktype),
            web.get("/api/v2/outbound/contactlists/{contactListId}", get_contact_list),
            web.post("/api/v2/analytics/conversations/details/query", details_query),
            web.get("/api/v1/customers", crm_list),
            web.get("/api/v1/customers/{id:[^/]+}", crm_customer),
            web.put("/_emulator/customers/{id:[^/]+}", put_customer),
            web.patch("/_emulator/customers/{id:[^/]+}", patch_customer),
            web.get("/_emulator/requests", get_requests),
            web.delete("/_emulator/requests", delete_requests),
            web.put("/_emulator/settings", put_settings),
            web.get("/_emulator/calls", get_calls),
            web.get("/.well-known/openid-configuration", cxone_openid),
            web.post("/auth/token", cxone_token),
            web.get("/.well-known/cxone-configuration", cxone_configuration),
            web.post(
                "/incontactapi/services/{version}/scripts/{scriptId}/start", cxone_script_start
            ),
            web.get(f"{v}/skills/{{skillId}}", cxone_skill),
            web.get(
                "/incontactapi/services/{version}/skills/{skillId}/activity", cxone_skill_activity
            ),
            web.get(f"{v}/contacts/completed", completed_contacts),
            web.post(f"{v}/contacts/{{contactId}}/end", end_contact),
            web.get(f"{v}/dispositions", dispositions),
            web.get("/2010-04-01/Accounts/{sid}.json", twilio_account),
            web.post("/2010-04-01/Accounts/{sid}/Calls.json", twilio_calls),
            web.get(twilio_call_path, twilio_call),
            web.post(twilio_call_path, twilio_update_call),
        ]
    )
    return app


async def _stop_tasks(app: web.Application) -> None:
    """Status callbacks still waiting for their call's result die with the app."""
    tasks = list(app[EMULATOR].tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
