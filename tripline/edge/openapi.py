"""The OpenAPI 3.1 document of the HTTP API, served at GET /openapi.json.

Written by hand next to the handlers it describes; the test suite fuzzes the running service
against it (schemathesis), so a handler and its description cannot drift apart unnoticed.
"""

from __future__ import annotations

from typing import Any

_PROBLEM = {
    "type": "object",
    "required": ["error", "problems"],
    "properties": {
        "error": {"type": "string", "minLength": 1},
        "problems": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "reason"],
                "properties": {
                    "field": {"type": "string"},
                    "reason": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        },
    },
}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or {"type": "object"}}},
    }


_UNAUTHORIZED = _problem("Missing or wrong credentials")
_FORBIDDEN = _problem(
    "A browser's cross-site request (Sec-Fetch-Site: cross-site, or an Origin that is neither "
    "this service nor in [http] allowed_origins)"
)
_UNAVAILABLE = _problem("Redis is unavailable; retry after Retry-After")
_TEXT = {"type": "string", "maxLength": 256}
# Days 01-28 only: every such date exists. Times with an offset are accepted too.
# Years 0001-9999 (Python's dates have no year 0; schemathesis sent 0000-01-01 on 2026-12-02).
_DATE = {
    "type": "string",
    "pattern": (
        "^([1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])-(0[1-9]|1[0-2])"
        "-(0[1-9]|1[0-9]|2[0-8])$"
    ),
}
_LEDGER_PARAMETERS: tuple[tuple[str, dict[str, Any], str], ...] = (
    ("customerId", _TEXT, "entries of this customer"),
    ("phone", _TEXT, "entries of this number (looked up by its keyed hash)"),
    ("key", _TEXT, "entries of this idempotency key"),
    ("from", _DATE, "a date (from its midnight UTC), or an ISO-8601 time with offset; inclusive"),
    ("to", _DATE, "a date (its midnight UTC), or an ISO-8601 time with offset; exclusive"),
    (
        "outcome",
        {"type": "string", "enum": ["called", "suppressed", "deferred", "rejected"]},
        "decisions with this outcome",
    ),
    (
        "kind",
        {"type": "string", "enum": ["decision", "attempt", "task", "operator"]},
        "entries of this kind",
    ),
    ("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size (default 100)"),
    # `cursor` (the previous page's nextCursor) is opaque: described in the summary, not
    # declared, since no schema tells a valid one from a forged one.
)
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
# The read token guards these only when [http] read_token is set: {} is "no credentials".
_READ: list[dict[str, list[str]]] = [{"readToken": []}, {}]

# Printable ASCII without spaces: ids travel in URLs and Redis keys.
_ID = {"type": "string", "pattern": "^[!-~]+$", "maxLength": 128}
_NUMBER = {"type": "number", "minimum": -1e15, "maximum": 1e15}

_ALERT = {
    "type": "object",
    "required": [
        "idempotencyKey",
        "sensorId",
        "customerId",
        "alertType",
        "timestamp",
        "telemetryData",
    ],
    "properties": {
        "idempotencyKey": _ID,
        "sensorId": _ID,
        "customerId": _ID,
        "alertType": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]+$", "maxLength": 64},
        "timestamp": {
            "type": "string",
            "format": "date-time",
            "description": "ISO-8601 with an explicit offset; at most 5 minutes ahead",
        },
        "status": {"type": "string", "enum": ["firing", "resolved"]},
        "severity": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]+$", "maxLength": 32},
        "telemetryData": {
            "type": "object",
            "required": ["currentValue", "threshold", "unit"],
            "properties": {
                "currentValue": _NUMBER,
                "threshold": _NUMBER,
                "unit": {"type": "string", "minLength": 1, "maxLength": 32},
            },
        },
    },
}

_ACCEPTED = {
    "type": "object",
    "required": ["idempotencyKey", "status", "links"],
    "properties": {
        "idempotencyKey": {"type": "string"},
        "status": {"type": "string", "enum": ["accepted", "duplicate"]},
        "referenceId": {"type": "string"},
        "links": {"type": "object"},
    },
}

