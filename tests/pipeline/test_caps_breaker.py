"""Caps parsing and the CRM circuit breaker."""

from __future__ import annotations

import pytest

from tripline.pipeline.breaker import Breaker, BreakerState, allow, record
from tripline.pipeline.caps import Cap, CapRules, cap_args, parse_cap


@pytest.mark.parametrize(
    ("text", "cap"),
    [
        ("3/24h", Cap(3, 86400)),
        ("2/1h", Cap(2, 3600)),
        ("10/30m", Cap(10, 1800)),
        ("1/7d", Cap(1, 604800)),
        ("3 per day", None),
        ("0/1h", None),
        ("3/h", None),
        ("3/24x", None),
        ("5/30s", Cap(5, 30)),  # the seconds unit
        ("1/1s", Cap(1, 1)),  # the least of each
        (" 3/24h ", Cap(3, 86400)),  # spaces around
        ("x/24h", None),  # a count that is not a number
        ("-1/24h", None),
        ("3/2xh", None),  # a window that is not a number
        ("3/0h", None),  # an empty window
        ("3/05h", Cap(3, 18000)),  # a leading zero is read as decimal, not as a zero window
        ("3/", None),
        ("3", None),
        ("/24h", None),
        ("", None),
    ],
)
def test_parse_cap(text: str, cap: Cap | None) -> None:
    assert parse_cap(text) == cap


def test_a_cap_prints_in_its_config_form_in_seconds() -> None:
    assert str(Cap(3, 86400)) == "3/86400s"
    assert parse_cap(str(Cap(3, 86400))) == Cap(3, 86400)


def test_cap_rules_hold_no_cap_by_default() -> None:
    assert (CapRules().number, CapRules().customer) == ((), ())
    rules = CapRules(number=(Cap(3, 86400),), customer=(Cap(1, 60),))
    assert (rules.number, rules.customer) == ((Cap(3, 86400),), (Cap(1, 60),))


def test_cap_args_are_ms_pairs() -> None:
    assert cap_args((Cap(3, 86400), Cap(1, 60)), now=1.5, member="k") == [
        1500,
        "k",
        2,
        3,
        86_400_000,
        1,
        60_000,
    ]


def test_breaker_opens_after_threshold_then_probes_once() -> None:
    b = Breaker()
    for n in range(3):
        b, ok = allow(b, now=n, cool_off=10)
        assert ok
        b = record(b, ok=False, now=n, threshold=3)
    assert b.state == BreakerState.OPEN
    b, ok = allow(b, now=5, cool_off=10)
    assert not ok
    b, ok = allow(b, now=13, cool_off=10)
    assert ok
    assert b.state == BreakerState.HALF_OPEN
    assert record(b, ok=False, now=13, threshold=3).state == BreakerState.OPEN
    assert record(b, ok=True, now=13, threshold=3) == Breaker()
