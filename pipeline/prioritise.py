"""Priority of an alert: from its type, raised (never lowered) by its severity."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from tripline.messages import Priority

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class PriorityRules:
    """What prioritise needs from the [priorities] config section."""

    default: Priority = Priority.NORMAL
    alert_types: dict[str, Priority] = field(default_factory=dict)
    severities: dict[str, Priority] = field(default_factory=dict)

    @classmethod
    def from_config(
        cls, default: str, alert_types: dict[str, str], severities: dict[str, str]
    ) -> PriorityRules:
        """Build the rules from the config's priority names."""
        return cls(
            default=Priority.from_label(default),
            alert_types={k: Priority.from_label(v) for k, v in alert_types.items()},
            severities={k.lower(): Priority.from_label(v) for k, v in severities.items()},
        )


def prioritise(alert_type: str, severity: str, rules: PriorityRules) -> Priority:
    """Return the dial priority for an alert.

    Args:
        alert_type: the payload's alertType.
        severity: the payload's optional severity ('' when absent).
        rules: the configured mappings.

    Returns:
        The type's priority (or the default), raised to the severity's when that is more urgent.
    """
    by_type = rules.alert_types.get(alert_type, rules.default)
    by_severity = rules.severities.get(severity.lower()) if severity else None
    # A sender may escalate with severity, but never quietly demote a safety alert type.
    return min(by_type, by_severity) if by_severity is not None else by_type


def critical_first(
    items: Sequence[T], urgent: Callable[[T], bool], sensor: Callable[[T], str | None]
) -> tuple[list[T], list[T]]:
    """Split a batch into the urgent items that may go ahead and the rest, each in order.

    An urgent item stays behind an earlier item of the same sensor that is not urgent: one
    sensor's alerts are decided in the order they came (a resolve must not overtake its own
    firing alert, nor the reverse).

    Args:
        items: the batch, in arrival order.
        urgent: whether an item is a critical alert.
        sensor: an item's sensor id (None when it has none, e.g. a rejected payload).

    Returns:
        (ahead, behind): ahead + behind holds every item once.
    """
    ahead: list[T] = []
    behind: list[T] = []
    # The sensors held behind are gathered from the first urgent item on: a batch without one
    # (the usual) costs one urgent() per item, no sensor() (the subscriber's every flush).
    held: set[str | None] | None = None
    for item in items:
        if held is None:
            if not urgent(item):
                behind.append(item)
                continue
            held = {sensor(b) for b in behind} - {None}
        key = sensor(item)
        if urgent(item) and key not in held:
            ahead.append(item)
            continue
        behind.append(item)
        if key is not None:
            held.add(key)
    return ahead, behind
