"""Fixtures shared by the actor tests."""

from __future__ import annotations

from typing import Any

import pytest

from tripline.adapters import redis_io


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The command names of every auto-pipelined round trip (any actor's loop), in order."""
    sent: list[list[str]] = []
    original = redis_io.AutoPipeline._round_trip

    async def recorded(self: redis_io.AutoPipeline, commands: list[tuple[Any, ...]]) -> list[Any]:
        sent.append([str(command[0]) for command in commands])
        return await original(self, commands)

    monkeypatch.setattr(redis_io.AutoPipeline, "_round_trip", recorded)
    return sent
