"""Enrichment: turn a CRM (or cache) document into a Customer, refusing what does not fit."""

from __future__ import annotations

from typing import Any

from messages import Customer

_MAX = 256


def parse_customer(customer_id: str, doc: Any) -> Customer | str:  # noqa: ANN401
    """Read a CRM customer document.

    Args:
        customer_id: the id we asked for (the document must not name another one).
        doc: the decoded JSON.

    Returns:
        The customer, or a sentence saying what is wrong with the document.
    """
    if not isinstance(doc, dict):
        return "customer document is not an object"
    if str(doc.get("id", customer_id)) != customer_id:
        return f"CRM answered for customer {doc.get('id')!r}, not {customer_id!r}"
    strings = {}
    for name in ("name", "phone", "timezone"):
        value = doc.get(name, "")
        if value is None:
            value = ""
        if not isinstance(value, str) or len(value) > _MAX:
            return f"{name} must be a string of at most {_MAX} characters"
        strings[name] = value.strip()
    flags = {}
    for name in ("doNotDisturb", "doNotCall"):
        value = doc.get(name, False)
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
    )


def customer_to_doc(customer: Customer) -> dict[str, Any]:
    """The cached form of a customer (the CRM's field names)."""
    return {
        "id": customer.customer_id,
        "name": customer.name,
        "phone": customer.phone,
        "timezone": customer.timezone,
        "doNotDisturb": customer.do_not_disturb,
        "doNotCall": customer.do_not_call,
    }
