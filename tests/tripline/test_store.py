"""Record timestamps: iso() against the standard library, including millisecond rounding."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.store import iso


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1795775895.978, "2026-11-27T10:38:15.978Z"),
        (1795775895.9996, "2026-11-27T10:38:16.000Z"),  # rounds into the next second
        (1795775895.0004, "2026-11-27T10:38:15.000Z"),
    ],
)
def test_iso_table(epoch: float, expected: str) -> None:
    assert iso(epoch) == expected


@given(st.integers(min_value=0, max_value=4_102_444_800_000))
def test_iso_matches_datetime_for_any_millisecond(ms: int) -> None:
    stamp = datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=(ms % 1000) * 1000)
    assert iso(ms / 1000) == stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
