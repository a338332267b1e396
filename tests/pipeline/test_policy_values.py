"""The safety policy's values are frozen and slotted (STYLE.md §4), its rules keyword-only."""

from __future__ import annotations

import dataclasses
from types import ModuleType

import pytest

from tripline.pipeline import calling_window, caps, comply, dial, flap, reach
from tripline.pipeline.calling_window import CallingRules, DayRule
from tripline.pipeline.comply import ComplyRules
from tripline.pipeline.reach import LadderRules

# They cross actor boundaries and key caches (DayRule keys calling_window's day cache): a
# value that changed after it was shared would change a decision made elsewhere.
SAFETY_POLICY: tuple[ModuleType, ...] = (comply, calling_window, caps, flap, dial, reach)
VALUES = sorted(
    (
        value
        for module in SAFETY_POLICY
        for value in vars(module).values()
        if isinstance(value, type)
        and dataclasses.is_dataclass(value)
        and value.__module__ == module.__name__
    ),
    key=lambda cls: f"{cls.__module__}.{cls.__qualname__}",
)


@pytest.mark.parametrize("cls", VALUES, ids=lambda cls: cls.__qualname__)
def test_every_policy_value_is_frozen_and_slotted(cls: type) -> None:
    assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert "__slots__" in vars(cls)


def test_the_policy_values_are_found() -> None:
    names = {cls.__qualname__ for cls in VALUES}
    assert {"ComplyRules", "Allowed", "Blocked", "DayRule", "CallingRules", "DayStatus"} <= names
    assert {"Cap", "FlapRules", "FlapState"} <= names
    assert {"Evidence", "WrapupCodes", "LadderRules", "Next", "Stop"} <= names


def test_a_frozen_value_refuses_a_change() -> None:
    rule = DayRule()
    with pytest.raises(dataclasses.FrozenInstanceError):
        rule.sunday = None  # type: ignore[misc]


@pytest.mark.parametrize(
    ("cls", "positional"),
    [
        pytest.param(DayRule, ((9 * 60, 17 * 60),), id="DayRule"),
        pytest.param(CallingRules, ("v1",), id="CallingRules"),
        pytest.param(ComplyRules, (CallingRules(),), id="ComplyRules"),
        pytest.param(LadderRules, ({}, {}, {}), id="LadderRules"),
    ],
)
def test_rules_are_keyword_only(cls: type, positional: tuple[object, ...]) -> None:
    with pytest.raises(TypeError):
        cls(*positional)
