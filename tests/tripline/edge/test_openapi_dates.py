"""The ledger's date parameters as the OpenAPI document declares them: only dates it reads."""

from __future__ import annotations

import re

import pytest

from tripline.adapters.ledger.query import parse_instant
from tripline.edge import openapi


def _date_pattern(name: str) -> str:
    ledger = openapi.document()["paths"]["/v1/ledger"]["get"]
    (param,) = [p for p in ledger["parameters"] if p["name"] == name]
    pattern: str = param["schema"]["pattern"]
    return pattern


@pytest.mark.parametrize("name", ["from", "to"])
@pytest.mark.parametrize(
    ("value", "declared"),
    [
        ("2026-11-27", True),
        ("0001-01-01", True),
        ("9999-12-28", True),
        # Python has no year 0: a value the document allowed was refused (schemathesis' find).
        ("0000-01-01", False),
        ("2026-13-01", False),
    ],
)
def test_a_declared_date_is_one_the_ledger_reads(name: str, value: str, declared: bool) -> None:
    assert bool(re.fullmatch(_date_pattern(name), value)) is declared
    if declared:
        assert parse_instant(value) == f"{value}T00:00:00.000Z"
