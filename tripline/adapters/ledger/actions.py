"""Operator actions as ledger entries: who, when, from where, why, on what.

Appended to the ledger stream once the action took effect, in a round trip of its own: an
operator's action is never on an alert's path, and the maintenance hash's MULTI stays on its
one key (a Redis Cluster slot).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tripline.adapters.ledger.entry import operator_message
from tripline.adapters.redis_clients import SyncRedis
from tripline.adapters.store import LEDGER_MAX_ENTRIES, Keys, iso

log = logging.getLogger("tripline.ledger")

ACTIONS = (
    "dnc_add",
    "dnc_remove",
    "dialing_paused",
    "dialing_resumed",
    "maintenance_opened",
    "maintenance_ended",
    "ledger_erased",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Author:
    """Who acted (a named admin token, `--by`, the contact center), from where, and why."""

    who: str
    origin: str
    why: str = ""


def record_action(
    client: SyncRedis,
    keys: Keys,
    author: Author,
    *,
    action: str,
    now: float,
    phone: str = "",
    subject: dict[str, Any] | None = None,
) -> None:
    """Append one operator action to the ledger (nothing when the ledger is off)."""
    if not keys.ledger:
        return
    message = operator_message(
        action=action,
        at=iso(now),
        actor=author.who[:128],
        origin=author.origin[:256],
        why=author.why[:1024],
        phone=phone,
        subject=subject,
    )
    client.xadd(
        keys.ledger_entries(),
        {"operator": message},
        maxlen=LEDGER_MAX_ENTRIES,
        approximate=True,
    )


def wrapup_message(*, phone: str, alert: str, now: float) -> bytes:
    """The entry of a number a do-not-call wrap-up put on the list."""
    return operator_message(
        action="dnc_add",
        at=iso(now),
        actor="contact-center",
        origin="wrapup",
        why="do-not-call wrap-up",
        phone=phone,
        subject={"alert": alert},
    )
