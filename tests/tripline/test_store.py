"""The store: record timestamps (iso against the standard library) and queued work round trips."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from messages import Priority, Reason, TaskIntent
from pipeline.validate import Limits, Rejected, validate
from tests.actors.helpers import intent
from tests.conftest import alert
from tripline.store import iso, work_from_json, work_to_json


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


def test_queued_work_survives_its_persisted_form() -> None:
    checked = validate(orjson.dumps(alert()), now=time.time(), limits=Limits())
    assert not isinstance(checked, Rejected)
    call = replace(
        intent(checked[0], Priority.HIGH), facts=(("rule", "calling_window:US"),), not_before=5.0
    )
    task = TaskIntent(
        alert=checked[0],
        reason=Reason.OUTSIDE_CALLING_WINDOW,
        due=123.5,
        detail="local time Tue 03:00",
        facts=(("window", "08:00-20:00"),),
    )
    assert work_from_json(work_to_json(call)) == call
    assert work_from_json(work_to_json(task)) == task
