"""The fault suite's short variant: real processes, kill -9, Redis and broker restarts."""

from __future__ import annotations

import pytest

from tests.conftest import run_quick

pytestmark = [pytest.mark.integration, pytest.mark.long(60)]


@pytest.mark.timeout(400)
def test_quick_fault_suite_loses_nothing_and_calls_nobody_twice() -> None:
    result, summary = run_quick("bench.faults", timeout=380)
    assert summary["lost"] == 0, result.stdout
    assert summary["duplicate_calls"] == 0, result.stdout
    assert summary["accepted"] == summary["terminal"] == summary["published"]
    assert set(summary["scenarios"]) == {
        "kill-9",
        "redis-restart",
        "mosquitto-restart",
        "two-instances",
    }
    assert result.returncode == 0
