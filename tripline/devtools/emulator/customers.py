"""The CRM's customers: the demo ones, and synthetic CUST-<n> for load."""

from __future__ import annotations

import re
from typing import Any

# Zones three to five hours apart: whenever the demo runs, some customers are inside 08-20 local.
_ZONES = (
    "Pacific/Auckland",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Europe/Berlin",
    "Europe/London",
    "America/Sao_Paulo",
    "America/New_York",
    "America/Los_Angeles",
)
_PHONES = (
    "+6493091234",
    "+81312345678",
    "+919876543210",
    "+493012345678",
    "+442079460123",
    "+5511912345678",
    "+12125550199",
    "+14155550100",
)
_SYNTHETIC = re.compile(r"^CUST-(\d{1,9})$")


_COUNTRIES = ("NZ", "JP", "IN", "DE", "GB", "BR", "US", "US")
_REGIONS = ("", "", "", "", "", "", "US-NY", "US-CA")
# Demo sites with a contact ladder: the site's own line first, then its manager.
_MANAGERS = {
    3: ("Priya Raman", "+919812345670"),
    4: ("Jonas Weber", "+4915123456789"),
    7: ("Maria Alvarez", "+12125550143"),
}


def _customer(
    cid: str,
    name: str,
    phone: str,
    zone: str,
    *,
    country: str = "US",
    region: str = "",
    **flags: bool,
) -> dict[str, Any]:
    return {
        "id": cid,
        "name": name,
        "phone": phone,
        "timezone": zone,
        "country": country,
        "region": region,
        "doNotDisturb": flags.get("dnd", False),
        "doNotCall": flags.get("dnc", False),
        "callConsent": True,
    }


def _contact(name: str, phone: str, role: str, order: int, zone: str) -> dict[str, Any]:
    return {
        "name": name,
        "phone": phone,
        "role": role,
        "order": order,
        "callConsent": True,
        "timezone": zone,
    }


def check_contacts(contacts: Any) -> str:  # noqa: ANN401, PLR0911 - whatever the document held
    """The problem with a customer's `contacts` list, or "".

    Each is {name, phone, order, callConsent} with optional role and timezone strings.
    """
    if not isinstance(contacts, list):
        return "contacts must be a list"
    for n, contact in enumerate(contacts):
        if not isinstance(contact, dict):
            return f"contacts[{n}] must be an object"
        for key in ("name", "phone"):
            if not isinstance(contact.get(key), str):
                return f"contacts[{n}].{key} must be a string"
        for key in ("role", "timezone"):
            if key in contact and not isinstance(contact[key], str):
                return f"contacts[{n}].{key} must be a string"
        if type(contact.get("order")) is not int:
            return f"contacts[{n}].order must be an integer"
        if type(contact.get("callConsent")) is not bool:
            return f"contacts[{n}].callConsent must be true or false"
    return ""


def demo_customers() -> dict[str, dict[str, Any]]:
    """The shipped customers: eight callable ones around the globe, and four that are not."""
    out = {}
    for n, (zone, phone) in enumerate(zip(_ZONES, _PHONES, strict=True), 1):
        out[f"CUST-DEMO-{n}"] = _customer(
            f"CUST-DEMO-{n}",
            f"Demo Site {n}",
            phone,
            zone,
            country=_COUNTRIES[n - 1],
            region=_REGIONS[n - 1],
        )
        if n in _MANAGERS:
            manager, mobile = _MANAGERS[n]
            out[f"CUST-DEMO-{n}"]["contacts"] = [
                _contact(f"Demo Site {n}", phone, "site", 1, zone),
                _contact(manager, mobile, "site manager", 2, zone),
            ]
    out["CUST-DNC"] = _customer(
        "CUST-DNC", "Do Not Call Ltd", "+12015550123", "America/New_York", region="US-NJ", dnc=True
    )
    out["CUST-DND"] = _customer(
        "CUST-DND", "Quiet Hours Inc", "+12015550199", "America/New_York", region="US-NJ", dnd=True
    )
    out["CUST-NOPHONE"] = _customer(
        "CUST-NOPHONE", "No Phone Co", "", "Europe/London", country="GB"
    )
    out["CUST-BADPHONE"] = _customer(
        "CUST-BADPHONE", "Bad Phone Co", "+15551234567", "America/Chicago", region="US-IL"
    )
    return out


def synthetic_customer(customer_id: str) -> dict[str, Any] | None:
    """Customers CUST-<n> of a simulated fleet: phone and zone derived from n."""
    match = _SYNTHETIC.match(customer_id)
    if match is None:
        return None
    n = int(match.group(1))
    k = n % len(_ZONES)
    return _customer(
        customer_id,
        f"Fleet Customer {n}",
        _PHONES[k],
        _ZONES[k],
        country=_COUNTRIES[k],
        region=_REGIONS[k],
    )
