"""`tripline check-config --probe`: which read-only requests a config calls for, and their readers.

Pure (no I/O): each contact center the config uses gets its token check and one read per role
it plays (calls, occupancy, results, campaign, tasks), each naming the permission a 403 would
lack and the id a 404 would blame; the CRM gets one read. tripline/edge/probe_http.py sends them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from tripline.adapters.backends.outcomes import genesys_query_body
from tripline.adapters.crm import UnusableRecordError, customer_url
from tripline.adapters.store import iso
from tripline.conf.schema import Config
from tripline.edge.probe_answers import Hints, Problem, Reader
from tripline.edge.probe_readers import (
    read_account,
    read_activity,
    read_completed,
    read_contact_list,
    read_customer,
    read_customer_page,
    read_details,
    read_observations,
    read_queue,
    read_skill,
    read_worktype,
)
from tripline.messages import Priority

VENDORS = ("genesys", "cxone", "twilio")
_VENDOR_OF = {
    "genesys": "genesys",
    "genesys_campaign": "genesys",
    "cxone": "cxone",
    "twilio": "twilio",
}
_NIL = "00000000-0000-0000-0000-000000000000"  # a conversation id no org has


@dataclass(frozen=True, slots=True, kw_only=True)
class Read:
    """One read-only request of the probe, relative to its vendor's API base."""

    check: str
    method: str
    path: str
    """Percent-encoded path (and query), appended to the base."""
    hints: Hints
    read: Reader
    json: Any = None
    refused: str = ""
    """Why it is not sent at all: an id that names nothing ('', '.', '..')."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VendorPlan:
    """What the probe asks one contact center, and why."""

    vendor: str
    roles: tuple[str, ...]
    """What the config uses it for ('calls (critical, high)', 'tasks', …); empty: not at all."""
    unset: tuple[str, ...] = ()
    """Environment variables of the secrets it needs that are not set."""
    reads: tuple[Read, ...] = field(default=())


def roles(config: Config) -> dict[str, tuple[str, ...]]:
    """What each contact center is used for by this config (the registry's own choices)."""
    d = config.dialer
    found: dict[str, list[str]] = {v: [] for v in VENDORS}
    by_kind: dict[str, list[str]] = {}
    for p in Priority:
        by_kind.setdefault(d.backends.get(p.label, d.backend), []).append(p.label)
    for kind, labels in by_kind.items():
        if kind in _VENDOR_OF:
            name = "campaign" if kind == "genesys_campaign" else "calls"
            found[_VENDOR_OF[kind]].append(f"{name} ({', '.join(labels)})")
    if config.tasks.backend == "genesys":
        found["genesys"].append("tasks")
    occupancy = observer(config)
    if occupancy != "none":
        found[occupancy].append("occupancy")
    return {v: tuple(r) for v, r in found.items()}


def observer(config: Config) -> str:
    """Where occupancy is polled: 'genesys', 'cxone' or 'none' (as tripline.adapters.backends)."""
    d = config.dialer
    if d.occupancy_source != "auto":
        return d.occupancy_source
    critical = d.backends.get("critical", d.backend)
    return {"genesys": "genesys", "genesys_campaign": "genesys", "cxone": "cxone"}.get(
        critical, "none"
    )


def plan(config: Config, *, now: float) -> list[VendorPlan]:
    """The contact centers' checks, in report order: Genesys, CXone, Twilio."""
    used = roles(config)
    kinds = {config.dialer.backends.get(p.label, config.dialer.backend) for p in Priority}
    return [
        VendorPlan(
            vendor="genesys",
            roles=used["genesys"],
            unset=_unset(
                ("TRIPLINE__GENESYS__CLIENT_SECRET", config.genesys.client_secret),
            ),
            reads=tuple(_genesys_reads(config, kinds, now)),
        ),
        VendorPlan(
            vendor="cxone",
            roles=used["cxone"],
            unset=_unset(
                ("TRIPLINE__CXONE__ACCESS_KEY_SECRET", config.cxone.access_key_secret),
                ("TRIPLINE__CXONE__CLIENT_SECRET", config.cxone.client_secret),
            ),
            reads=tuple(_cxone_reads(config, kinds, now)),
        ),
        VendorPlan(
            vendor="twilio",
            roles=used["twilio"],
            unset=_unset(("TRIPLINE__TWILIO__AUTH_TOKEN", config.twilio.auth_token)),
            reads=(_twilio_read(config),),
        ),
    ]


def _unset(*secrets: tuple[str, str]) -> tuple[str, ...]:
    return tuple(name for name, value in secrets if not value)


def _id(value: str) -> str:
    return quote(value, safe="")


def _blank(key: str, value: str) -> str:
    """Why an id cannot go into a path ('' if it can): empty, or a dot segment servers resolve."""
    if value in ("", ".", ".."):
        return f"{key} is {repr(value) if value else 'not set'}: it names nothing"
    return ""


_GENESYS_REFUSED = "the OAuth token was not accepted (a login host of another region?)"


def _genesys_object(check: str, collection: str, key: str, value: str) -> Read:
    """GET one configured object by id: it exists, and the client may read it (probe only)."""
    what, permission, read = _OBJECTS[collection]
    return Read(
        check=check,
        method="GET",
        path=f"/api/v2/{collection}/{_id(value)}",
        refused=_blank(f"[genesys] {key}", value),
        hints=Hints(
            unauthorized=_GENESYS_REFUSED,
            forbidden=f"missing permission {permission} (for this probe only)",
            not_found=f"[genesys] {key} {value!r} is no {what}",
        ),
        read=read,
    )


_OBJECTS: dict[str, tuple[str, str, Reader]] = {
    "routing/queues": ("queue", "routing:queue:view", read_queue),
    "outbound/contactlists": ("contact list", "outbound:contactList:view", read_contact_list),
    "taskmanagement/worktypes": ("worktype", "workitems:worktype:view", read_worktype),
}


def _genesys_reads(config: Config, kinds: set[str], now: float) -> list[Read]:
    g, reads, occupancy = config.genesys, [], observer(config) == "genesys"
    if "genesys" in kinds or occupancy:
        reads.append(_genesys_object("genesys queue", "routing/queues", "queue_id", g.queue_id))
    if occupancy:
        predicate = {"dimension": "queueId", "operator": "matches", "value": g.queue_id}
        reads.append(
            Read(
                check="genesys occupancy",
                method="POST",
                path="/api/v2/analytics/queues/observations/query",
                refused=_blank("[genesys] queue_id", g.queue_id),
                hints=Hints(
                    unauthorized=_GENESYS_REFUSED,
                    forbidden="missing permission analytics:queueObservation:view",
                ),
                read=lambda body: read_observations(body, now),
                json={
                    "filter": {"type": "or", "predicates": [predicate]},
                    "metrics": ["oOnQueueUsers", "oWaiting", "oInteracting"],
                },
            )
        )
    if "genesys" in kinds:
        reads.append(
            Read(
                check="genesys results",
                method="POST",
                path="/api/v2/analytics/conversations/details/query",
                hints=Hints(
                    unauthorized=_GENESYS_REFUSED,
                    forbidden="missing permission analytics:conversationDetail:view",
                ),
                read=read_details,
                json=genesys_query_body([_NIL], now - 3600, now),
            )
        )
    if "genesys_campaign" in kinds:
        reads.append(
            _genesys_object(
                "genesys campaign",
                "outbound/contactlists",
                "contact_list_id",
                g.contact_list_id,
            )
        )
    if config.tasks.backend == "genesys":
        reads.append(
            _genesys_object(
                "genesys tasks",
                "taskmanagement/worktypes",
                "workitem_type_id",
                g.workitem_type_id,
            )
        )
    return reads


def _cxone_reads(config: Config, kinds: set[str], now: float) -> list[Read]:
    c = config.cxone
    refused = "the access token was not accepted (an API endpoint of another area?)"
    role = "the access key's employee lacks it in its role"
    reads = [
        Read(
            check="cxone skill",
            method="GET",
            path=f"/skills/{_id(c.skill_id)}",
            refused=_blank("[cxone] skill_id", c.skill_id),
            hints=Hints(
                unauthorized=refused,
                forbidden=f"reading skills refused: {role}",
                not_found=f"[cxone] skill_id {c.skill_id!r} is no skill of this business unit",
            ),
            read=read_skill,
        )
    ]
    if observer(config) == "cxone":
        reads.append(
            Read(
                check="cxone occupancy",
                method="GET",
                path=f"/skills/{_id(c.skill_id)}/activity",
                refused=_blank("[cxone] skill_id", c.skill_id),
                hints=Hints(unauthorized=refused, forbidden=f"skill activity refused: {role}"),
                read=lambda body: read_activity(body, now),
            )
        )
    if "cxone" in kinds:
        since = quote(iso(now - 3600), safe="")
        reads.append(
            Read(
                check="cxone results",
                method="GET",
                path=f"/contacts/completed?updatedSince={since}&top=1",
                hints=Hints(unauthorized=refused, forbidden=f"reporting refused: {role}"),
                read=read_completed,
            )
        )
    return reads


def _twilio_read(config: Config) -> Read:
    sid = config.twilio.account_sid
    return Read(
        check="twilio account",
        method="GET",
        path=f"/2010-04-01/Accounts/{_id(sid)}.json",
        refused=_blank("[twilio] account_sid", sid),
        hints=Hints(
            unauthorized="account_sid and TRIPLINE__TWILIO__AUTH_TOKEN refused together",
            forbidden="this auth token may not read the account (an API key of a subaccount?)",
            not_found=f"[twilio] account_sid {sid!r} is no account",
        ),
        read=read_account,
    )


def crm_read(config: Config, customer: str | None) -> Read | Problem:
    """The CRM's check: a customer by id when given, else the first page of the list."""
    refused = (
        "refused: set TRIPLINE__CRM__TOKEN"
        if not config.crm.token
        else "TRIPLINE__CRM__TOKEN refused"
    )
    if customer is None:
        return Read(
            check="crm",
            method="GET",
            path="/api/v1/customers?page=1&pageSize=1",
            hints=Hints(
                unauthorized=refused,
                not_found="no customer list here (crm-sync and [crm] sync_interval_seconds need "
                "it): check [crm] base_url, or probe one customer with --customer ID",
            ),
            read=read_customer_page,
        )
    try:
        path = str(customer_url("", customer))
    except UnusableRecordError as exc:
        return Problem(f"--customer: {exc}")
    return Read(
        check="crm",
        method="GET",
        path=path,
        hints=Hints(
            unauthorized=refused,
            not_found=f"customer {customer!r} unknown to the CRM (or [crm] base_url is wrong)",
        ),
        read=lambda body: read_customer(customer, body),
    )
