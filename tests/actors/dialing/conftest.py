"""The dialer's rig (tests/actors/test_dialer.py), for the tests of its layers."""

from __future__ import annotations

from tests.actors.test_dialer import _close_dialer_clients, rig  # noqa: F401 - fixtures
