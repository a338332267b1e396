"""The last checks at the moment of dialing: an alert's age, and the customer's flags read fresh."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import orjson
import pytest

from tests.actors.helpers import FakeBackend, customer, intent
from tests.actors.test_dialer import Rig, settled
from tests.conftest import EmulatorHandle, alert, http, plain_alert, wait_for
from tripline.actors.dialing.gate import LastChecks
from tripline.actors.dialing.profiles import Profile, Profiles
from tripline.actors.dialing.records import Records
from tripline.adapters.crm import cache_doc, cached_profile
from tripline.conf.schema import CrmConfig
from tripline.messages import Contact, Customer, DialIntent, Priority, Reason
from tripline.pipeline.caps import CapRules
from tripline.pipeline.comply import ComplyRules
from tripline.service.controls import OperatorControls
from tripline.service.stats import Stats

AN_HOUR_AGO = datetime.fromtimestamp(time.time() - 3700, UTC).isoformat(timespec="seconds")


def crm(emulator: EmulatorHandle, max_age: float = 300.0) -> CrmConfig:
    return CrmConfig(base_url=emulator.url, max_profile_age_seconds=max_age, timeout_seconds=2.0)


def in_crm(emulator: EmulatorHandle, **fields: Any) -> None:
    """The intents' customer (tests.actors.helpers.customer) as the CRM knows it now."""
    known = customer()
    emulator.add_customer(known.customer_id, **{"phone": known.phone, "timezone": "UTC", **fields})


def cache(rig: Rig, profile: Customer, fetched_at: float) -> None:
    rig.client.set(rig.keys.customer(profile.customer_id), cache_doc(profile, fetched_at))


def history(rig: Rig, key: str) -> list[dict[str, Any]]:
    return [orjson.loads(h) for h in rig.client.lrange(rig.keys.history(key), 0, -1)]


def crm_reads(emulator: EmulatorHandle) -> int:
    return len(emulator.requests(f"/api/v1/customers/{customer().customer_id}"))


# --- an alert's age -------------------------------------------------------------------------


def test_an_alert_past_its_max_alert_age_rings_nobody_and_becomes_a_stale_task(rig: Rig) -> None:
    """A backlog replayed after an outage: accepted just now, raised by its sensor an hour ago."""
    backend = FakeBackend()
    dialer = rig.start(backend, max_alert_age_seconds={"normal": 3600})
    old, fresh = rig.accept(alert(timestamp=AN_HOUR_AGO), alert())
    dialer.tell(intent(old, Priority.NORMAL))
    dialer.tell(intent(fresh, Priority.NORMAL))
    rec = rig.wait(old, "taskId")
    assert (rec["outcome"], rec["reason"]) == ("deferred", "stale")
    assert "max_alert_age_seconds" in rec["detail"]
    rig.wait(fresh, "outcome", "called")
    wait_for(lambda: settled(dialer))
    assert [d.intent_id for d in backend.dials] == [fresh.idempotency_key]
    assert backend.tasks[0].reason == Reason.STALE


def test_the_last_checks_refuse_a_stale_call_and_end_a_stale_re_attempts_ladder() -> None:
    """The gate's own check, at the moment of dialing (the queue's is only the early one)."""
    now = time.time()
    checks = LastChecks(
        records=cast("Records", object()),  # a stale call touches no Redis
        rules=ComplyRules(),
        caps=CapRules(),
        controls=OperatorControls(),
        stats=Stats(),
        clock=lambda: now,
        tell=lambda _message: None,
        max_alert_age={Priority.HIGH: 7200.0},
    )
    old = plain_alert("K", timestamp=now - 7201)
    first = DialIntent(
        intent_id="K", alert=old, customer=customer(), priority=Priority.HIGH, enqueued_at=now
    )
    again = replace(first, attempt=3)
    sent = checks.send([(first, True), (again, True)])
    assert [(call[0].attempt, blocked.reason) for call, blocked in sent.blocked] == [
        (1, Reason.STALE)
    ]
    assert [(call[0].attempt, why.split(":")[0], task) for call, why, task in sent.ended] == [
        (3, "stale", True)
    ]
    assert sent.sent == []


# --- the customer's flags, read fresh -----------------------------------------------------


def test_a_dnd_set_in_the_crm_after_the_decision_is_honoured_at_dialing(
    rig: Rig, emulator: EmulatorHandle
) -> None:
    """The cached profile is older than max_profile_age: the CRM is read again, and says DND."""
    in_crm(emulator, doNotDisturb=True)
    cache(rig, customer(), fetched_at=time.time() - 600)
    backend = FakeBackend()
    dialer = rig.start(backend, crm=crm(emulator))
    (a,) = rig.accept(alert())
    dialer.tell(intent(a, Priority.HIGH))
    rec = rig.wait(a, "taskId")
    assert (rec["outcome"], rec["reason"]) == ("deferred", "do_not_disturb")
    facts = orjson.loads(rec["facts"])
    assert (facts["rule"], facts["checked"]) == ("do_not_disturb", "at_dialing")
    wait_for(lambda: settled(dialer))
    assert backend.dials == []
    assert crm_reads(emulator) == 1
    # The profile read at dialing is cached, with its time: the next call need not ask again.
    found = cached_profile("C", rig.client.get(rig.keys.customer("C")))
    assert found is not None
    assert found[0].do_not_disturb
    assert found[1] is not None
    assert time.time() - found[1] < 30


