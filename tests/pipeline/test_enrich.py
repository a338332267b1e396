"""Enrichment: the CRM document's contacts, refused when bad, and the cache's round trip."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.messages import Contact, Customer
from tripline.pipeline.enrich import customer_to_doc, parse_customer

BASE: dict[str, Any] = {
    "id": "C1",
    "name": "Ada",
    "phone": "+14155550100",
    "timezone": "America/Los_Angeles",
    "country": "US",
    "region": "US-CA",
}


def parsed(doc: dict[str, Any]) -> Customer:
    customer = parse_customer("C1", doc)
    assert isinstance(customer, Customer), customer
    return customer


def with_contacts(contacts: Any) -> dict[str, Any]:
    return {**BASE, "contacts": contacts}


@pytest.mark.parametrize(
    ("contacts", "expected"),
    [
        pytest.param(None, (), id="null-is-none"),
        pytest.param([], (), id="empty"),
        pytest.param(
            [{"name": " Bo ", "phone": " +14155550101 ", "role": "spouse", "timezone": "UTC"}],
            (Contact(name="Bo", phone="+14155550101", role="spouse", order=1, timezone="UTC"),),
            id="one-trimmed-order-defaults-to-position",
        ),
        pytest.param(
            [{"name": "Bo", "phone": "1"}, {"name": "Cy", "phone": "2"}],
            (
                Contact(name="Bo", phone="1", order=1),
                Contact(name="Cy", phone="2", order=2),
            ),
            id="positions-one-and-two",
        ),
        pytest.param(
            [
                {"name": "late", "phone": "1", "order": 5},
                {"name": "first", "phone": "2", "order": 1},
                {"name": "tie-a", "phone": "3", "order": 3},
                {"name": "tie-b", "phone": "4", "order": 3},
            ],
            (
                Contact(name="first", phone="2", order=1),
                Contact(name="tie-a", phone="3", order=3),
                Contact(name="tie-b", phone="4", order=3),
                Contact(name="late", phone="1", order=5),
            ),
            id="sorted-by-order-ties-stable",
        ),
        pytest.param(
            [{"name": "Bo", "phone": "1", "callConsent": False}],
            (Contact(name="Bo", phone="1", order=1, call_consent=False),),
            id="consent-revoked",
        ),
        pytest.param(
            [{"phone": "1", "name": None, "role": None}],
            (Contact(name="", phone="1", order=1),),
            id="absent-and-null-strings-are-empty",
        ),
        pytest.param(
            [{"name": "Bo", "phone": "1", "order": 0}],
            (Contact(name="Bo", phone="1", order=0),),
            id="order-zero",
        ),
        pytest.param(
            [{"name": str(i), "phone": str(i)} for i in range(10)],
            tuple(Contact(name=str(i), phone=str(i), order=i + 1) for i in range(10)),
            id="ten-is-the-most",
        ),
    ],
)
def test_contacts_are_read(contacts: Any, expected: tuple[Contact, ...]) -> None:
    assert parsed(with_contacts(contacts)).contacts == expected


def test_a_document_without_contacts_has_none() -> None:
    assert parsed(BASE).contacts == ()


@pytest.mark.parametrize(
    ("contacts", "problem"),
    [
        pytest.param({"name": "Bo"}, "contacts must be a list of at most 10", id="object"),
        pytest.param("Bo", "contacts must be a list", id="string"),
        pytest.param(
            [{"phone": str(i)} for i in range(11)], "contacts must be a list of at most 10", id="11"
        ),
        pytest.param([{"phone": "1"}, "Bo"], "contact 2: must be an object", id="not-an-object"),
        pytest.param([{"name": 7}], "contact 1: name must be a string", id="name-number"),
        pytest.param([{"phone": ["1"]}], "contact 1: phone must be a string", id="phone-list"),
        pytest.param(
            [{"role": "r" * 257}], "contact 1: role must be a string of at most 256", id="long-role"
        ),
        pytest.param([{"timezone": True}], "contact 1: timezone must be a string", id="tz-bool"),
        pytest.param(
            [{"order": "1"}], "contact 1: order must be a whole number", id="order-string"
        ),
        pytest.param([{"order": 1.0}], "contact 1: order must be a whole number", id="order-float"),
        pytest.param([{"order": True}], "contact 1: order must be a whole number", id="order-bool"),
        pytest.param(
            [{"order": -1}], "contact 1: order must be a whole number", id="order-negative"
        ),
        pytest.param(
            [{"order": 2**31}], "contact 1: order must be a whole number", id="order-huge"
        ),
        pytest.param(
            [{"callConsent": "no"}], "contact 1: callConsent must be true or false", id="consent"
        ),
        pytest.param(
            [{"phone": "1"}, {"phone": "2"}, {"callConsent": 0}],
            "contact 3: callConsent must be true or false",
            id="names-the-third",
        ),
    ],
)
def test_a_bad_contact_makes_the_document_bad(contacts: Any, problem: str) -> None:
    answer = parse_customer("C1", with_contacts(contacts))
    assert isinstance(answer, str)
    assert answer.startswith(problem), answer


def test_the_long_string_limit_is_the_customers() -> None:
    assert parsed(with_contacts([{"name": "n" * 256}])).contacts[0].name == "n" * 256


def test_a_customer_without_contacts_caches_as_before() -> None:
    doc = customer_to_doc(parsed(BASE))
    assert "contacts" not in doc
    assert set(doc) == {
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


def test_contacts_cache_under_the_crms_names() -> None:
    customer = parsed(
        with_contacts(
            [
                {
                    "name": "Bo",
                    "phone": "1",
                    "role": "son",
                    "order": 2,
                    "callConsent": False,
                    "timezone": "UTC",
                }
            ]
        )
    )
    assert customer_to_doc(customer)["contacts"] == [
        {
            "name": "Bo",
            "phone": "1",
            "role": "son",
            "order": 2,
            "callConsent": False,
            "timezone": "UTC",
        }
    ]


_TEXT = st.text(max_size=12)
_CONTACT = st.fixed_dictionaries(
    {},
    optional={
        "name": _TEXT,
        "phone": _TEXT,
        "role": _TEXT,
        "timezone": _TEXT,
        "order": st.integers(min_value=0, max_value=2**31 - 1),
        "callConsent": st.booleans(),
    },
)


@given(st.lists(_CONTACT, max_size=10), st.booleans(), st.booleans())
def test_the_cache_round_trips(contacts: list[dict[str, Any]], dnd: bool, consent: bool) -> None:
    customer = parsed({**with_contacts(contacts), "doNotDisturb": dnd, "callConsent": consent})
    assert len(customer.contacts) == len(contacts)
    orders = [c.order for c in customer.contacts]
    assert orders == sorted(orders)
    assert parse_customer("C1", customer_to_doc(customer)) == customer
