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