_RESULTS = ["pending", "reached", "not_reached", "unknown"]
_NULLABLE = {"type": ["string", "null"]}

_ATTEMPT = {
    "type": "object",
    "description": 'One call of the re-attempt ladder (README "Reaching the customer")',
    "required": ["n", "at", "contact", "phone", "backend", "callId"],
    "properties": {
        "n": {"type": "integer", "minimum": 1, "description": "1 is the first call"},
        "at": {"type": "string", "description": "When it was placed (or ended unplaced)"},
        "contact": {"type": "string", "description": "Whom it was for (the contact's name)"},
        "phone": {"type": "string", "description": "The number, masked (+12*******57)"},
        "backend": {"type": "string", "description": "genesys, genesys_campaign, cxone, twilio"},
        "callId": {**_NULLABLE, "description": "null: the attempt was never placed"},
        "result": {"type": "string", "enum": _RESULTS},
        "resultReason": {
            **_NULLABLE,
            "description": "no_answer, busy, voicemail, failed, wrong_number, abandoned, "
            "canceled, timeout, do_not_call, dial_uncertain, or the wrap-up code",
        },
        "wrapupCode": {**_NULLABLE, "description": "As the contact center reported it"},
        "resultAt": {"type": "string", "description": "When tripline learned the result"},
        "detail": {"type": "string", "description": "Why an unplaced attempt ended"},
    },
}

_RECORD = {
    "type": "object",
    "required": ["idempotencyKey", "state", "history"],
    "properties": {
        "idempotencyKey": {"type": "string"},
        "sensorId": {"type": "string"},
        "customerId": {"type": "string"},
        "alertType": {"type": "string"},
        "status": {"type": "string"},
        "priority": {"type": "string"},
        "referenceId": {"type": "string"},
        "telemetryHash": {"type": "string"},
        "timestamp": {"type": "string"},
        "acceptedAt": {"type": "string"},
        "state": {"type": "string"},
        "outcome": {"type": "string", "enum": ["called", "suppressed", "deferred", "rejected"]},
        "reason": {"type": "string"},
        "callId": {"type": "string", "description": "The first call's id at the backend"},
        "taskId": {"type": "string"},
        "groupedInto": {"type": "string"},
        "detail": {"type": "string"},
        "result": {
            "type": "string",
            "enum": _RESULTS,
            "description": "A called alert's result: pending while a call is out or the next "
            "attempt waits; reached, not_reached or unknown once its ladder ended",
        },
        "resultReason": {
            "type": "string",
            "description": "Why the last call did not reach anyone (see attempts[].resultReason)",
        },
        "attempts": {"type": "array", "items": _ATTEMPT},
        "nextAttemptAt": {
            "type": "string",
            "description": "While the next attempt waits ([reach] retry_after_seconds)",
        },
        "scheduledFor": {
            "type": "string",
            "description": "A callback scheduled for the calling window's next opening "
            "([comply] blocked_action = scheduled_callback)",
        },
        "ladderEnd": {
            "type": "string",
            "description": "Why the ladder ended: reached, 'not reached in 3 attempts', "
            "'the sensor resolved', ...",
        },
        "facts": {"type": "object"},
        "history": {"type": "array", "items": {"type": "object"}},
    },
}

_TWILIO_STATUS = {
    "type": "object",
    "description": "Twilio's call-progress parameters (only CallSid, CallStatus, AnsweredBy "
    "and SequenceNumber are read; every parameter is signed)",
    "properties": {
        "CallSid": {"type": "string", "maxLength": 64},
        "AccountSid": {"type": "string", "maxLength": 64},
        "CallStatus": {
            "type": "string",
            "enum": [
                "queued",
                "initiated",
                "ringing",
                "in-progress",
                "completed",
                "busy",
                "no-answer",
                "canceled",
                "failed",
            ],
        },
        "AnsweredBy": {
            "type": "string",
            "enum": [
                "human",
                "machine_start",
                "machine_end_beep",
                "machine_end_silence",
                "machine_end_other",
                "fax",
                "unknown",
            ],
        },
        "SequenceNumber": {"type": "string", "pattern": "^[0-9]{1,18}$"},
        "CallDuration": {"type": "string", "maxLength": 16},
        "From": {"type": "string", "maxLength": 32},
        "To": {"type": "string", "maxLength": 32},
    },
}


