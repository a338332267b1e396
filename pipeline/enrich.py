"""Enrichment: turn a CRM (or cache) document into a Customer, refusing what does not fit."""

from __future__ import annotations

import re
from typing import Any

from tripline.messages import Customer

_MAX = 256
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_REGION = re.compile(r"^([A-Z]{2}-)?[A-Z0-9]{1,3}$")


def parse_customer(customer_id: str, doc: Any) -> Customer | str:  # noqa: ANN401, PLR0911
    """Read a CRM customer document.

    Args:
        customer_id: the id we asked for (the document must not name another one).
        doc: the decoded JSON.

    Returns:
        The customer, or a sentence saying what is wrong with the document.
    """
    if not isinstance(doc, dict):
        return "customer document is not an object"
    other = names_another(customer_id, doc)
    if other:
        return other
    strings: dict[str, str] = {}
    for name in ("name", "phone", "timezone", "country", "region"):
        value = doc.get(name) or ""
        if not isinstance(value, str) or len(value) > _MAX:
            return f"{name} must be a string of at most {_MAX} characters"
        strings[name] = value.strip()
    country, region = strings["country"].upper(), strings["region"].upper()
    if country and not _COUNTRY.match(country):
        return "country must be an ISO 3166-1 alpha-2 code"
    if region and not _REGION.match(region):
        return "region must be an ISO 3166-2 code such as US-LA"
    if region and "-" not in region and country:
        region = f"{country}-{region}"
    flags: dict[str, bool] = {}
    for name, default in (("doNotDisturb", False), ("doNotCall", False), ("callConsent", True)):
        value = doc.get(name, default)
        if not isinstance(value, bool):
            return f"{name} must be true or false"
        flags[name] = value
    return Customer(
        customer_id=customer_id,
        name=strings["name"],
        phone=strings["phone"],
        timezone=strings["timezone"],
        do_not_disturb=flags["doNotDisturb"],
        do_not_call=flags["doNotCall"],
        country=country,
        region=region,
        call_consent=flags["callConsent"],
    )


def names_another(customer_id: str, doc: dict[str, Any]) -> str:
    """Say so when the document is another customer's ('' when it is this one's or names none)."""
    if str(doc.get("id", customer_id)) != customer_id:
        return f"CRM answered for customer {doc.get('id')!r}, not {customer_id!r}"
    return ""


def customer_to_doc(customer: Customer) -> dict[str, Any]:
    """The cached form of a customer (the CRM's field names)."""
    return {
        "id": customer.customer_id,
        "name": customer.name,
        "phone": customer.phone,
        "timezone": customer.timezone,
        "country": customer.country,
        "region": customer.region,
        "doNotDisturb": customer.do_not_disturb,
        "doNotCall": customer.do_not_call,
        "callConsent": customer.call_consent,
    }
