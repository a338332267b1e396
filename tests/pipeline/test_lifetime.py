"""A record's lifetime: the record TTL past its last obligation, never less than the TTL."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.pipeline.lifetime import ACCEPT_SLACK, accept_ttl, keep_seconds, must_keep

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


@pytest.mark.parametrize(
    ("ttl", "given"),
    [(86400, 86400 + 600), (3600, 3600 + 600), (5, 5), (60, 70)],
)
def test_acceptance_gives_a_slack_past_the_ttl_a_tiny_test_ttl_almost_none(
    ttl: int, given: int
) -> None:
    assert accept_ttl(ttl) == given


@pytest.mark.parametrize(
    ("after", "ttl", "keep"),
    [
        pytest.param(0, TTL, False, id="a-task-due-at-once-is-covered"),
        pytest.param(ACCEPT_SLACK - 60, TTL, False, id="within-the-slack-less-a-margin"),
        pytest.param(ACCEPT_SLACK - 59, TTL, True, id="past-it"),
        pytest.param(62 * 3600, TTL, True, id="monday-morning"),
        pytest.param(0, 5, True, id="a-test-ttl-has-no-slack-to-rely-on"),
    ],
)
def test_an_obligation_past_what_acceptance_gave_needs_keeping(
    after: float, ttl: int, keep: bool
) -> None:
    assert must_keep(accepted_at=NOW, until=NOW + after, ttl=ttl) == keep


@given(
    after=st.floats(min_value=-1e6, max_value=1e9, allow_nan=False),
    ttl=st.integers(min_value=1, max_value=10**8),
)
def test_what_is_not_kept_is_covered_by_acceptance(after: float, ttl: int) -> None:
    """The promise: the record lives `ttl` past every obligation, kept or not."""
    until = NOW + after
    if not must_keep(accepted_at=NOW, until=until, ttl=ttl):
        assert NOW + accept_ttl(ttl) >= until + ttl + 60 - 1e-6  # with the margin to spare
