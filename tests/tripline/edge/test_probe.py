"""What the probe asks for a config, and how it reads each answer, as tables."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from tests.conftest import plain_alert
from tripline.adapters.backends.campaign import contact_for
from tripline.conf import schema
from tripline.devtools.emulator.objects import demo_objects
from tripline.edge import probe
from tripline.edge.probe_answers import Problem
from tripline.edge.probe_readers import (
    CAMPAIGN_COLUMNS,
    cxone_token,
    discovered,
    genesys_token,
    read_account,
    read_completed,
    read_contact_list,
    read_customer,
    read_customer_page,
    read_details,
    read_queue,
    read_skill,
    read_worktype,
)
from tripline.messages import Customer, DialIntent, Priority

NOW = 1_790_000_000.0


def config(**env: str) -> schema.Config:
    return schema.load(env={f"TRIPLINE__{k.upper()}": v for k, v in env.items()})


def checks(cfg: schema.Config) -> dict[str, list[str]]:
    return {
        p.vendor: [r.check for r in p.reads] if p.roles else [] for p in probe.plan(cfg, now=NOW)
    }


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param(
            {},
            {
                "genesys": [
                    "genesys queue",
                    "genesys occupancy",
                    "genesys results",
                    "genesys tasks",
                ],
                "cxone": [],
                "twilio": [],
            },
            id="default-genesys-for-everything",
        ),
        pytest.param(
            {"dialer__backend": "log", "tasks__backend": "log"},
            {"genesys": [], "cxone": [], "twilio": []},
            id="dry-run-asks-no-contact-center",
        ),
        pytest.param(
            {"dialer__backend": "cxone", "tasks__backend": "log"},
            {
                "genesys": [],
                "cxone": ["cxone skill", "cxone occupancy", "cxone results"],
                "twilio": [],
            },
            id="cxone-calls-and-occupancy",
        ),
        pytest.param(
            {"dialer__backend": "twilio"},
            {"genesys": ["genesys tasks"], "cxone": [], "twilio": ["twilio account"]},
            id="twilio-calls-genesys-tasks-no-occupancy",
        ),
        pytest.param(
            {"dialer__backends": '{ normal = "genesys_campaign", low = "genesys_campaign" }'},
            {
                "genesys": [
                    "genesys queue",
                    "genesys occupancy",
                    "genesys results",
                    "genesys campaign",
                    "genesys tasks",
                ],
                "cxone": [],
                "twilio": [],
            },
            id="campaign-beside-callbacks",
        ),
        pytest.param(
            {"dialer__backend": "genesys_campaign", "tasks__backend": "log"},
            {
                "genesys": ["genesys queue", "genesys occupancy", "genesys campaign"],
                "cxone": [],
                "twilio": [],
            },
            id="campaign-only-no-callback-results",
        ),
        pytest.param(
            {"dialer__backend": "twilio", "dialer__occupancy_source": "cxone"},
            {
                "genesys": ["genesys tasks"],
                "cxone": ["cxone skill", "cxone occupancy"],
                "twilio": ["twilio account"],
            },
            id="occupancy-alone-uses-cxone",
        ),
        pytest.param(
            {"dialer__occupancy_source": "none"},
            {
                "genesys": ["genesys queue", "genesys results", "genesys tasks"],
                "cxone": [],
                "twilio": [],
            },
            id="no-occupancy-poll",
        ),
    ],
)
def test_plan(env: dict[str, str], expected: dict[str, list[str]]) -> None:
    assert checks(config(**env)) == expected


def test_roles_say_what_each_is_used_for() -> None:
    cfg = config(
        dialer__backends='{ critical = "cxone", high = "cxone", low = "twilio" }',
        tasks__backend="genesys",
    )
    assert probe.roles(cfg) == {
        "genesys": ("calls (normal)", "tasks"),
        "cxone": ("calls (critical, high)", "occupancy"),
        "twilio": ("calls (low)",),
    }


def test_unset_secrets_are_named() -> None:
    plans = {p.vendor: p for p in probe.plan(config(genesys__client_secret="s"), now=NOW)}
    assert plans["genesys"].unset == ()
    assert plans["cxone"].unset == (
        "TRIPLINE__CXONE__ACCESS_KEY_SECRET",
        "TRIPLINE__CXONE__CLIENT_SECRET",
    )
    assert plans["twilio"].unset == ("TRIPLINE__TWILIO__AUTH_TOKEN",)


@pytest.mark.parametrize(
    ("value", "refused"),
    [
        pytest.param("", "[genesys] queue_id is not set: it names nothing", id="empty"),
        pytest.param("..", "[genesys] queue_id is '..': it names nothing", id="dot-dot"),
        pytest.param(".", "[genesys] queue_id is '.': it names nothing", id="dot"),
        pytest.param("a/../b?c#d", "", id="separators-are-quoted-not-refused"),
    ],
)
def test_ids_that_name_nothing_are_not_sent(value: str, refused: str) -> None:
    genesys = probe.plan(config(genesys__queue_id=value), now=NOW)[0]
    queue = next(r for r in genesys.reads if r.check == "genesys queue")
    assert queue.refused == refused
    if not refused:
        assert queue.path == "/api/v2/routing/queues/a%2F..%2Fb%3Fc%23d"


def test_crm_reads_the_list_or_a_customer() -> None:
    listed = probe.crm_read(config(), None)
    assert isinstance(listed, probe.Read)
    assert listed.path == "/api/v1/customers?page=1&pageSize=1"
    one = probe.crm_read(config(), "CUST 1/2")
    assert isinstance(one, probe.Read)
    assert one.path == "/api/v1/customers/CUST%201%2F2"
    assert isinstance(probe.crm_read(config(), ".."), Problem)
    assert "TRIPLINE__CRM__TOKEN" in listed.hints.unauthorized


def test_the_campaign_columns_are_those_contacts_fill() -> None:
    customer = Customer(
        customer_id="C1",
        name="n",
        phone="+14155550100",
        timezone="UTC",
        do_not_disturb=False,
        do_not_call=False,
    )
    intent = DialIntent(
        intent_id="i",
        alert=plain_alert(),
        customer=customer,
        priority=Priority.NORMAL,
        enqueued_at=0.0,
    )
    assert set(contact_for(intent)["data"]) == set(CAMPAIGN_COLUMNS)


def test_the_emulators_demo_objects_are_the_default_config_ids() -> None:
    objects, cfg = demo_objects(), config()
    assert cfg.genesys.queue_id in objects["queues"]
    assert cfg.genesys.workitem_type_id in objects["worktypes"]
    assert cfg.genesys.contact_list_id in objects["contactlists"]
    assert cfg.cxone.skill_id in objects["skills"]
    assert read_contact_list(objects["contactlists"][cfg.genesys.contact_list_id]) == (
        "contact list 'Sensor alerts' with tripline's columns"
    )


LIST = {
    "id": "L",
    "name": "Alerts",
    "columnNames": list(CAMPAIGN_COLUMNS),
    "phoneColumns": [{"columnName": "phone", "type": "cell"}],
}


@pytest.mark.parametrize(
    ("reader", "body", "expected"),
    [
        pytest.param(
            read_queue,
            {"id": "q", "name": "Q", "memberCount": 3},
            "queue 'Q', 3 members",
            id="queue",
        ),
        pytest.param(
            read_queue, {"name": "Q"}, Problem("no Queue object (no id)"), id="queue-without-id"
        ),
        pytest.param(read_queue, [], Problem("no Queue object (no id)"), id="queue-list"),
        pytest.param(read_worktype, {"id": "w", "name": "W"}, "worktype 'W'", id="worktype"),
        pytest.param(
            read_worktype,
            {"entities": []},
            Problem("no Worktype object (no id)"),
            id="worktype-listing",
        ),
        pytest.param(
            read_contact_list, LIST, "contact list 'Alerts' with tripline's columns", id="list"
        ),
        pytest.param(
            read_contact_list,
            {**LIST, "columnNames": ["phone", "name"]},
            Problem(
                "contact list 'Alerts' lacks the columns sensorId, alertType, referenceId, "
                "telemetryHash"
            ),
            id="list-missing-columns",
        ),
        pytest.param(
            read_contact_list,
            {**LIST, "phoneColumns": [{"columnName": "mobile", "type": "cell"}]},
            Problem("contact list 'Alerts': column 'phone' is not a phone column"),
            id="list-phone-not-a-phone-column",
        ),
        pytest.param(
            read_contact_list,
            {**LIST, "phoneColumns": "phone"},
            Problem("contact list 'Alerts': column 'phone' is not a phone column"),
            id="list-phone-columns-odd",
        ),
        pytest.param(read_details, None, "no conversations (as expected)", id="details-empty"),
        pytest.param(
            read_details, {"conversations": [{}]}, "1 conversations (none expected)", id="details"
        ),
        pytest.param(read_details, "x", Problem("no query response object"), id="details-odd"),
        pytest.param(
            read_skill,
            {"skillId": 2002, "skillName": "S", "mediaTypeName": "Phone Call", "isActive": True},
            "skill 'S' (Phone Call)",
            id="skill",
        ),
        pytest.param(
            read_skill,
            {"skills": [{"skillId": 1, "skillName": "S"}]},
            "skill 'S'",
            id="skill-wrapped",
        ),
        pytest.param(
            read_skill,
            {"skillId": 1, "skillName": "S", "isActive": False},
            Problem("skill 'S' is inactive"),
            id="skill-inactive",
        ),
        pytest.param(
            read_skill,
            {"skills": []},
            Problem("no skill object (no skillId)"),
            id="skill-empty-list",
        ),
        pytest.param(
            read_completed,
            None,
            "no completed contacts in the last hour",
            id="completed-no-content",
        ),
        pytest.param(
            read_completed,
            {"completedContacts": [], "totalRecords": 0},
            "completed contacts readable (0 in the last hour)",
            id="completed",
        ),
        pytest.param(
            read_completed,
            {"completedContacts": 5},
            Problem("completedContacts is not a list"),
            id="completed-odd",
        ),
        pytest.param(
            read_account,
            {
                "sid": "AC1",
                "friendly_name": "Ops",
                "status": "active",
                "type": "Trial",
                "auth_token": "SECRET",
            },
            "account 'Ops', active, Trial",
            id="account",
        ),
        pytest.param(
            read_account,
            {"sid": "AC1", "friendly_name": "Ops", "status": "suspended"},
            Problem("account 'Ops' is suspended, not active"),
            id="account-suspended",
        ),
        pytest.param(
            read_account,
            {"sid": "AC1"},
            Problem("account '' is of unknown status, not active"),
            id="account-no-status",
        ),
        pytest.param(
            read_account,
            {"status": "active"},
            Problem("no Account resource (no sid)"),
            id="account-without-sid",
        ),
        pytest.param(
            read_customer_page,
            {"items": [], "total": 7},
            "customer list readable (7 customers)",
            id="page",
        ),
        pytest.param(
            read_customer_page,
            {"items": []},
            "customer list readable (some customers)",
            id="page-without-total",
        ),
        pytest.param(
            read_customer_page,
            [{"id": "C"}],
            Problem("no customer list (no items array)"),
            id="page-is-a-list",
        ),
    ],
)
def test_readers(reader: Any, body: Any, expected: str | Problem) -> None:
    assert reader(body) == expected


def test_no_secret_or_number_is_read_out() -> None:
    shown = read_account({"sid": "AC1", "status": "active", "auth_token": "SECRET"})
    assert isinstance(shown, str)
    assert "SECRET" not in shown
    doc = {"id": "C1", "name": "n", "phone": "+14155550100", "timezone": "America/Los_Angeles"}
    found = read_customer("C1", doc)
    assert found == "customer 'C1': 1 number(s) to call, time zone America/Los_Angeles"
    assert read_customer("C1", {"id": "C1"}) == "customer 'C1': 0 number(s) to call, time zone none"
    assert "4155550100" not in found


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            {"id": "C2", "phone": "+14155550100"},
            "for customer 'C2', not 'C1'",
            id="another-customer",
        ),
        pytest.param(
            {"id": "C1", "doNotCall": "no"}, "doNotCall must be true or false", id="bad-flag"
        ),
        pytest.param("x", "not an object", id="not-an-object"),
    ],
)
def test_unusable_customer_documents(body: Any, expected: str) -> None:
    found = read_customer("C1", body)
    assert isinstance(found, Problem)
    assert expected in found.text


def id_token(claims: Any) -> str:
    payload = base64.urlsafe_b64encode(orjson.dumps(claims)).decode().rstrip("=")
    return f"e30.{payload}.sig"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            {"access_token": "A", "expires_in": 3600, "id_token": id_token({"tenantId": "T"})},
            ("A", "T"),
            id="ok",
        ),
        pytest.param(
            {"access_token": "A", "expires_in": 3600},
            Problem("no id_token naming a tenantId in the token response"),
            id="no-id-token",
        ),
        pytest.param(
            {"access_token": "A", "expires_in": 3600, "id_token": "not.a!jwt.x"},
            Problem("no id_token naming a tenantId in the token response"),
            id="garbled-id-token",
        ),
        pytest.param(
            {"access_token": "A", "expires_in": 3600, "id_token": id_token(["x"])},
            Problem("no id_token naming a tenantId in the token response"),
            id="claims-not-an-object",
        ),
        pytest.param(
            {"expires_in": 3600}, Problem("no access_token in the token response"), id="no-token"
        ),
        pytest.param(
            {"access_token": "A"},
            Problem("no expires_in (seconds) in the token response"),
            id="no-expiry",
        ),
        pytest.param([], Problem("no access_token in the token response"), id="a-list"),
    ],
)
def test_cxone_token(body: Any, expected: Any) -> None:
    assert cxone_token(body) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            {"access_token": "T", "expires_in": 86400}, ("T", "token valid for 86400 s"), id="ok"
        ),
        pytest.param(
            {"access_token": "", "expires_in": 86400},
            Problem("no access_token in the token response"),
            id="empty",
        ),
        pytest.param(
            {"access_token": "T", "expires_in": True},
            Problem("no expires_in (seconds) in the token response"),
            id="bool-expiry",
        ),
        pytest.param(
            {"access_token": "T", "expires_in": "86400"},
            Problem("no expires_in (seconds) in the token response"),
            id="text-expiry",
        ),
    ],
)
def test_genesys_token(body: Any, expected: Any) -> None:
    assert genesys_token(body) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({"token_endpoint": "https://x/auth/token/"}, "https://x/auth/token", id="ok"),
        pytest.param(
            {"token_endpoint": "javascript:alert(1)"},
            Problem("no token_endpoint URL in the discovery document"),
            id="not-http",
        ),
        pytest.param(
            {"token_endpoint": 5},
            Problem("no token_endpoint URL in the discovery document"),
            id="not-text",
        ),
        pytest.param(None, Problem("no token_endpoint URL in the discovery document"), id="empty"),
    ],
)
def test_discovered(body: Any, expected: Any) -> None:
    assert discovered(body, "token_endpoint") == expected
