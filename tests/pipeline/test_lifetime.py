"""A record's lifetime: the record TTL past its last obligation, never less than the TTL."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.pipeline.lifetime import keep_seconds

TTL = 86400
NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("until", "seconds"),
    [
        pytest.param(NOW, TTL, id="a-task-due-now-lives-the-ttl-from-now"),
        pytest.param(NOW - 3600, TTL, id="an-obligation-past-never-shortens-it"),
        pytest.param(NOW + 62 * 3600, 62 * 3600 + TTL, id="friday-19h-to-monday-9h"),
        pytest.param(NOW + 0.2, 1 + TTL, id="rounded-up-to-a-whole-second"),
    ],
)
def test_a_record_is_kept_the_ttl_past_its_last_obligation(until: float, seconds: int) -> None:
    assert keep_seconds(now=NOW, until=until, ttl=TTL) == seconds


@given(
    ahead=st.floats(min_value=-1e9, max_value=1e9, allow_nan=False),
    ttl=st.integers(min_value=3600, max_value=10**8),
)
def test_never_less_than_the_ttl_nor_than_the_ttl_past_the_obligation(
    ahead: float, ttl: int
) -> None:
    until = NOW + ahead
    seconds = keep_seconds(now=NOW, until=until, ttl=ttl)
    assert seconds >= ttl
    assert seconds >= (until - NOW) + ttl  # the obligation as floats hold it
    assert seconds <= max(ttl, math.ceil(until - NOW) + ttl)  # and not longer than that
