"""Fixtures shared by the actor tests."""

from __future__ import annotations

from typing import Any

import pytest

from tripline.actors import _loop


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The command names of every auto-pipelined round trip (any actor's loop), in order."""
    sent: list[list[str]] = []
    original = _loop.AutoPipeline._round_trip

    async def recorded(self: _loop.AutoPipeline, commands: list[tuple[Any, ...]]) -> list[Any]:
        sent.append([str(command[0]) for command in commands])
        return await original(self, commands)

    monkeypatch.setattr(_loop.AutoPipeline, "_round_trip", recorded)
    return sent
