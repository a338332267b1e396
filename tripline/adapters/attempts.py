"""A called alert's attempts in Redis: the ladder's state on the record, moved by compare-and-set.

The record of an alert that was called carries its ladder: `attempt` (the current attempt's
number), `attemptState` (`placed`: the call is out and its result awaited; `waiting`: the next
attempt is due at `nextEpoch`; `queued`/`dialing`: a re-attempt is with the dialer; `ended`),
`result`, `resultReason` and `attempts` (JSON, one entry per call). Every move names the attempt
and the states it may leave (REACH_LUA), so two paths can never both move one attempt: a
re-attempt is queued once, dialed once, settled once — across instances and restarts.

Which records have a live ladder is the follow index (`{f:<instance>}`, key -> when to look at
it next); it is written before the call it follows is placed, so a crash in between leaves an
entry that finds nothing to follow, never a call nobody follows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from tripline.adapters.store import LEDGER_APPEND, Keys, _id, history_entry, iso
from tripline.pipeline.reach import CallResult, Evidence

# Moves a record's ladder: only when its current attempt is ARGV[1] and its attemptState one of
# ARGV[2] ('-' stands for no ladder yet). ARGV[3] is the history entry; the rest field pairs.
# Returns 1 when moved, 0 when the ladder is elsewhere, -1 when the record is gone.
REACH_LUA = (
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local cur = redis.call('HMGET', KEYS[1], 'attempt', 'attemptState')
local n, st = cur[1] or '', cur[2] or '-'
if ARGV[1] ~= '*' and n ~= ARGV[1] then return 0 end
local ok = false
for s in string.gmatch(ARGV[2], '[^,]+') do if s == st then ok = true end end
if not ok then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('RPUSH', KEYS[2], ARGV[3])
"""
    + LEDGER_APPEND.format(entry="ARGV[3]")
    + """
return 1
"""
)

# A result pushed by the contact center (Twilio's status callback) for attempt ARGV[1] whose
# call id is ARGV[2], sequence ARGV[4]: kept on the record for the follower. Taken for the
# current call, and while the attempt is still being dialed (the push can overtake the
# answer to the request that placed the call: the follower compares call ids); refused for
# any other call, and when it is older than the push already kept for the same call.
PUSH_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local cur = redis.call('HMGET', KEYS[1], 'attempt', 'attemptCallId', 'attemptState', 'state',
                       'pushedCall', 'pushedSeq')
local n = cur[1] or '1'
if n ~= ARGV[1] then return 0 end
local dialing = cur[3] == 'dialing' or (not cur[3] and cur[4] == 'dialing')
if cur[2] ~= ARGV[2] and not dialing then return 0 end
if cur[5] == ARGV[2] and tonumber(cur[6] or '-1') >= tonumber(ARGV[4]) then return 0 end
redis.call('HSET', KEYS[1], 'pushed', ARGV[3], 'pushedCall', ARGV[2], 'pushedSeq', ARGV[4])
return 1
"""

FIELDS = (
    "attempt",
    "attemptState",
    "attemptCallId",
    "attemptBackend",
    "attemptEpoch",
    "nextEpoch",
    "nextContact",
    "attempts",
    "pushed",
    "outcome",
    "state",
    "alert",
    "priority",
    "result",
    "scheduledEpoch",
    "rechecked",
    "stopAfter",
    "attemptPhone",
)
"""What the follower reads of a record (HMGET, in this order)."""


def follow_key(keys: Keys, instance: str) -> str:
    """An instance's follow index (sorted set: alert key -> when to look next)."""
    return f"{keys.prefix}:{{f:{_id(instance)}}}:follow"


def dnc_sources_key(keys: Keys) -> str:
    """Where each number on the do-not-call list came from (number -> JSON), when known.

    As the list itself, without a TTL: an opt-out's evidence lives as long as the opt-out.
    """
    return f"{keys.dnc()}:meta"


def resolved_key(keys: Keys, customer_id: str, sensor_id: str) -> str:
    """When the sensor last resolved (epoch seconds): a ladder of an older alert ends."""
    return f"{keys.prefix}:{{c:{_id(customer_id)}}}:resolved:{_id(sensor_id)}"