_TIME = {"type": "string", "format": "date-time", "maxLength": 40}
_MAINTENANCE_REQUEST = {
    "type": "object",
    "description": "sensorId and/or customerId; exactly one of endsAt, durationSeconds",
    "required": ["comment", "createdBy"],
    "properties": {
        "sensorId": _ID,
        "customerId": _ID,
        "alertType": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]+$", "maxLength": 64},
        "startsAt": _TIME,
        "endsAt": _TIME,
        "durationSeconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 2592000},
        "comment": {"type": "string", "minLength": 1, "maxLength": 500},
        "createdBy": {"type": "string", "minLength": 1, "maxLength": 128},
    },
    "additionalProperties": False,
}
_MAINTENANCE_WINDOW = {
    "type": "object",
    "required": ["id", "startsAt", "endsAt", "comment", "createdBy", "createdAt", "state"],
    "properties": {
        "id": {"type": "string"},
        "sensorId": {"type": ["string", "null"]},
        "customerId": {"type": ["string", "null"]},
        "alertType": {"type": ["string", "null"]},
        "startsAt": _TIME,
        "endsAt": _TIME,
        "comment": {"type": "string"},
        "createdBy": {"type": "string"},
        "createdAt": _TIME,
        "state": {"type": "string", "enum": ["pending", "active", "ended"]},
    },
}


