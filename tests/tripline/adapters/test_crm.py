"""The CRM client asks for exactly the customer it was given: the id is one path segment."""

from __future__ import annotations

import asyncio

import aiohttp
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
