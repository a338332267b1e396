"""A ledger entry: what the Redis stream holds, turned into the row the stores keep.

An entry is one flat JSON object (`ENTRY_FIELDS`, in this order): the same shape in PostgreSQL
(one column each, `evidence` as JSONB), in the NDJSON files and in exports. A raw phone number
never reaches a store: it is kept as a keyed hash (HMAC-SHA256, for lookup) and a mask (for
display).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import orjson

from tripline.pipeline.comply import normalise_phone
from tripline.pipeline.reach import mask_phone

ENTRY_FIELDS = (
    "source",
    "streamId",
    "kind",
    "at",
    "idempotencyKey",
    "customerId",
    "sensorId",
    "alertType",
    "priority",
    "referenceId",
    "event",
    "outcome",
    "reason",
    "detail",
    "phoneHash",
    "phoneMasked",
    "backend",
    "callId",
    "taskId",
    "attempt",
    "actor",
    "origin",
    "evidence",
)
"""Every entry's fields, in the order exports write them."""

KINDS = ("decision", "attempt", "task", "operator")

_OUTCOMES = ("called", "suppressed", "deferred", "rejected")

# What a record holds that is evidence of its decision (the rest is routing state). The raw
# phone fields (attemptPhone, ledgerPhone) are never copied: they become phoneHash/phoneMasked.
_EVIDENCE_FIELDS = (
    "acceptedAt",
    "timestamp",
    "decidedAt",
    "severity",
    "status",
    "telemetryHash",
    "dueAt",
    "scheduledFor",
    "groupedInto",
    "result",
    "resultReason",
    "attemptState",
    "ladderEnd",
)
_JSON_FIELDS = ("facts", "attempts")


@dataclass(frozen=True, slots=True)
class PhoneHasher:
    """Keyed hashes of phone numbers.

    The same number always gives the same hash, and without the key nobody can test a
    guessed number against the ledger.
    """

    key: bytes

    def digest(self, phone: str) -> str:
        """The lookup hash of a number (normalised to E.164 first when it parses)."""
        number = normalise_phone(phone) or phone.strip()
        return hmac.new(self.key, number.encode(), hashlib.sha256).hexdigest()


def hasher_for(key: str, prefix: str) -> PhoneHasher:
    """The configured key, or (unset) one derived from the key prefix: stable, but guessable."""
    return PhoneHasher((key or f"tripline-ledger:{prefix}").encode())


def from_stream(
    source: str, stream_id: str, fields: dict[str, Any], hasher: PhoneHasher
) -> dict[str, Any]:
    """The entry a stream message describes.

    Args:
        source: the key prefix of the deployment that wrote it.
        stream_id: its id in the stream (with `source`, the entry's identity: a replay of the
            same message is the same entry).
        fields: the message's fields — `entry` (the history entry, JSON) and the record's
            evidence fields after the change (LEDGER_RECORD_FIELDS) from a record script, or
            `operator` (JSON) from an operator's action.
        hasher: the phone hasher.

    Returns:
        The entry, every field of ENTRY_FIELDS present (None when it does not apply).

    Raises:
        ValueError: the message is not an entry (it is kept aside, never dropped silently).
    """
    if "operator" in fields:
        return _from_operator(source, stream_id, _object(fields["operator"]), hasher)
    hist = _object(fields.get("entry"))
    rec = {name: _text(value) for name, value in fields.items() if name != "entry"}
    if not hist or not isinstance(hist.get("at"), str):
        msg = f"stream message {stream_id} has no history entry"
        raise ValueError(msg)
    state = str(hist.get("state", ""))
    kind = (
        "attempt"
        if "attempt" in hist
        else "decision"
        if state in _OUTCOMES
        else "task"
        if "taskId" in hist
        else "note"
    )
    phone = str(rec.get("ledgerPhone") or rec.get("attemptPhone") or "")
    evidence: dict[str, Any] = {k: rec[k] for k in _EVIDENCE_FIELDS if rec.get(k)}
    for name in _JSON_FIELDS:
        if rec.get(name):
            try:
                evidence[name] = orjson.loads(rec[name])
            except orjson.JSONDecodeError:
                evidence[name] = rec[name]
    evidence["history"] = hist
    out = dict.fromkeys(ENTRY_FIELDS)
    out.update(
        source=source,
        streamId=stream_id,
        kind=kind,
        at=hist["at"],
        idempotencyKey=rec.get("idempotencyKey"),
        customerId=rec.get("customerId"),
        sensorId=rec.get("sensorId"),
        alertType=rec.get("alertType"),
        priority=rec.get("priority"),
        referenceId=rec.get("referenceId"),
        event=state,
        outcome=rec.get("outcome"),
        reason=rec.get("reason") or None,
        detail=hist.get("detail") or (rec.get("detail") if kind == "decision" else None),
        phoneHash=hasher.digest(phone) if phone else None,
        phoneMasked=mask_phone(phone) if phone else None,
        backend=rec.get("attemptBackend") or rec.get("backend"),
        callId=hist.get("attemptCallId") or hist.get("callId") or rec.get("callId"),
        taskId=hist.get("taskId") or rec.get("taskId"),
        attempt=_int(hist.get("attempt")) or _int(rec.get("attempt")),
        evidence=evidence,
    )
    return {k: (None if v == "" else v) for k, v in out.items()}


def operator_message(
    *,
    action: str,
    at: str,
    actor: str,
    origin: str,
    why: str = "",
    phone: str = "",
    subject: dict[str, Any] | None = None,
) -> bytes:
    """The stream message of one operator action (who, when, from where, why, on what).

    `phone` (a DNC change) is hashed and masked by the writer, like every number.
    """
    doc: dict[str, Any] = {"action": action, "at": at, "actor": actor, "origin": origin, "why": why}
    if phone:
        doc["phone"] = phone
    if subject:
        doc["subject"] = subject
    return orjson.dumps(doc)


def _from_operator(
    source: str, stream_id: str, doc: dict[str, Any], hasher: PhoneHasher
) -> dict[str, Any]:
    if not isinstance(doc.get("at"), str) or not doc.get("action"):
        msg = f"stream message {stream_id} is not an operator action"
        raise ValueError(msg)
    phone = str(doc.pop("phone", "") or "")
    out = dict.fromkeys(ENTRY_FIELDS)
    out.update(
        source=source,
        streamId=stream_id,
        kind="operator",
        at=doc["at"],
        event=str(doc["action"]),
        detail=str(doc.get("why") or "") or None,
        phoneHash=hasher.digest(phone) if phone else None,
        phoneMasked=mask_phone(phone) if phone else None,
        actor=str(doc.get("actor") or "") or None,
        origin=str(doc.get("origin") or "") or None,
        evidence={k: v for k, v in doc.items() if k not in ("at", "action", "actor", "origin")},
    )
    return out


def _object(raw: Any) -> dict[str, Any]:  # noqa: ANN401 - bytes, str or absent
    if raw is None:
        return {}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    # cjson writes an empty Lua table as {} but a table that looks like a list as []
    return doc if isinstance(doc, dict) else {}


def _text(value: Any) -> str:  # noqa: ANN401 - a Redis reply
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int | None:  # noqa: ANN401
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def export_line(entry: dict[str, Any]) -> bytes:
    """One entry as an NDJSON line, every key sorted: the same entry always gives the same bytes."""
    ordered = {k: entry.get(k) for k in ENTRY_FIELDS}
    return orjson.dumps(ordered, option=orjson.OPT_SORT_KEYS) + b"\n"
