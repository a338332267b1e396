"""`tripline emulate`: a local Genesys Cloud, NICE CXone, Twilio and CRM.

The real paths, fields, OAuth and 429s, one module per vendor; every request is recorded for
tests to read (GET /_emulator/requests).
"""

from __future__ import annotations

from aiohttp import web

from tripline.devtools.emulator.crm import crm_customer, crm_list, put_customer
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
    cxone_skill_activity,
    cxone_token,
)
from tripline.devtools.emulator.genesys import (
    ATTRIBUTE_MAX,
    CLIENT_ID,
    CLIENT_SECRET,
    TOKEN_SECONDS,
    callbacks,
    contacts,
    observations,
    token,
    workitems,
)
from tripline.devtools.emulator.state import (
    EMULATOR,
    Emulator,
    Settings,
    _record,
    delete_requests,
    get_requests,
    put_settings,
)
from tripline.devtools.emulator.twilio import TWILIO_TOKEN, twilio_calls

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
    app.add_routes(
        [
            web.post("/oauth/token", token),
            web.post("/api/v2/conversations/callbacks", callbacks),
            web.post("/api/v2/taskmanagement/workitems", workitems),
            web.post("/api/v2/outbound/contactlists/{contactListId}/contacts", contacts),
            web.post("/api/v2/analytics/queues/observations/query", observations),
            web.get("/api/v1/customers", crm_list),
            web.get("/api/v1/customers/{id:[^/]+}", crm_customer),
            web.put("/_emulator/customers/{id:[^/]+}", put_customer),
            web.get("/_emulator/requests", get_requests),
            web.delete("/_emulator/requests", delete_requests),
            web.put("/_emulator/settings", put_settings),
            web.get("/.well-known/openid-configuration", cxone_openid),
            web.post("/auth/token", cxone_token),
            web.get("/.well-known/cxone-configuration", cxone_configuration),
            web.post(
                "/incontactapi/services/{version}/scripts/{scriptId}/start", cxone_script_start
            ),
            web.get(
                "/incontactapi/services/{version}/skills/{skillId}/activity", cxone_skill_activity
            ),
            web.post("/2010-04-01/Accounts/{sid}/Calls.json", twilio_calls),
        ]
    )
    return app