def document() -> dict[str, Any]:
    """The OpenAPI document."""
    key = {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}
    ref = {"name": "ref", "in": "path", "required": True, "schema": {"type": "string"}}
    number = {
        "name": "number",
        "in": "path",
        "required": True,
        "description": "E.164; validity is decided by libphonenumber",
        "schema": {"type": "string", "pattern": "^\\+?[0-9 ()-]{7,20}$"},
    }
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "tripline",
            "version": "1",
            "description": "IoT threshold alerts to safe proactive calls. Every 4xx carries a "
            "problem document: an `error` code and one entry per `problems` item.",
        },
        "components": {
            "schemas": {"Problem": _PROBLEM, "Alert": _ALERT},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "readToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "[http] read_token (TRIPLINE__HTTP__READ_TOKEN); while it "
                    "is unset, the endpoints it guards are open",
                },
            },
        },
        "paths": {
            "/v1/alerts": {
                "post": {
                    "summary": "Accept an alert (the webhook door)",
                    "description": "Bearer token, or an HMAC-SHA256 signature in "
                    "X-Tripline-Signature over X-Tripline-Timestamp + '.' + body, when "
                    "configured. The body is JSON: Content-Type application/json (UTF-8).",
                    "parameters": [
                        {
                            "name": "X-Tripline-Timestamp",
                            "in": "header",
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "X-Tripline-Signature",
                            "in": "header",
                            "schema": {"type": "string"},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Alert"}}
                        },
                    },
                    "responses": {
                        "202": _json("Accepted: the record is the idempotency claim", _ACCEPTED),
                        "200": _json("Duplicate of an accepted alert", _ACCEPTED),
                        "400": _problem("Not a valid alert: one problem per field"),
                        "401": _UNAUTHORIZED,
                        "409": _problem(
                            "The idempotencyKey was recorded for another alert (another sensor,"
                            " customer, type, status or telemetry); the record is untouched"
                        ),
                        "408": _problem("The body did not arrive in time"),
                        "413": _problem("Body larger than [http] max_body_bytes"),
                        "415": _problem("Content-Type is not application/json (UTF-8)"),
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/v1/alerts/{key}": {
                "get": {
                    "summary": "An alert's record: outcome, reason, history; a called alert's "
                    "result and attempts",
                    "security": _READ,
                    "parameters": [key],
                    "responses": {
                        "200": _json("The record", _RECORD),
                        "401": _UNAUTHORIZED,
                        "404": _problem("No record for this key"),
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/v1/context/{ref}": {
                "get": {
                    "summary": "The stored alert for the agent (JSON, or HTML for an iframe)",
                    "security": _BEARER,
                    "parameters": [
                        ref,
                        {"name": "token", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {
                            "description": "The alert, its telemetry and the grouped alerts",
                            "content": {
                                "application/json": {"schema": {"type": "object"}},
                                "text/html": {"schema": {"type": "string"}},
                            },
                        },
                        "401": _UNAUTHORIZED,
                        "404": _problem("No context for this reference"),
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/v1/ledger": {
                "get": {
                    "summary": "The compliance ledger: decisions, call attempts, tasks and "
                    "operator actions, oldest first, a page at a time (the next page: "
                    "?cursor=<nextCursor> with the same filters)",
                    "security": _BEARER,
                    "parameters": [
                        {"name": name, "in": "query", "schema": schema, "description": doc}
                        for name, schema, doc in _LEDGER_PARAMETERS
                    ],
                    "responses": {
                        "200": _json("entries, count, nextCursor (absent on the last page)"),
                        "400": _problem("A parameter is unknown or malformed (each one named)"),
                        "401": _UNAUTHORIZED,
                        "404": _problem("The ledger is off"),
                        "503": _problem("The ledger's store is unavailable"),
                    },
                }
            },
            "/v1/admin/dnc": {
                "get": {
                    "summary": "The internal do-not-call list",
                    "security": _BEARER,
                    "responses": {"200": _json("The numbers"), "401": _UNAUTHORIZED},
                }
            },
            "/v1/admin/dnc/{number}": {
                "put": {
                    "summary": "Never call this number",
                    "security": _BEARER,
                    "parameters": [number],
                    "responses": {
                        "200": _json("Listed"),
                        "400": _problem("Not a phone number"),
                        "401": _UNAUTHORIZED,
                    },
                },
                "delete": {
                    "summary": "Take a number off the list",
                    "security": _BEARER,
                    "parameters": [number],
                    "responses": {
                        "200": _json("Removed"),
                        "400": _problem("Not a phone number"),
                        "401": _UNAUTHORIZED,
                        "404": _problem("Not on the list"),
                    },
                },
            },
            "/v1/admin/maintenance": {
                "get": {
                    "summary": "Maintenance windows: pending, active, and ended within a day",
                    "security": _BEARER,
                    "responses": {
                        "200": _json(
                            "The windows",
                            {
                                "type": "object",
                                "required": ["windows", "count"],
                                "properties": {
                                    "windows": {"type": "array", "items": _MAINTENANCE_WINDOW},
                                    "count": {"type": "integer"},
                                },
                            },
                        ),
                        "401": _UNAUTHORIZED,
                        "503": _UNAVAILABLE,
                    },
                },
                "post": {
                    "summary": "Open a maintenance window: matching alerts place no call",
                    "security": _BEARER,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _MAINTENANCE_REQUEST}},
                    },
                    "responses": {
                        "201": _json("The window", _MAINTENANCE_WINDOW),
                        "400": _problem("Not a valid window: one problem per field"),
                        "401": _UNAUTHORIZED,
                        "503": _UNAVAILABLE,
                    },
                },
            },
            "/v1/admin/maintenance/{id}": {
                "delete": {
                    "summary": "End a window now (it stays listed for a day)",
                    "security": _BEARER,
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": _json("The ended window", _MAINTENANCE_WINDOW),
                        "401": _UNAUTHORIZED,
                        "404": _problem("No such window"),
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/v1/admin/dialing/pause": {
                "post": {
                    "summary": "Hold every call, on every instance, until resumed (tasks go on)",
                    "security": _BEARER,
                    "responses": {
                        "200": _json("Paused"),
                        "401": _UNAUTHORIZED,
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/v1/admin/dialing/resume": {
                "post": {
                    "summary": "Resume calls",
                    "security": _BEARER,
                    "responses": {
                        "200": _json("Resumed"),
                        "401": _UNAUTHORIZED,
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/v1/providers/twilio/status": {
                "post": {
                    "summary": "Twilio's status callback: a placed call's result",
                    "description": "Set as StatusCallback on every Twilio call when [outcomes] "
                    "twilio_status_url is; Twilio must reach it (a public HTTPS URL in front of "
                    "tripline). Trusted only with X-Twilio-Signature: base64 HMAC-SHA1, keyed "
                    "with the Twilio auth token, of twilio_status_url's origin and path with "
                    "this request's query exactly as it arrived (its %-escapes untouched), "
                    "followed by every form parameter's name and value in name order. A "
                    "terminal CallStatus of the alert's current attempt is kept for the "
                    "instance following that call, which settles the attempt within a second; "
                    "one that arrives while the attempt is still being dialed (before the "
                    "dial's answer) is kept too, and taken as soon as the call is recorded. "
                    "Progress events, calls that are not the current attempt's, an n that is "
                    "not at most 9 ASCII digits, and a callback whose SequenceNumber is not "
                    "above the one already kept for the same call (a replay, or out of order) "
                    "change nothing. The body must arrive within 10 s. Without "
                    "twilio_status_url (or the auth token) every request is a 401.",
                    "parameters": [
                        {
                            "name": "X-Twilio-Signature",
                            "in": "header",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "key",
                            "in": "query",
                            "required": True,
                            "description": "The alert's idempotencyKey (set by tripline)",
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "n",
                            "in": "query",
                            "required": True,
                            "description": "The attempt (1 is the first call); one that is "
                            "not at most 9 ASCII digits is ignored (204)",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 999999999},
                        },
                        {
                            "name": "i",
                            "in": "query",
                            "required": True,
                            "description": "The instance following the call ([mqtt] client_id)",
                            "schema": {"type": "string"},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/x-www-form-urlencoded": {"schema": _TWILIO_STATUS}
                        },
                    },
                    "responses": {
                        "204": {
                            "description": "Taken, or nothing to take (a progress event, "
                            "another call, an older SequenceNumber, an unreadable n)"
                        },
                        "401": _problem(
                            "X-Twilio-Signature missing or not Twilio's for this URL and form; "
                            "nothing changed"
                        ),
                        "408": _problem("The body did not arrive within 10 s"),
                        "413": _problem("Body over 16 KiB (the connection is closed)"),
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Alive, and no actor beyond its restart budget",
                    "responses": {"200": _json("Healthy"), "503": _json("Unhealthy")},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Redis and the broker are reachable",
                    "responses": {"200": _json("Ready"), "503": _json("Not ready")},
                }
            },
            "/status": {
                "get": {
                    "summary": "Actors, counters, call results and reach rate, queues, budget, "
                    "occupancy, incidents, events",
                    "security": _READ,
                    "responses": {
                        "200": _json("The status document"),
                        "401": _UNAUTHORIZED,
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/": {
                "get": {
                    "summary": "The operators' dashboard",
                    "description": "With a read token set, give it as ?token= (the page "
                    "passes it on to /status as a bearer token) or as a bearer token.",
                    "security": _READ,
                    "parameters": [{"name": "token", "in": "query", "schema": {"type": "string"}}],
                    "responses": {
                        "200": {
                            "description": "HTML",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        },
                        "401": _UNAUTHORIZED,
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": _json("OpenAPI 3.1")},
                }
            },
        },
    }
    for item in doc["paths"].values():
        for method, operation in item.items():
            if method in ("post", "put", "delete"):
                operation["responses"]["403"] = _FORBIDDEN
    return doc
