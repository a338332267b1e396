"""Enrichment: turn a CRM (or cache) document into a Customer, refusing what does not fit."""

from __future__ import annotations

import re
from typing import Any

from tripline.messages import Contact, Customer

_MAX = 256
_MAX_CONTACTS = 10
_MAX_ORDER = 2**31 - 1
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
    strings = _strings(doc, ("name", "phone", "timezone", "country", "region"))
    if isinstance(strings, str):
        return strings
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
    contacts = parse_contacts(doc.get("contacts"))
    if isinstance(contacts, str):
        return contacts
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
        contacts=contacts,
    )


def parse_contacts(raw: Any) -> tuple[Contact, ...] | str:  # noqa: ANN401
    """Read the document's optional `contacts`: further people the re-attempt ladder may call.

    Each is `{name, phone, role, order, callConsent, timezone}`, every field optional, strings
    held to the same limit as the customer's. `order` defaults to the contact's position (1 for
    the first: the customer's own phone is 0). One bad contact makes the whole document bad, as
    any other bad field does: calling down a list we only half understood could ring the wrong
    person first. Sorted by order, ties kept in the CRM's order.

    Returns:
        The contacts, or a sentence naming the bad one and what is wrong with it.
    """
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > _MAX_CONTACTS:
        return f"contacts must be a list of at most {_MAX_CONTACTS} objects"
    contacts: list[Contact] = []
    for position, item in enumerate(raw, start=1):
        contact = _contact(item, position)
        if isinstance(contact, str):
            return f"contact {position}: {contact}"
        contacts.append(contact)
    return tuple(sorted(contacts, key=lambda c: c.order))


def _contact(item: Any, position: int) -> Contact | str:  # noqa: ANN401
    if not isinstance(item, dict):
        return "must be an object"
    strings = _strings(item, ("name", "phone", "role", "timezone"))
    if isinstance(strings, str):
        return strings
    order = item.get("order", position)
    if isinstance(order, bool) or not isinstance(order, int) or not 0 <= order <= _MAX_ORDER:
        return f"order must be a whole number from 0 to {_MAX_ORDER}"
    consent = item.get("callConsent", True)
    if not isinstance(consent, bool):
        return "callConsent must be true or false"
    return Contact(
        name=strings["name"],
        phone=strings["phone"],
        role=strings["role"],
        order=order,
        call_consent=consent,
        timezone=strings["timezone"],
    )


def _strings(doc: dict[str, Any], names: tuple[str, ...]) -> dict[str, str] | str:
    """The named fields, trimmed ('' when absent or null), or what is wrong with one."""
    strings: dict[str, str] = {}
    for name in names:
        value = doc.get(name) or ""
        if not isinstance(value, str) or len(value) > _MAX:
            return f"{name} must be a string of at most {_MAX} characters"
        strings[name] = value.strip()
    return strings


def names_another(customer_id: str, doc: dict[str, Any]) -> str:
    """Say so when the document is another customer's ('' when it is this one's or names none)."""
    if str(doc.get("id", customer_id)) != customer_id:
        return f"CRM answered for customer {doc.get('id')!r}, not {customer_id!r}"
    return ""


def customer_to_doc(customer: Customer) -> dict[str, Any]:
    """The cached form of a customer (the CRM's field names); parse_customer reads it back.

    `contacts` is written only when there are some, so a customer without any caches as it
    did before contacts existed.
    """
    doc: dict[str, Any] = {
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
    if customer.contacts:
        doc["contacts"] = [
            {
                "name": contact.name,
                "phone": contact.phone,
                "role": contact.role,
                "order": contact.order,
                "callConsent": contact.call_consent,
                "timezone": contact.timezone,
            }
            for contact in customer.contacts
        ]
    return doc
