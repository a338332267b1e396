"""The emulator answers like the real APIs: required fields, OAuth, 429 with Retry-After."""

from __future__ import annotations

import asyncio
import base64
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest
import yarl

from tests.conftest import EmulatorHandle, http
from tripline.devtools.emulator import CLIENT_ID, CLIENT_SECRET, TWILIO_TOKEN


@pytest.fixture
def token(emulator: EmulatorHandle) -> dict[str, str]:
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    status, body = http(
        "POST",
        f"{emulator.url}/oauth/token",
        b"grant_type=client_credentials",
        {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200
    assert body["token_type"] == "bearer"
    return {"Authorization": f"Bearer {body['access_token']}"}


def test_wrong_credentials_are_refused(emulator: EmulatorHandle) -> None:
    status, _ = http(
        "POST",
        f"{emulator.url}/oauth/token",
        b"grant_type=client_credentials",
        {
            "Authorization": "Basic bm9wZTpub3Bl",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert status == 401
    status, _ = http("POST", f"{emulator.url}/api/v2/conversations/callbacks", {})
    assert status == 401


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param({"routingData": {"queueId": "q"}}, "callbackNumbers", id="numbers-required"),
        pytest.param({"callbackNumbers": ["+1"]}, "queueId", id="queue-required"),
        pytest.param(
            {"callbackNumbers": ["+1"], "queueId": "q", "data": {"a": "x" * 256}},
            "255",
            id="attribute-limit",
        ),
        pytest.param(
            {"callbackNumbers": ["+1"], "queueId": "q", "data": {"a": 1}},
            "strings",
            id="attributes-are-strings",
        ),
    ],
)
def test_callback_field_rules(
    emulator: EmulatorHandle, token: dict[str, str], body: dict[str, object], message: str
) -> None:
    status, answer = http("POST", f"{emulator.url}/api/v2/conversations/callbacks", body, token)
    assert status == 400
    assert message in answer["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param({"name": "ab", "typeId": "t"}, "name", id="name-min-3"),
        pytest.param({"name": "abc"}, "typeId", id="type-required"),
        pytest.param(
            {"name": "abc", "typeId": "t", "description": "d" * 513}, "512", id="description-max"
        ),
        pytest.param(
            {"name": "abc", "typeId": "t", "dateDue": "2999-01-01T00:00:00Z"},
            "365",
            id="due-within-a-year",
        ),
    ],
)
def test_workitem_field_rules(
    emulator: EmulatorHandle, token: dict[str, str], body: dict[str, object], message: str
) -> None:
    status, answer = http("POST", f"{emulator.url}/api/v2/taskmanagement/workitems", body, token)
    assert status == 400
    assert message in answer["message"]


def test_rate_limit_answers_429_with_retry_after(
    emulator: EmulatorHandle, token: dict[str, str]
) -> None:
    http("PUT", f"{emulator.url}/_emulator/settings", {"rate_limit_per_minute": 2})
    body = {"callbackNumbers": ["+14155550100"], "queueId": "q"}
    statuses = [
        http("POST", f"{emulator.url}/api/v2/conversations/callbacks", body, token)[0]
        for _ in range(3)
    ]
    assert statuses[-1] == 429
    last = emulator.requests()[-1]
    assert last["status"] == 429


def test_settings_refuse_unknown_knobs(emulator: EmulatorHandle) -> None:
    status, body = http("PUT", f"{emulator.url}/_emulator/settings", {"occupancy_pct": 3})
    assert status == 400
    assert "occupancy_pct" in body["message"]


def test_crm_and_recorded_requests(emulator: EmulatorHandle) -> None:
    status, body = http("GET", f"{emulator.url}/api/v1/customers/CUST-DEMO-1")
    assert status == 200
    assert set(body) == {
        "id",
        "name",
        "phone",
        "timezone",
        "country",
        "region",
        "doNotDisturb",
        "doNotCall",
        "callConsent",
    }
    assert http("GET", f"{emulator.url}/api/v1/customers/NOPE")[0] == 404
    http("PUT", f"{emulator.url}/_emulator/customers/NEW-1", {"name": "New", "phone": "+1"})
    assert http("GET", f"{emulator.url}/api/v1/customers/NEW-1")[1]["name"] == "New"
    status, recorded = http("GET", f"{emulator.url}/_emulator/requests")
    assert [r["path"] for r in recorded] == [
        "/api/v1/customers/CUST-DEMO-1",
        "/api/v1/customers/NOPE",
        "/api/v1/customers/NEW-1",
    ]
    http("DELETE", f"{emulator.url}/_emulator/requests")
    assert http("GET", f"{emulator.url}/_emulator/requests")[1] == []


def test_a_customers_flags_are_changed_in_place(emulator: EmulatorHandle) -> None:
    """PATCH keeps the rest of the customer: a CRM change while tripline holds a decision."""
    url = f"{emulator.url}/_emulator/customers"
    status, changed = http("PATCH", f"{url}/CUST-DEMO-1", {"doNotDisturb": True})
    assert status == 200
    assert changed["doNotDisturb"] is True
    served = http("GET", f"{emulator.url}/api/v1/customers/CUST-DEMO-1")[1]
    assert served == changed
    assert served["phone"]  # the rest is kept
    assert http("PATCH", f"{url}/CUST-7", {"doNotCall": True})[1]["doNotCall"] is True  # synthetic
    assert http("PATCH", f"{url}/NOPE", {"doNotCall": True})[0] == 404
    assert http("PATCH", f"{url}/CUST-DEMO-1", [1])[0] == 400
    assert http("PATCH", f"{url}/CUST-DEMO-1", {"contacts": "x"})[0] == 400
    assert http("PATCH", f"{url}/CUST-DEMO-1", {"id": "other"})[1]["id"] == "CUST-DEMO-1"


ODD_IDS = ["a/b", "../x", "..", ".", "C?n=0", "C#1", "50%", "%2F", "a b", "kü/日本"]


def exact(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    """One request whose path goes out exactly as written (no client-side normalisation)."""

    async def go() -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session:
            data = None if body is None else orjson.dumps(body)
            target = yarl.URL(url, encoded=True)
            async with session.request(method, target, data=data) as resp:
                return resp.status, orjson.loads(await resp.read())

    return asyncio.run(go())


@pytest.mark.parametrize("cid", ODD_IDS)
def test_crm_ids_are_one_decoded_path_segment(emulator: EmulatorHandle, cid: str) -> None:
    segment = quote(cid, safe="")
    status, stored = exact("PUT", f"{emulator.url}/_emulator/customers/{segment}", {"name": "O"})
    assert (status, stored["id"]) == (200, cid)
    assert cid in emulator.state.customers
    status, served = exact("GET", f"{emulator.url}/api/v1/customers/{segment}")
    assert (status, served["id"], served["name"]) == (200, cid, "O")
    (seen,) = emulator.requests()
    assert (seen["path"], seen["rawPath"]) == (
        f"/api/v1/customers/{cid}",
        f"/api/v1/customers/{segment}",
    )


@pytest.mark.parametrize(
    ("path", "field", "value"),
    [
        pytest.param(
            "/api/v2/routing/queues/4d6d1e3c-7c5f-4a39-9b43-000000000001",
            "name",
            "Proactive alerts",
            id="queue",
        ),
        pytest.param(
            "/api/v2/taskmanagement/worktypes/6f8f3a5e-9e71-4c5b-9d65-000000000003",
            "defaultWorkbin",
            {"id": "7a9a4b6f-af82-4d6c-ae76-000000000004"},
            id="worktype",
        ),
        pytest.param(
            "/api/v2/outbound/contactlists/8b0b5c7a-b093-4e7d-bf87-000000000005",
            "phoneColumns",
            [{"columnName": "phone", "type": "cell"}],
            id="contact-list",
        ),
    ],
)
def test_genesys_objects_by_id(
    emulator: EmulatorHandle, token: dict[str, str], path: str, field: str, value: Any
) -> None:
    assert http("GET", f"{emulator.url}{path}")[0] == 401
    status, body = http("GET", f"{emulator.url}{path}", headers=token)
    assert status == 200
    assert body[field] == value
    assert body["id"] == path.rsplit("/", 1)[1]
    status, body = http("GET", f"{emulator.url}{path[:-1]}9", headers=token)
    assert status == 404
    assert body["code"] == "not.found"


def test_cxone_skill_by_id(emulator: EmulatorHandle, token: dict[str, str]) -> None:
    # The emulator's tokens are one pool: a Genesys token opens CXone's paths too.
    base = f"{emulator.url}/incontactapi/services/v26.0/skills"
    status, body = http("GET", f"{base}/2002", headers=token)
    assert status == 200
    assert (body["skillId"], body["isActive"], body["mediaTypeName"]) == (2002, True, "Phone Call")
    assert http("GET", f"{base}/2003", headers=token)[0] == 404
    assert http("GET", f"{base}/2002")[0] == 401
    assert http("GET", f"{base}/2002/activity", headers=token)[0] == 200


def test_twilio_account_resource(emulator: EmulatorHandle) -> None:
    sid = "AC" + "1" * 32
    url = f"{emulator.url}/2010-04-01/Accounts/{sid}.json"
    basic = base64.b64encode(f"{sid}:{TWILIO_TOKEN}".encode()).decode()
    status, body = http("GET", url, headers={"Authorization": f"Basic {basic}"})
    assert status == 200
    assert (body["sid"], body["owner_account_sid"], body["status"]) == (sid, sid, "active")
    assert body["type"] in ("Trial", "Full")
    assert body["uri"] == f"/2010-04-01/Accounts/{sid}.json"
    assert body["date_created"].endswith("+0000")  # RFC 2822, as Twilio's resources
    wrong = base64.b64encode(f"{sid}:nope".encode()).decode()
    status, body = http("GET", url, headers={"Authorization": f"Basic {wrong}"})
    assert status == 401
