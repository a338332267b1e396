"""The CRM client asks for exactly the customer it was given: the id is one path segment."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest

from tests.conftest import EmulatorHandle
from tripline.adapters import crm
from tripline.messages import Customer

# The id, and the path the CRM must see for it: every reserved character percent-encoded, so no
# id can climb out of /api/v1/customers/, start a query, cut the URL at a fragment, or stand for
# another id once decoded.
SEGMENTS = [
    pytest.param("CUST-DEMO-1", "CUST-DEMO-1", id="plain"),
    pytest.param("a/b", "a%2Fb", id="slash"),
    pytest.param(
        "../../../_emulator/requests", "..%2F..%2F..%2F_emulator%2Frequests", id="traversal"
    ),
    pytest.param("...", "...", id="three-dots"),
    pytest.param("CUST-DEMO-2?n=0", "CUST-DEMO-2%3Fn%3D0", id="query"),
    pytest.param("C#1", "C%231", id="fragment"),
    pytest.param("50%", "50%25", id="percent"),
    pytest.param("%2F", "%252F", id="encoded-slash"),
    pytest.param("a b", "a%20b", id="space"),
    pytest.param("kü/日本", "k%C3%BC%2F%E6%97%A5%E6%9C%AC", id="non-ascii"),
]


def fetch(emulator: EmulatorHandle, customer_id: str) -> Customer | None:
    async def go() -> Customer | None:
        async with aiohttp.ClientSession() as http:
            return await crm.fetch_customer(http, emulator.url, customer_id)

    return asyncio.run(go())


@pytest.mark.parametrize(("customer_id", "segment"), SEGMENTS)
def test_the_id_is_sent_as_one_encoded_segment(
    emulator: EmulatorHandle, customer_id: str, segment: str
) -> None:
    emulator.add_customer(customer_id, name="Odd Id Ltd")
    found = fetch(emulator, customer_id)
    assert found is not None
    assert (found.customer_id, found.name) == (customer_id, "Odd Id Ltd")
    assert [r["rawPath"] for r in emulator.requests()] == [f"/api/v1/customers/{segment}"]


def test_an_unknown_odd_id_is_not_found_rather_than_another_customer(
    emulator: EmulatorHandle,
) -> None:
    # Unencoded, these reached CUST-DEMO-2 (a mismatching document) and /api/v1/customers.
    assert fetch(emulator, "CUST-DEMO-2?n=0") is None
    assert fetch(emulator, "CUST-DEMO-2#x") is None
    assert [r["status"] for r in emulator.requests()] == [404, 404]


@pytest.mark.parametrize("customer_id", [".", "..", ""])
def test_an_id_no_path_segment_can_carry_is_never_sent(
    emulator: EmulatorHandle, customer_id: str
) -> None:
    # Percent-encoded or not, servers and proxies resolve "." and ".." segments (RFC 3986 5.2.4,
    # WHATWG URL): whatever came back would be about some other resource.
    with pytest.raises(crm.UnusableRecordError, match="path segment"):
        fetch(emulator, customer_id)
    assert emulator.requests() == []


def test_a_document_naming_another_customer_is_no_record_of_this_one(
    emulator: EmulatorHandle,
) -> None:
    emulator.add_customer("C-ASKED", id="C-OTHER")
    with pytest.raises(crm.UnusableRecordError, match="'C-OTHER', not 'C-ASKED'") as caught:
        fetch(emulator, "C-ASKED")
    assert not isinstance(caught.value, crm.CrmUnavailableError)  # the CRM did answer


PROFILE = Customer(
    customer_id="C-1",
    name="N",
    phone="+14155550100",
    timezone="UTC",
    do_not_disturb=True,
    do_not_call=False,
)


@pytest.mark.parametrize(
    ("stamp", "read_at"),
    [
        pytest.param(1_800_000_000.25, 1_800_000_000.25, id="as-written"),
        pytest.param("1800000000", None, id="a-string-is-no-time"),
        pytest.param(True, None, id="a-bool-is-no-time"),
        pytest.param(None, None, id="null"),
        pytest.param([1], None, id="a-list"),
        pytest.param(-5, -5.0, id="negative-reads-as-old"),
    ],
)
def test_a_cached_profile_says_when_the_crm_answered_or_that_it_is_not_known(
    stamp: object, read_at: float | None
) -> None:
    doc = orjson.loads(crm.cache_doc(PROFILE, 0.0))
    doc["fetchedAt"] = stamp
    found = crm.cached_profile("C-1", orjson.dumps(doc))
    assert found is not None
    assert found[0] == PROFILE  # the flags read back whatever the time says
    assert found[1] == read_at


def test_a_time_beyond_a_float_makes_the_cached_document_unreadable_so_the_crm_is_asked() -> None:
    blob = crm.cache_doc(PROFILE, 0.0).replace(b'"fetchedAt":0.0', b'"fetchedAt":1e400')
    assert b"1e400" in blob
    assert crm.cached_profile("C-1", blob) is None


def test_a_profile_cached_before_times_were_kept_reads_with_none() -> None:
    doc = orjson.loads(crm.cache_doc(PROFILE, 5.0))
    del doc["fetchedAt"]
    assert crm.cached_profile("C-1", orjson.dumps(doc)) == (PROFILE, None)
    assert crm.from_cache("C-1", orjson.dumps(doc)) == PROFILE
    assert crm.cached_profile("C-1", b"{not json") is None
    assert crm.cached_profile("C-2", orjson.dumps(doc)) is None  # another customer's document