def test_a_profile_fresher_than_max_profile_age_is_dialed_on_without_asking_the_crm(
    rig: Rig, emulator: EmulatorHandle
) -> None:
    in_crm(emulator, doNotDisturb=True)  # changed since: within the age, by design unseen
    cache(rig, customer(), fetched_at=time.time() - 10)
    backend = FakeBackend()
    dialer = rig.start(backend, crm=crm(emulator))
    (a,) = rig.accept(alert())
    dialer.tell(intent(a, Priority.HIGH))
    rig.wait(a, "outcome", "called")
    wait_for(lambda: settled(dialer))
    assert crm_reads(emulator) == 0


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        pytest.param({"doNotCall": True}, "do_not_call", id="crm-dnc"),
        pytest.param({"callConsent": False}, "do_not_call", id="consent-revoked"),
        pytest.param({"phone": "+14155550199"}, "no_contact", id="the-number-is-not-theirs-now"),
    ],
)
def test_a_profile_without_a_reading_time_is_read_again(
    rig: Rig, emulator: EmulatorHandle, flags: dict[str, Any], reason: str
) -> None:
    """A profile cached before reading times were kept counts as old."""
    in_crm(emulator, **flags)
    legacy = orjson.loads(cache_doc(customer(), 0.0))
    del legacy["fetchedAt"]
    rig.client.set(rig.keys.customer("C"), orjson.dumps(legacy))
    backend = FakeBackend()
    dialer = rig.start(backend, crm=crm(emulator))
    (a,) = rig.accept(alert())
    dialer.tell(intent(a, Priority.HIGH))
    rec = rig.wait(a, "taskId")
    assert (rec["outcome"], rec["reason"]) == ("deferred", reason)
    wait_for(lambda: settled(dialer))
    assert backend.dials == []


def test_a_customer_the_crm_no_longer_knows_is_not_called(
    rig: Rig, emulator: EmulatorHandle
) -> None:
    backend = FakeBackend()
    dialer = rig.start(backend, crm=crm(emulator, max_age=0))  # 0: always read again
    (a,) = rig.accept(alert())
    dialer.tell(intent(a, Priority.HIGH))
    rec = rig.wait(a, "taskId")
    assert (rec["outcome"], rec["reason"]) == ("deferred", "no_contact")
    assert "no longer known to the CRM" in rec["detail"]
    assert backend.dials == []


def test_with_the_crm_down_the_call_goes_on_the_newest_flags_known_and_says_so(
    rig: Rig, emulator: EmulatorHandle
) -> None:
    """The documented fallback: a CRM outage does not become a call outage."""
    in_crm(emulator, doNotDisturb=True)  # unseen: the CRM cannot be asked
    http("PUT", f"{emulator.url}/_emulator/settings", {"crm_down": True})
    cache(rig, customer(), fetched_at=time.time() - 3600)
    backend = FakeBackend()
    dialer = rig.start(backend, crm=crm(emulator))
    (a, b) = rig.accept(alert(), alert())
    dialer.tell(intent(a, Priority.HIGH))
    rig.wait(a, "outcome", "called")
    steps = [h for h in history(rig, a.idempotency_key) if h["state"] == "profile_unverified"]
    assert len(steps) == 1
    assert "could not be asked" in steps[0]["profileUnverified"]
    # A stale cache whose own flags block is honoured, even with the CRM down.
    cache(rig, replace(customer(), do_not_call=True), fetched_at=time.time() - 3600)
    dialer.tell(intent(b, Priority.HIGH))
    rec = rig.wait(b, "taskId")
    assert (rec["outcome"], rec["reason"]) == ("deferred", "do_not_call")
    wait_for(lambda: settled(dialer))
    assert [d.intent_id for d in backend.dials] == [a.idempotency_key]


LADDER = Customer(
    customer_id="C",
    name="Acme",
    phone="+1 415-555-0100",  # the CRM's formatting: the call goes to its E.164 form
    timezone="UTC",
    do_not_disturb=False,
    do_not_call=False,
    contacts=(
        Contact(name="Manager", phone="+14155550101", order=1, call_consent=False),
        Contact(name="Guard", phone="+14155550102", order=2),
    ),
)


@pytest.mark.parametrize(
    ("phone", "attempt", "profile", "reason"),
    [
        pytest.param("+14155550100", 1, LADDER, None, id="the-customers-own-number"),
        pytest.param("+14155550102", 3, LADDER, None, id="a-contact-still-listed"),
        pytest.param("+14155550101", 2, LADDER, Reason.DO_NOT_CALL, id="contact-consent-gone"),
        pytest.param("+14155550199", 2, LADDER, Reason.NO_CONTACT, id="contact-removed"),
        pytest.param(
            "+14155550102",
            2,
            replace(LADDER, do_not_disturb=True),
            Reason.DO_NOT_DISTURB,
            id="account-dnd-holds-for-every-contact",
        ),
    ],
)
def test_the_fresh_profile_is_judged_through_the_contact_about_to_ring(
    phone: str, attempt: int, profile: Customer, reason: Reason | None
) -> None:
    profiles = Profiles(conf=CrmConfig(), records=cast("Records", object()), clock=time.time)
    call = DialIntent(
        intent_id="K",
        alert=plain_alert("K"),
        customer=replace(customer(), phone=phone),
        priority=Priority.CRITICAL,
        enqueued_at=0.0,
        attempt=attempt,
    )
    verdict = asyncio.run(
        profiles.flags(call, {"C": Profile(profile)}, now=time.time(), rules=ComplyRules())
    )
    assert (verdict.reason if verdict else None) == reason
