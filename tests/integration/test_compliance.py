"""Compliance on the real path: slow and dead CRMs, DNC and DND, caps across a restart."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from tests.conftest import (
    REDIS_URL,
    EmulatorHandle,
    ServiceHandle,
    alert,
    http,
    tripline_cli,
    wait_for,
    zone_outside_window,
)

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": "Bearer admin-token"}


def outcome_of(service: ServiceHandle, doc: dict[str, object]) -> dict[str, object]:
    key = str(doc["idempotencyKey"])
    wait_for(lambda: service.outcome(key) in ("called", "suppressed", "deferred"))
    record = service.record(key)
    assert record is not None
    return record


def test_slow_crm_cache_hit_dials_and_cache_miss_defers(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    emulator.add_customer("C-CACHED")
    service = make_service(TRIPLINE__CRM__TIMEOUT_SECONDS="0.3").start()
    warm = alert(customer="C-CACHED", sensor="S-warm")
    service.publish(warm, sensor="S-warm")
    assert outcome_of(service, warm)["outcome"] == "called"  # the profile is now cached

    emulator.add_customer("C-COLD")
    http("PUT", f"{emulator.url}/_emulator/settings", {"crm_latency_ms": 1500})
    hit = alert(customer="C-CACHED", sensor="S-hit")
    miss = alert(customer="C-COLD", sensor="S-miss")
    service.publish(hit, sensor="S-hit")
    service.publish(miss, sensor="S-miss")
    assert outcome_of(service, hit)["outcome"] == "called"
    record = outcome_of(service, miss)
    assert (record["outcome"], record["reason"]) == ("deferred", "crm_unavailable")


def test_dead_crm_opens_the_breaker(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    service = make_service(TRIPLINE__CRM__BREAKER_THRESHOLD="2").start()
    http("PUT", f"{emulator.url}/_emulator/settings", {"crm_down": True})
    docs = [alert(customer=f"C-{n}", sensor=f"S-{n}") for n in range(4)]
    reasons = []
    for doc in docs:  # one after the other, so each sees the breaker the last one left
        service.publish(doc, sensor=str(doc["sensorId"]))
        reasons.append(outcome_of(service, doc)["reason"])
    assert reasons == ["crm_unavailable"] * 4
    assert http("GET", f"{service.url}/status")[1]["crm"]["breaker"] == "open"
    # Two failures opened it: the last two alerts never cost the CRM a request.
    lookups = [r for r in emulator.requests() if r["path"].startswith("/api/v1/customers/")]
    assert len(lookups) == 2


def test_prefetched_cache_carries_calls_through_a_crm_outage(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    emulator.add_customer("C-PREFETCH")
    service = make_service(TRIPLINE__CRM__SYNC_INTERVAL_SECONDS="3600").start()
    wait_for(lambda: (http("GET", f"{service.url}/status")[1]["crm"]["cacheWarmedWith"] or 0) > 1)
    http("PUT", f"{emulator.url}/_emulator/settings", {"crm_down": True})
    doc = alert(customer="C-PREFETCH", sensor="S-pre")
    service.publish(doc, sensor="S-pre")
    assert outcome_of(service, doc)["outcome"] == "called"
    assert not [r for r in emulator.requests() if r["path"] == "/api/v1/customers/C-PREFETCH"]


def test_crm_sync_command_pages_through_the_list(
    prefix: str, emulator: EmulatorHandle, redis_client: object
) -> None:
    http("PUT", f"{emulator.url}/_emulator/settings", {"synthetic_customers": 450})
    env = {
        "TRIPLINE__REDIS__URL": REDIS_URL,
        "TRIPLINE__REDIS__KEY_PREFIX": prefix,
        "TRIPLINE__CRM__BASE_URL": emulator.url,
        "PATH": "/usr/bin:/bin",
    }
    result = tripline_cli("crm-sync", env=env)
    assert result.returncode == 0, result.stderr
    shipped = 12
    assert result.stdout.strip() == f"cached {450 + shipped} customers"
    pages = [r for r in emulator.requests() if r["path"] == "/api/v1/customers"]
    assert len(pages) == 3  # 200 a page


def test_internal_dnc_list_and_dnd_and_invalid_phone_defer(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    service = make_service(TRIPLINE__HTTP__ADMIN_TOKEN="admin-token").start()
    emulator.add_customer("C-LISTED", phone="+14155550123")
    emulator.add_customer("C-DND", doNotDisturb=True)
    emulator.add_customer("C-BAD", phone="+1555")
    assert http("PUT", f"{service.url}/v1/admin/dnc/+1 415 555 0123")[0] == 401
    status, body = http("PUT", f"{service.url}/v1/admin/dnc/+1 415 555 0123", headers=ADMIN)
    assert (status, body["number"]) == (200, "+14155550123")
    assert http("GET", f"{service.url}/v1/admin/dnc", headers=ADMIN)[1]["numbers"] == [
        "+14155550123"
    ]
    assert http("PUT", f"{service.url}/v1/admin/dnc/12", headers=ADMIN)[0] == 400

    cases = {
        "C-LISTED": ("do_not_call", "internal_dnc_list"),
        "C-DND": ("do_not_disturb", "do_not_disturb"),
        "C-BAD": ("invalid_phone", None),
    }
    docs = {c: alert(customer=c, sensor=f"S-{c}") for c in cases}
    for customer, doc in docs.items():
        service.publish(doc, sensor=f"S-{customer}")
    for customer, (reason, rule) in cases.items():
        record = outcome_of(service, docs[customer])
        assert (record["outcome"], record["reason"]) == ("deferred", reason)
        facts = record["facts"]
        assert isinstance(facts, dict)
        assert facts["timezone"]
        assert facts["localTime"]
        if rule:
            assert facts["rule"] == rule
    assert emulator.callbacks() == []

    assert http("DELETE", f"{service.url}/v1/admin/dnc/+14155550123", headers=ADMIN)[0] == 200
    again = alert(customer="C-LISTED", sensor="S-again")
    service.publish(again, sensor="S-again")
    assert outcome_of(service, again)["outcome"] == "called"


def test_number_cap_holds_across_a_restart(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    emulator.add_customer("C-CAP")
    caps = {
        "TRIPLINE__COMPLY__NUMBER_CAPS": '["2/24h"]',
        "TRIPLINE__COMPLY__CUSTOMER_CAPS": '["10/24h"]',
    }
    first = make_service(**caps).start()
    docs = [alert(customer="C-CAP", sensor=f"S-cap-{n}") for n in range(2)]
    for doc in docs:
        first.publish(doc, sensor=str(doc["sensorId"]))
    assert [outcome_of(first, d)["outcome"] for d in docs] == ["called", "called"]
    first.stop()

    second = make_service(**caps).start()
    third = alert(customer="C-CAP", sensor="S-cap-3")
    second.publish(third, sensor="S-cap-3")
    record = outcome_of(second, third)
    assert (record["outcome"], record["reason"]) == ("suppressed", "number_cap")
    assert len(emulator.callbacks()) == 2


def test_called_records_carry_the_facts_and_the_safety_override(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    service = make_service(TRIPLINE__COMPLY__SAFETY_OVERRIDE_ALERT_TYPES='["co_alarm"]').start()
    emulator.add_customer("C-NIGHT", timezone=zone_outside_window())
    co = alert(customer="C-NIGHT", sensor="S-co", alert_type="co_alarm")
    temp = alert(customer="C-NIGHT", sensor="S-temp", alert_type="temp_high")
    service.publish(co, sensor="S-co")
    service.publish(temp, sensor="S-temp")
    record = outcome_of(service, co)
    assert record["outcome"] == "called"
    facts = record["facts"]
    assert isinstance(facts, dict)
    assert facts["override"] == "safety_override:co_alarm"
    assert outcome_of(service, temp)["reason"] == "outside_calling_window"


def test_dnc_command_adds_lists_and_removes(prefix: str) -> None:
    env = {
        "TRIPLINE__REDIS__URL": REDIS_URL,
        "TRIPLINE__REDIS__KEY_PREFIX": prefix,
        "PATH": "/usr/bin:/bin",
    }

    def dnc(*args: str) -> subprocess.CompletedProcess[str]:
        return tripline_cli("dnc", *args, env=env)

    assert dnc("add", "+44 20 7946 0123").stdout.strip() == "added +442079460123"
    assert dnc("list").stdout.split() == ["+442079460123"]
    assert dnc("add", "12345").returncode == 2
    assert dnc("remove", "+442079460123").returncode == 0
    assert dnc("remove", "+442079460123").returncode == 1
    assert dnc("list").stdout.split() == []
