"""Genesys: a callback is cancelled only while it waits for an agent; task wording."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import plain_alert
from tripline.adapters.backends.genesys import task_words, waiting_for_an_agent
from tripline.messages import Outcome, Reason, TaskIntent


def _p(purpose: str, state: str) -> dict[str, Any]:
    return {"purpose": purpose, "state": state}


@pytest.mark.parametrize(
    ("conversation", "cancel"),
    [
        # in queue: the customer's callback participant and the ACD, no agent yet
        ({"participants": [_p("customer", "connected"), _p("acd", "connected")]}, True),
        ({"participants": [_p("customer", "scheduled"), _p("acd", "connected")]}, True),
        # an agent is being offered it, or talks: never cut off
        (
            {"participants": [_p("customer", "connected"), _p("agent", "alerting")]},
            False,
        ),
        (
            {"participants": [_p("customer", "connected"), _p("agent", "connected")]},
            False,
        ),
        ({"participants": [_p("customer", "connected"), _p("user", "dialing")]}, False),
        # over already: nothing to cancel
        (
            {
                "participants": [
                    _p("customer", "disconnected"),
                    _p("acd", "terminated"),
                    _p("agent", "disconnected"),
                ]
            },
            False,
        ),
        # what cannot be read is not cancelled
        ({}, False),
        ({"participants": "x"}, False),
        (None, False),
        ({"participants": [1, "a", None]}, False),
    ],
)
def test_a_callback_is_cancelled_only_while_it_waits_for_an_agent(
    conversation: Any, cancel: bool
) -> None:
    assert waiting_for_an_agent(conversation) is cancel


def _task(outcome: Outcome, reason: Reason) -> TaskIntent:
    alert = plain_alert()
    return TaskIntent(alert=alert, reason=reason, due=0.0, outcome=outcome)


def test_a_not_reached_task_does_not_say_no_call_was_placed() -> None:
    assert task_words(_task(Outcome.CALLED, Reason.NONE)) == (
        "not reached",
        "Called, but nobody was reached.",
    )
    assert task_words(_task(Outcome.DEFERRED, Reason.DO_NOT_CALL)) == (
        "do_not_call",
        "No call placed (do_not_call).",
    )
