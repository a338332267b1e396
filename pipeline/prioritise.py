"""Priority of an alert: from its type, raised (never lowered) by its severity."""

from __future__ import annotations

from dataclasses import dataclass, field

from messages import Priority


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
