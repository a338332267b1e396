"""The fault suite's short variant: real processes, kill -9, Redis and broker restarts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.timeout(400)
def test_quick_fault_suite_loses_nothing_and_calls_nobody_twice() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.faults", "--quick"],
        capture_output=True,
        text=True,
        timeout=380,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    assert lines, result.stderr[-2000:]
    summary = json.loads(lines[-1])
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
