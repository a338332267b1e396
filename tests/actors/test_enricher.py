"""The enricher: profiles from the cache, the do-not-call list, compliance, then the dialer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import orjson
import pykka
import pytest
import redis

from tests.actors.helpers import FakeDialer, accept, customer
from tests.conftest import REDIS_URL, EmulatorHandle, alert, ask, wait_for
from tripline.actors.enricher import Enricher
from tripline.adapters.store import Keys
from tripline.conf.schema import CrmConfig, RedisConfig
from tripline.messages import (
    Alert,
    DialIntent,
    EnrichBatch,
    Ping,
    Reason,
    StatusQuery,
    TaskIntent,
    WorkBatch,
)
from tripline.pipeline.calling_window import CallingRules, DayRule
from tripline.pipeline.comply import ComplyRules
from tripline.pipeline.enrich import customer_to_doc

ALWAYS = ComplyRules(
    calling=CallingRules(default=DayRule(weekdays=(0, 1440), saturday=(0, 1440), sunday=(0, 1440)))
)


@pytest.fixture(autouse=True)
def _stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


def cache(client: redis.Redis, keys: Keys, customer_id: str, phone: str) -> None:
    profile = replace(customer(), customer_id=customer_id, phone=phone)
    client.set(keys.customer(customer_id), orjson.dumps(customer_to_doc(profile)))


class Enriched:
    """An enricher (CRM unreachable unless given: the cache answers) before a recording dialer."""

    def __init__(self, keys: Keys, crm_url: str = "http://127.0.0.1:9") -> None:
        self.dialer = FakeDialer.start()
        self.actor = Enricher.start(
            conf=CrmConfig(base_url=crm_url, sync_interval_seconds=0),
            redis_conf=RedisConfig(url=REDIS_URL),
            keys=keys,
            rules=ALWAYS,
            dialer=lambda: self.dialer,
        )

    def decide(self, a: Alert) -> DialIntent | TaskIntent:
        """Enrich one alert; what the dialer was handed for it."""
        self.actor.tell(EnrichBatch(alerts=(a,)))

        def handed() -> list[DialIntent | TaskIntent]:
            told = ask(self.dialer, Ping())
            works = [w for m in told if isinstance(m, WorkBatch) for w in m.works]
            return [w for w in works if w.alert.idempotency_key == a.idempotency_key]

        wait_for(handed)
        (work,) = handed()
        return work


def reason(work: DialIntent | TaskIntent) -> Reason | None:
    return work.reason if isinstance(work, TaskIntent) else None


def test_a_known_customers_number_is_checked_in_the_profiles_round_trip(
    redis_client: redis.Redis, prefix: str, batches: list[list[str]]
) -> None:
    keys = Keys(prefix)
    cache(redis_client, keys, "CU-1", "+14155550111")
    redis_client.sadd(keys.dnc(), "+14155550111")
    enriched = Enriched(keys)
    first, second = accept(redis_client, keys, alert(customer="CU-1"), alert(customer="CU-1"))
    assert reason(enriched.decide(first)) == Reason.DO_NOT_CALL
    # New to this process: the profile first, then its number against the list.
    assert batches == [["MGET"], ["SMISMEMBER"]]
    assert reason(enriched.decide(second)) == Reason.DO_NOT_CALL
    assert batches[2:] == [["MGET", "SMISMEMBER"]]  # known: one round trip


def test_a_number_that_changed_is_checked_again(
    redis_client: redis.Redis, prefix: str, batches: list[list[str]]
) -> None:
    keys = Keys(prefix)
    cache(redis_client, keys, "CU-2", "+14155550122")
    enriched = Enriched(keys)
    first, second, third = accept(redis_client, keys, *[alert(customer="CU-2") for _ in range(3)])
    assert isinstance(enriched.decide(first), DialIntent)
    # The customer's new number is on the list; the one remembered is not.
    cache(redis_client, keys, "CU-2", "+14155550133")
    redis_client.sadd(keys.dnc(), "+14155550133")
    assert reason(enriched.decide(second)) == Reason.DO_NOT_CALL
    assert batches[-2:] == [["MGET", "SMISMEMBER"], ["SMISMEMBER"]]
    # The same number joining the list meanwhile is seen at once, in the one round trip.
    redis_client.srem(keys.dnc(), "+14155550133")
    assert isinstance(enriched.decide(third), DialIntent)
    assert batches[-1] == ["MGET", "SMISMEMBER"]


def test_documents_naming_other_customers_leave_the_crm_breaker_closed(
    redis_client: redis.Redis, prefix: str, emulator: EmulatorHandle
) -> None:
    keys = Keys(prefix)
    for n in range(7):  # more than the breaker's threshold of failures in a row
        emulator.add_customer(f"CU-MIS-{n}", id="CU-ELSEWHERE")
    emulator.add_customer("CU-REAL")
    enriched = Enriched(keys, crm_url=emulator.url)
    for n in range(7):
        (mismatch,) = accept(redis_client, keys, alert(customer=f"CU-MIS-{n}"))
        work = enriched.decide(mismatch)
        assert isinstance(work, TaskIntent)
        assert work.reason == Reason.NO_CONTACT  # the CRM answered: it has no record of them
        assert "'CU-ELSEWHERE', not 'CU-MIS-" in work.detail
    (critical,) = accept(redis_client, keys, alert(customer="CU-REAL"))
    call = enriched.decide(critical)
    assert isinstance(call, DialIntent), call
    assert emulator.requests("/api/v1/customers/CU-REAL")
    assert ask(enriched.actor, StatusQuery())["crm"]["breaker"] == "closed"


def test_ids_with_a_query_string_do_not_open_the_crm_breaker(
    redis_client: redis.Redis, prefix: str, emulator: EmulatorHandle
) -> None:
    # Sent unencoded, each fetched CUST-DEMO-2's document: seven CRM "failures", an open breaker
    # and the next uncached customer's critical alert deferred as crm_unavailable.
    keys = Keys(prefix)
    emulator.add_customer("CU-REAL")
    enriched = Enriched(keys, crm_url=emulator.url)
    for n in range(7):
        (odd,) = accept(redis_client, keys, alert(customer=f"CUST-DEMO-2?n={n}"))
        assert reason(enriched.decide(odd)) == Reason.NO_CONTACT
    (critical,) = accept(redis_client, keys, alert(customer="CU-REAL"))
    assert isinstance(enriched.decide(critical), DialIntent)
    assert [r["rawPath"] for r in emulator.requests()][-1] == "/api/v1/customers/CU-REAL"


def test_an_id_no_url_path_can_carry_is_an_unknown_customer(
    redis_client: redis.Redis, prefix: str, emulator: EmulatorHandle
) -> None:
    keys = Keys(prefix)
    enriched = Enriched(keys, crm_url=emulator.url)
    (dots,) = accept(redis_client, keys, alert(customer=".."))
    work = enriched.decide(dots)
    assert isinstance(work, TaskIntent)
    assert work.reason == Reason.NO_CONTACT
    assert "cannot be a URL path segment" in work.detail
    assert emulator.requests() == []