@dataclass
class Ladder:
    """A record's ladder as read (see FIELDS)."""

    key: str
    n: int = 0
    state: str = ""
    call_id: str = ""
    backend: str = ""
    placed_at: float = 0.0
    next_at: float = 0.0
    next_contact: int = 0
    attempts: list[dict[str, Any]] = field(default_factory=list)
    pushed: dict[str, Any] | None = None
    outcome: str = ""
    record_state: str = ""
    alert: dict[str, Any] | None = None
    priority: str = ""
    result: str = ""
    scheduled_at: float = 0.0
    """A scheduled callback's time (0: placed to be worked now)."""
    rechecked: bool = False
    stop_after: str = ""
    """Why no attempt follows the current call (set when it could not be cancelled)."""
    phone: str = ""
    """The current call's number, E.164 (never shown: records show the masked one)."""
    exists: bool = True

    @property
    def works_from(self) -> float:
        """When the contact center starts working the call (a result can come after it)."""
        return max(self.placed_at, self.scheduled_at)

    @classmethod
    def read(cls, key: str, values: list[Any]) -> Ladder:
        """Parse an HMGET of FIELDS; unreadable parts read as absent, never raise."""
        v = [_text(x) for x in values]
        if not any(v):
            return cls(key, exists=False)
        return cls(
            key,
            n=_int(v[0]),
            state=v[1],
            call_id=v[2],
            backend=v[3],
            placed_at=_float(v[4]),
            next_at=_float(v[5]),
            next_contact=_int(v[6]),
            attempts=_list(v[7]),
            pushed=_dict(v[8]),
            outcome=v[9],
            record_state=v[10],
            alert=_dict(v[11]),
            priority=v[12],
            result=v[13],
            scheduled_at=_float(v[14]),
            rechecked=v[15] == "1",
            stop_after=v[16],
            phone=v[17],
        )

    def with_result(self, evidence: Evidence, now: float) -> list[dict[str, Any]]:
        """The attempts list with the current attempt's result filled in."""
        out = [dict(a) for a in self.attempts]
        for entry in out:
            if entry.get("n") == self.n:
                entry.update(
                    result=evidence.result.value,
                    resultReason=evidence.reason or None,
                    wrapupCode=evidence.wrapup_code or None,
                    resultAt=iso(now),
                )
        return out


def attempt_entry(
    *, n: int, now: float, contact: str, phone: str, backend: str, call_id: str
) -> dict[str, Any]:
    """One call of the ladder, as `attempts` lists it (the phone already masked)."""
    return {
        "n": n,
        "at": iso(now),
        "contact": contact,
        "phone": phone,
        "backend": backend,
        "callId": call_id,
        "result": CallResult.PENDING.value,
        "resultReason": None,
        "wrapupCode": None,
    }


def reach_args(
    keys: Keys,
    key: str,
    *,
    n: int | str,
    states: str,
    event: str,
    now: float,
    **fields: Any,  # noqa: ANN401
) -> tuple[list[str], list[Any]]:
    """Keys and arguments of REACH_LUA: move attempt `n` out of `states`, setting `fields`."""
    detail = {k: v for k, v in fields.items() if k in ("detail", "attemptCallId")}
    entry = history_entry(event, now, attempt=n, **detail)
    args: list[Any] = [str(n), states, entry, "updatedAt", iso(now)]
    for name, value in fields.items():
        if value is None:
            continue
        plain = isinstance(value, str | int | float | bytes)
        args += [name, value if plain else orjson.dumps(value)]
    # Every move of the ladder (placed, result, next attempt, end) is evidence of an attempt.
    return keys.ledger_keys(key, append=True), args


def pushed_blob(call_id: str, evidence: Evidence, sequence: int) -> bytes:
    """What PUSH_LUA keeps for the follower."""
    return orjson.dumps(
        {
            "callId": call_id,
            "result": evidence.result.value,
            "reason": evidence.reason,
            "wrapupCode": evidence.wrapup_code,
            "doNotCall": evidence.do_not_call,
            "sequence": sequence,
        }
    )


def evidence_from_pushed(pushed: dict[str, Any]) -> Evidence | None:
    """The Evidence a pushed blob holds (None when unreadable)."""
    try:
        return Evidence(
            CallResult(pushed["result"]),
            str(pushed.get("reason") or ""),
            str(pushed.get("wrapupCode") or ""),
            bool(pushed.get("doNotCall")),
        )
    except (KeyError, ValueError, TypeError):
        return None


def _text(value: Any) -> str:  # noqa: ANN401 - a Redis reply
    # Not store.text: a field someone wrote by hand must not stop the follower (replace).
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


def _float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0


def _list(value: str) -> list[dict[str, Any]]:
    try:
        parsed = orjson.loads(value) if value else []
    except orjson.JSONDecodeError:
        return []
    return [p for p in parsed if isinstance(p, dict)] if isinstance(parsed, list) else []


def _dict(value: str) -> dict[str, Any] | None:
    try:
        parsed = orjson.loads(value) if value else None
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None
