"""The ledger end to end: evidence outlives the record; operator actions have authors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
from prometheus_client import CollectorRegistry

from actors.dialing.records import _mark_args
from tests.conftest import REDIS_URL, ServiceHandle, alert, http, wait_for
from tests.tripline.adapters.ledger.conftest import pg_url  # noqa: F401 - a fixture
from tripline.adapters.ledger import postgres
from tripline.adapters.ledger.entry import hasher_for
from tripline.adapters.ledger.postgres import PostgresStore
from tripline.adapters.ledger.query import LedgerQuery
from tripline.adapters.store import ACCEPT_LUA, TRANSITION_LUA, Keys, accept_args
from tripline.conf.rules import load_rules
from tripline.messages import Customer
from tripline.pipeline.comply import Blocked, ComplyRules, comply
from tripline.pipeline.validate import Limits, Rejected, validate
from tripline.service.ledger import LedgerReader, LedgerWriter

pytestmark = pytest.mark.integration

FRIDAY_19_PROVIDENCE = 1_795_824_000.0  # 2026-11-27 19:00 EST (Fri), 2026-11-28T00:00Z
RHODE_ISLAND = Customer(
    customer_id="CUST-RI",
    name="Ocean State Bakery",
    phone="+1 401 555 0147",
    timezone="America/New_York",
    do_not_disturb=False,
    do_not_call=False,
    country="US",
    region="US-RI",  # weekdays 09:00-18:00
)


def test_a_friday_evening_deferral_is_provable_on_monday(
    redis_client: redis.Redis,
    prefix: str,
    pg_url: str,  # noqa: F811
) -> None:
    postgres.migrate(pg_url)
    keys = Keys(prefix, ledger=True)
    checked = validate(orjson.dumps(alert(customer="CUST-RI")), now=time.time(), limits=Limits())
    assert not isinstance(checked, Rejected)
    the_alert = checked[0]
    k, a = accept_args(keys, the_alert, 3600)
    redis_client.eval(ACCEPT_LUA, len(k), *k, *a)
    decision = comply(
        RHODE_ISLAND, now=FRIDAY_19_PROVIDENCE, rules=ComplyRules(calling=load_rules())
    )
    assert isinstance(decision, Blocked)
    # The dialer's own write of a compliance deferral (records.py), as the service makes it.
    k, a = _mark_args(keys, decision.task(the_alert), FRIDAY_19_PROVIDENCE)
    assert redis_client.eval(TRANSITION_LUA, len(k), *k, *a) == 1
    store, hasher = PostgresStore(pg_url), hasher_for("", prefix)
    writer = LedgerWriter(
        client=redis_client, keys=keys, store=store, hasher=hasher, consumer="w",
        batch_size=100, retention_days=1825, registry=CollectorRegistry(),
        clock=lambda: FRIDAY_19_PROVIDENCE + 1,
    )  # fmt: skip
    assert writer.run_once() == 1
    # Monday: the record and its history have expired.
    key = the_alert.idempotency_key
    redis_client.delete(keys.record(key), keys.history(key))
    reader = LedgerReader(PostgresStore(pg_url), hasher)
    proved = reader.alert(key)
    reader.close()
    assert proved is not None
    assert (proved["outcome"], proved["reason"]) == ("deferred", "outside_calling_window")
    facts = proved["facts"]
    assert facts["localTime"].startswith("2026-11-27T19:00:00")
    assert facts["timezone"] == "America/New_York"
    assert facts["region"] == "US-RI"
    assert facts["rulesVersion"] == load_rules().version
    [entry] = proved["ledger"]
    # Its task was due when Rhode Island's window next opened: Saturday 10:00 local.
    assert entry["evidence"]["dueAt"] == "2026-11-28T15:00:00.000Z"
    assert proved["history"][0]["state"] == "deferred"
    store.close()


@pytest.fixture
def ledger_service(prefix: str, emulator: Any, pg_url: str) -> Iterator[ServiceHandle]:  # noqa: F811
    postgres.migrate(pg_url)
    env = {
        "TRIPLINE__LEDGER__URL": pg_url,
        "TRIPLINE__LEDGER__PHONE_HASH_KEY": "test-key",
        "TRIPLINE__HTTP__ADMIN_TOKEN": "root-token",
        "TRIPLINE__HTTP__ADMIN_TOKENS": '{ alice = "alice-token" }',
    }
    handle = ServiceHandle(prefix=prefix, emulator=emulator, env=env).start()
    yield handle
    handle.stop()


def _admin(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


def test_calls_are_in_the_ledger_and_outlive_their_record(
    ledger_service: ServiceHandle, emulator: Any, redis_client: redis.Redis
) -> None:
    svc = ledger_service
    emulator.add_customer("CUST-L1", phone="+14155550188")
    doc = alert(customer="CUST-L1", sensor="S-L1")
    key = doc["idempotencyKey"]
    assert http("POST", f"{svc.url}/v1/alerts", doc)[0] == 202
    headers = _admin("alice-token")

    def written() -> list[dict[str, Any]]:
        status, body = http("GET", f"{svc.url}/v1/ledger?key={key}", headers=headers)
        assert status == 200
        return [e for e in body["entries"] if e["kind"] == "decision"]

    [decision] = wait_for(written, timeout=20)
    assert decision["outcome"] == "called"
    assert decision["callId"]
    assert decision["backend"]
    assert decision["phoneMasked"]
    assert "0188" not in decision["phoneMasked"][:-2]
    by_phone = http("GET", f"{svc.url}/v1/ledger?phone=%2B1%20415%20555%200188", headers=headers)[1]
    assert key in {e["idempotencyKey"] for e in by_phone["entries"]}
    keys = Keys(svc.prefix)
    redis_client.delete(keys.record(key), keys.history(key))  # the record expired
    status, proved = http("GET", f"{svc.url}/v1/alerts/{key}")
    assert status == 200
    assert (proved["source"], proved["outcome"]) == ("ledger", "called")
    assert http("GET", f"{svc.url}/v1/alerts/never-seen")[0] == 404


@pytest.mark.parametrize(
    ("query", "field"),
    [
        pytest.param("from=yesterday", "from", id="unreadable-time"),
        pytest.param("from=2026-11-27T10:00:00", "from", id="time-without-offset"),
        pytest.param("limit=0", "limit", id="limit-too-small"),
        pytest.param("limit=100000", "limit", id="limit-too-large"),
        pytest.param("outcome=maybe", "outcome", id="unknown-outcome"),
        pytest.param("cursor=%7B%7D", "cursor", id="forged-cursor"),
        pytest.param("customer=C1", "customer", id="unknown-parameter"),
        pytest.param("customerId=" + "x" * 300, "customerId", id="huge-value"),
    ],
)
def test_a_bad_question_gets_a_reason(
    ledger_service: ServiceHandle, query: str, field: str
) -> None:
    status, body = http(
        "GET", f"{ledger_service.url}/v1/ledger?{query}", headers=_admin("root-token")
    )
    assert status == 400
    assert field in {p["field"] for p in body["problems"]}


def test_the_ledger_needs_an_admin_token(ledger_service: ServiceHandle) -> None:
    assert http("GET", f"{ledger_service.url}/v1/ledger")[0] == 401
    assert http("GET", f"{ledger_service.url}/v1/ledger", headers=_admin("wrong"))[0] == 401


def test_every_operator_action_appears_with_its_author(ledger_service: ServiceHandle) -> None:
    svc, url = ledger_service, ledger_service.url
    alice = _admin("alice-token", **{"X-Tripline-Reason": "customer asked, ticket 4711"})
    root = _admin("root-token")
    assert http("PUT", f"{url}/v1/admin/dnc/+14155550199", headers=alice)[0] == 200
    assert http("DELETE", f"{url}/v1/admin/dnc/+14155550199", headers=root)[0] == 200
    assert http("POST", f"{url}/v1/admin/dialing/pause", headers=alice)[0] == 200
    assert http("POST", f"{url}/v1/admin/dialing/resume", headers=alice)[0] == 200
    window = {"sensorId": "S-9", "durationSeconds": 600, "comment": "pump swap"}
    status, opened = http("POST", f"{url}/v1/admin/maintenance", window, headers=alice)
    assert status == 201
    assert http("DELETE", f"{url}/v1/admin/maintenance/{opened['id']}", headers=root)[0] == 200

    def actions() -> list[dict[str, Any]]:
        body = http("GET", f"{url}/v1/ledger?kind=operator", headers=root)[1]
        return body["entries"] if len(body["entries"]) >= 6 else []

    got = wait_for(actions, timeout=20)
    assert [(e["event"], e["actor"]) for e in got] == [
        ("dnc_add", "alice"),
        ("dnc_remove", "admin"),
        ("dialing_paused", "alice"),
        ("dialing_resumed", "alice"),
        ("maintenance_opened", "alice"),
        ("maintenance_ended", "admin"),
    ]
    assert got[0]["detail"] == "customer asked, ticket 4711"
    assert got[0]["origin"].startswith("http:127.0.0.1")
    assert got[0]["phoneHash"] == hasher_for("test-key", svc.prefix).digest("+14155550199")
    assert "4155550199" not in orjson.dumps(got).decode()
    assert got[4]["evidence"]["subject"]["sensorId"] == "S-9"


def test_cli_actions_carry_by_and_why(ledger_service: ServiceHandle, pg_url: str) -> None:  # noqa: F811
    import os  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    env = {
        **os.environ,
        "TRIPLINE__REDIS__URL": REDIS_URL,
        "TRIPLINE__REDIS__KEY_PREFIX": ledger_service.prefix,
        "TRIPLINE__LEDGER__URL": pg_url,
    }
    run = [sys.executable, "-m", "tripline.edge.cli", "--log-format", "text"]
    subprocess.run(
        [*run, "dnc", "add", "+14155550142", "--by", "bob", "--why", "letter"], env=env, check=True
    )
    reader = LedgerReader(PostgresStore(pg_url), hasher_for("", ledger_service.prefix))

    def found() -> list[dict[str, Any]]:
        return [e for e in reader.query(LedgerQuery(kind="operator")) if e["actor"] == "bob"]

    [entry] = wait_for(found, timeout=20)
    assert (entry["event"], entry["detail"]) == ("dnc_add", "letter")
    assert entry["origin"].startswith("cli:")
    reader.close()
