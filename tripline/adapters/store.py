"""Redis keys and the atomic scripts behind every safety decision (claims, records, cooldown).

Every key is hash-tagged so each script touches one Redis Cluster slot: keys of one alert carry
`{a:<idempotencyKey>}` (the record *is* the idempotency claim, and GET /v1/alerts/{key} must find
it from the key alone), keys shared by a customer's sensors carry `{c:<customerId>}`, and the
context carries `{r:<referenceId>}`. Every key has a TTL.
"""

from __future__ import annotations

import binascii
import functools
import operator
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson

from tripline.messages import (
    Alert,
    Contact,
    Customer,
    DialIntent,
    Outcome,
    Priority,
    Reason,
    State,
    TaskIntent,
)

# The record is created only if absent: that one atomic step is the idempotency claim.
# A key recorded before answers with what identifies its alert, so a key reused for another
# alert is told from a re-delivery (ACCEPT_IDENTITY, in this order).
ACCEPT_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HMGET', KEYS[1], 'sensorId', 'customerId', 'alertType', 'status',
                    'telemetryHash')
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[1])
return 1
"""

LEDGER_MAX_ENTRIES = 1_000_000
"""The ledger stream's cap (MAXLEN ~): entries the ledger has not written yet wait this deep.
At ~1 KiB each that is ~1 GiB of Redis at most; /metrics shows the lag long before. A slot's
outbox (on a Redis Cluster) has the same cap: it is a bound, not a budget."""

SLOTS = 16384
"""Redis Cluster's hash slots."""

LEDGER_RECORD_FIELDS = (
    "idempotencyKey",
    "customerId",
    "sensorId",
    "alertType",
    "priority",
    "referenceId",
    "outcome",
    "reason",
    "detail",
    "callId",
    "taskId",
    "facts",
    "attempts",
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
    "attempt",
    "attemptPhone",
    "attemptBackend",
    "attemptCallId",
    "ledgerPhone",
    "backend",
)
"""What of the record a ledger entry carries (the evidence; not the alert's telemetry)."""

# Appended by a script whose change succeeded, when the caller passed the ledger's outbox as
# KEYS[3] (Keys.ledger set; the one stream, or on a Redis Cluster the outbox of the record's
# own slot, Keys.ledger_outbox): the history entry and the record's evidence fields as they now
# stand, written in the same atomic step as the change, so an entry is never lost between
# the change and the ledger, never written for a change that was refused, and never twice.
# The fields go as the stream entry's own field-value pairs: HMGET and XADD cost the server
# ~15 us more per decision; HGETALL + cjson.encode of the record cost ~40-110 us.
LEDGER_APPEND = (
    """
if KEYS[3] then
  local names = {{"""
    + ", ".join(f"'{name}'" for name in LEDGER_RECORD_FIELDS)
    + """}}
  local v = redis.call('HMGET', KEYS[1], unpack(names))
  local args = {{'MAXLEN', '~', '"""
    + str(LEDGER_MAX_ENTRIES)
    + """', '*', 'entry', {entry}}}
  for i = 1, #names do
    if v[i] then args[#args + 1] = names[i]; args[#args + 1] = v[i] end
  end
  redis.call('XADD', KEYS[3], unpack(args))
end"""
)

# Moves a record along; refuses once an outcome is set (exactly one terminal outcome), and when
# ARGV[1] lists the states it may leave, refuses from any other (e.g. only one 'dialing').
TRANSITION_LUA = (
    """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if redis.call('HEXISTS', KEYS[1], 'outcome') == 1 then return 0 end
if ARGV[1] ~= '' then
  local ok = false
  for s in string.gmatch(ARGV[1], '[^,]+') do if s == state then ok = true end end
  if not ok then return 0 end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('RPUSH', KEYS[2], ARGV[2])
"""
    + LEDGER_APPEND.format(entry="ARGV[2]")
    + """
return 1
"""
)

# Claims the sensor's cooldown window for one episode. Re-entrant for the same owner, so a
# replayed alert (restart, retained message) of the episode that holds the window may proceed.
COOLDOWN_LUA = """
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, tonumber(ARGV[2])}
end
if cur == ARGV[1] then return {1, redis.call('PTTL', KEYS[1])} end
return {0, redis.call('PTTL', KEYS[1])}
"""

# Adds facts to a record without changing its state (e.g. the task id after the outcome).
ANNOTATE_LUA = (
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('RPUSH', KEYS[2], ARGV[1])
"""
    + LEDGER_APPEND.format(entry="ARGV[1]")
    + """
return 1
"""
)

# Claims an alert's one task (the taskClaimed field): only while its outcome is ARGV[1] (a late
# task for an alert decided otherwise, e.g. an uncertainty after a call, is not raised), and
# only once however often the deferral is replayed. Returns 1 claimed, 0 claimed before, -1 the
# outcome is not ARGV[1] (or no record). ARGV[2]: when.
CLAIM_TASK_LUA = """
if redis.call('HGET', KEYS[1], 'outcome') ~= ARGV[1] then return -1 end
return redis.call('HSETNX', KEYS[1], 'taskClaimed', ARGV[2])
"""

# Counts a call against one cap key (a sorted set of call ids by time) if every window has room.
# Re-entrant for the same call id, so a replay does not count twice.
CAP_LUA = """
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[3])
local longest = 0
for i = 0, n - 1 do
  local win = tonumber(ARGV[5 + 2 * i])
  if win > longest then longest = win end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - longest)
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return {1, 0} end
for i = 0, n - 1 do
  local max, win = tonumber(ARGV[4 + 2 * i]), tonumber(ARGV[5 + 2 * i])
  if redis.call('ZCOUNT', KEYS[1], now - win, '+inf') >= max then return {0, win} end
end
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('PEXPIRE', KEYS[1], longest)
return {1, 0}
"""

# GCRA on the server's clock (so instances with skewed clocks share one budget). Takes up to
# ARGV[3] requests at once: returns {taken, 0}, or {0, milliseconds to wait} when none fits.
GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if now < tat - tolerance then return {0, math.ceil(tat - tolerance - now)} end
local fit = math.floor((now + tolerance - tat) / interval) + 1
if fit > want then fit = want end
local new = tat + fit * interval
redis.call('SET', KEYS[1], new, 'PX', math.ceil(new - now + tolerance) + 1000)
return {fit, 0}
"""

# Per-customer grouping. KEYS[1] is the open group (primary key and its reference id, alive for
# the grouping window), KEYS[2] counts the siblings each primary gathered (alive as long as
# records). The first alert of a window becomes the primary; later ones join it. A replay of the
# primary stays the primary. Returns {1 if primary, primary key, primary reference id}.
GROUP_LUA = """
local p = redis.call('HGET', KEYS[1], 'primary')
if not p then
  redis.call('HSET', KEYS[1], 'primary', ARGV[1], 'ref', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {1, ARGV[1], ARGV[2]}
end
local ref = redis.call('HGET', KEYS[1], 'ref')
if p == ARGV[1] then return {1, p, ref} end
redis.call('HINCRBY', KEYS[2], p, 1)
redis.call('EXPIRE', KEYS[2], ARGV[4])
return {0, p, ref}
"""

# Cancels a waiting call whose sensor resolved: refused (0) when other alerts were grouped into
# it (they still need the call); otherwise closes its group and releases the sensor's cooldown
# if this alert holds it, so the sensor's next real episode may call. KEYS: counts, group,
# cooldown; ARGV[1] the alert's key.
CANCEL_LUA = """
if tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') > 0 then return 0 end
if redis.call('HGET', KEYS[2], 'primary') == ARGV[1] then redis.call('DEL', KEYS[2]) end
if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
return 1
"""

# A sensor's recent readings: push, keep the newest ARGV[2], keep them at least ARGV[3] seconds
# — one command instead of four on the shards' hot path. Never shortened: a deferral due days
# later kept them for its agent's page (keep_commands).
READING_LUA = """
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[3]) then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return 1
"""

ACCEPT_IDENTITY = ("sensorId", "customerId", "alertType", "status", "telemetryHash")

TERMINAL = {o.value for o in Outcome}
FROM_PENDING = f"{State.ACCEPTED},{State.QUEUED}"


# Ids are escaped in key names, so no id can change a key's shape: '%', '{', '}' and ':' become
# %25, %7B, %7D and %3A. After escaping an id holds none of the characters that delimit key
# parts and the hash tag, so a key reads back to exactly one (kind, ids...) tuple, and the hash
# tag is exactly `{c:<customer>}`. Ids without them (nearly all) are unchanged.
_ID_ESCAPES = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D", ":": "%3A"})


def _id(value: str) -> str:
    # Nearly every id needs nothing: four substring tests are ~10x cheaper than translate()
    # on the keys every stage builds for every alert.
    if "%" in value or "{" in value or "}" in value or ":" in value:
        return value.translate(_ID_ESCAPES)
    return value


@functools.cache
def outbox_tags() -> tuple[str, ...]:
    """For each cluster slot, a short hash tag that hashes to it ('o' and a number).

    A script may touch keys of one slot only, so the outbox a record script appends to must
    live in the record's own slot: one outbox per slot, named by a tag found for it here (the
    first 'o<n>' of each slot; ~155,000 CRC16s, ~50 ms, once per process).
    """
    tags: list[str | None] = [None] * SLOTS
    left, n = SLOTS, 0
    while left:
        tag = f"o{n}"
        slot = binascii.crc_hqx(tag.encode(), 0) % SLOTS
        if tags[slot] is None:
            tags[slot], left = tag, left - 1
        n += 1
    return tuple(t or "" for t in tags)


class OutboxHints:
    """The slots whose outbox this process's scripts were just given: where the writer looks first.

    Noted when a record script's keys are built (before it runs), so a hint may come early;
    the writer reads a hinted outbox again while its hint is young and, for anything a hint
    missed (another process's scripts, a crash), every outbox is swept now and then.
    """

    __slots__ = ("_lock", "_noted")

    def __init__(self) -> None:
        """No slot noted yet."""
        self._noted: dict[int, float] = {}
        self._lock = threading.Lock()

    def note(self, slot: int) -> None:
        """A record script of this slot is about to append to its outbox."""
        self._noted[slot] = time.monotonic()  # one dict store: atomic, no lock on the hot path

    def taken(self) -> dict[int, float]:
        """The slots noted and when (each stays noted until forget() drops it)."""
        with self._lock:
            return dict(self._noted)

    def forget(self, slot: int, noted: float) -> None:
        """Drop a slot's hint unless it was noted again after `noted`."""
        with self._lock:
            if self._noted.get(slot) == noted:
                del self._noted[slot]


@dataclass(frozen=True, slots=True)
class Keys:
    """Builds every key tripline writes, under one prefix (which holds no '{' or '}')."""

    prefix: str
    ledger: bool = False
    """Whether decisions, attempts and tasks are appended to the ledger (their scripts get the
    outbox as KEYS[3]): on in the service, off for tools that only read."""
    slot_outboxes: bool = False
    """Whether a record script appends to its own slot's outbox (a Redis Cluster, where the
    one stream lives in a slot of its own) rather than to the one ledger stream."""
    hints: OutboxHints | None = None
    """Where the slots of the outboxes appended to are noted for the writer (slot_outboxes)."""

    def ledger_entries(self) -> str:
        """The ledger's inbox: entries wait here until the ledger's store has them (a stream).

        Every entry on one Redis or behind Sentinel; operator actions only on a cluster, where
        record scripts append to their slot's outbox. Capped (LEDGER_MAX_ENTRIES), not
        expiring; an entry is deleted once written.
        """
        return f"{self.prefix}:{{ledger}}:entries"

    def outbox(self, slot: int) -> str:
        """A cluster slot's ledger outbox (a stream in that slot, capped like the one stream)."""
        return f"{self.prefix}:{{{outbox_tags()[slot]}}}:ledger"

    def outboxes(self) -> list[str]:
        """Every stream ledger entries may wait in: the one stream, then each slot's outbox."""
        one = [self.ledger_entries()]
        return one + [self.outbox(s) for s in range(SLOTS)] if self.slot_outboxes else one

    def ledger_outbox(self, key: str) -> str:
        """Where a record script of alert `key` appends its ledger entry."""
        if not self.slot_outboxes:
            return self.ledger_entries()
        # The slot of the record's hash tag, `{a:<key>}` (record()), computed as Redis does.
        slot = binascii.crc_hqx(f"a:{_id(key)}".encode(), 0) % SLOTS
        if self.hints is not None:
            self.hints.note(slot)
        return self.outbox(slot)

    def ledger_keys(self, key: str, *, append: bool) -> list[str]:
        """The keys of a record-changing script: with the ledger's outbox when it appends."""
        if append and self.ledger:
            return [self.record(key), self.history(key), self.ledger_outbox(key)]
        return [self.record(key), self.history(key)]

    def record(self, key: str) -> str:
        """The alert's record (a hash); its existence is the idempotency claim."""
        return f"{self.prefix}:{{a:{_id(key)}}}:rec"

    def history(self, key: str) -> str:
        """The alert's timestamped history (a list of JSON entries)."""
        return f"{self.prefix}:{{a:{_id(key)}}}:hist"

    def context(self, reference_id: str) -> str:
        """The stored alert and full telemetry, served to the agent desktop."""
        return f"{self.prefix}:{{r:{_id(reference_id)}}}:ctx"

    def cooldown(self, customer_id: str, sensor_id: str) -> str:
        """The sensor's cooldown window."""
        return f"{self.prefix}:{{c:{_id(customer_id)}}}:cool:{_id(sensor_id)}"

    def readings(self, customer_id: str, sensor_id: str) -> str:
        """The sensor's recent readings, newest first (a capped list), for the agent's chart."""
        return f"{self.prefix}:{{c:{_id(customer_id)}}}:readings:{_id(sensor_id)}"

    def flap_task(self, customer_id: str, sensor_id: str) -> str:
        """Held while a sensor's flap episode has its maintenance task: one task per episode."""
        return f"{self.prefix}:{{c:{_id(customer_id)}}}:flaptask:{_id(sensor_id)}"

    def group(self, customer_id: str, lane: str) -> str:
        """A customer's open grouping window (lane: critical alerts never wait behind others)."""
        return f"{self.prefix}:{{c:{_id(customer_id)}}}:group:{_id(lane)}"

    def group_counts(self, customer_id: str) -> str:
        """Siblings grouped into each of a customer's primary alerts (a hash key -> count)."""
        return f"{self.prefix}:{{c:{_id(customer_id)}}}:groupn"

    def siblings(self, reference_id: str) -> str:
        """Alerts grouped into the call of this reference (a list of JSON summaries)."""
        return f"{self.prefix}:{{r:{_id(reference_id)}}}:sib"

    def fleet_sensors(self) -> str:
        """Sensors that fired recently (a sorted set sensor -> last firing time), fleet-wide."""
        return f"{self.prefix}:{{fleet}}:firing"

    def fleet_incident(self) -> str:
        """The open fleet incident (JSON: since, sensors), absent when none is open."""
        return f"{self.prefix}:{{fleet}}:incident"

    def snapshot(self, customer_id: str, sensor_id: str) -> str:
        """The sensor entity's snapshot."""
        return f"{self.prefix}:{{c:{_id(customer_id)}}}:snap:{_id(sensor_id)}"

    def customer(self, customer_id: str) -> str:
        """The cached customer profile."""
        return f"{self.prefix}:{{c:{_id(customer_id)}}}:profile"

    def customer_calls(self, customer_id: str) -> str:
        """Calls placed to a customer (sorted set of call ids by time), for the caps."""
        return f"{self.prefix}:{{c:{_id(customer_id)}}}:calls"

    def number_calls(self, phone: str) -> str:
        """Calls placed to a phone number, for the caps (shared by every customer using it)."""
        return f"{self.prefix}:{{n:{_id(phone)}}}:calls"

    def rate(self) -> str:
        """The contact center's shared rate budget (GCRA theoretical arrival time)."""
        return f"{self.prefix}:{{rate}}:gcra"

    def dial_queue(self, instance: str) -> str:
        """An instance's queued dial work (a hash id → JSON): it survives a restart."""
        return f"{self.prefix}:{{q:{_id(instance)}}}:dialq"

    def pending(self, instance: str) -> str:
        """An instance's unfinished alerts (sorted set key → accepted at): what resume sweeps."""
        return f"{self.prefix}:{{p:{_id(instance)}}}:pending"

    def handoff(self) -> str:
        """Accepted webhook alerts a busy door handed on, for an idle one to decide (a list).

        One for every instance of the prefix: any of them may decide any alert
        (tripline/edge/handoff.py).
        """
        return f"{self.prefix}:{{handoff}}:webhook"

    def handoff_idle(self) -> str:
        """The doors that are idle: each taker's name → when it last said so (a sorted set).

        A busy door hands alerts off only while another door is in it (tripline/edge/handoff.py).
        """
        return f"{self.prefix}:{{handoff}}:idle"

    def workers(self, instance: str) -> str:
        """How many worker processes `tripline run` last started as `instance` (a string)."""
        return f"{self.prefix}:{{w:{_id(instance)}}}:workers"

    def maintenance(self) -> str:
        """What operators set for every instance, a hash.

        Maintenance windows (id -> JSON), the dialing pause (`_paused`) and `_version`, bumped
        on every change; polled by each instance (tripline/service/controls.py). Its TTL outlasts
        the last window's end by the retention; while paused it has none (a pause never ends
        by itself).
        """
        return f"{self.prefix}:{{m}}:maintenance"

    def dead_letters(self) -> str:
        """Quarantined messages and records, as received (a capped stream, every instance's).

        Capped, not expiring: the newest entries are kept however old
        (tripline/adapters/deadletter.py).
        """
        return f"{self.prefix}:{{dlq}}:deadletter"

    def dnc(self) -> str:
        """The internal do-not-call list (a set of E.164 numbers).

        The one key without a TTL, on purpose: an opt-out must never expire by itself.
        """
        return f"{self.prefix}:dnc"


def keep_commands(keys: Keys, alert: Alert, seconds: int) -> list[tuple[Any, ...]]:
    """Keep an alert's keys at least `seconds` from now: never shortened (EXPIRE … GT).

    Its record (the idempotency claim, and the task's claim on it), history, context, grouped
    alerts and its sensor's readings (the agent's page shows them). Each command names one key,
    so each goes to its own slot in a cluster. GT leaves a key without a TTL alone (every key
    tripline writes has one) and a missing key missing.
    """
    key, ref = alert.idempotency_key, alert.reference_id
    return [
        ("EXPIRE", name, seconds, "GT")
        for name in (
            keys.record(key),
            keys.history(key),
            keys.context(ref),
            keys.siblings(ref),
            keys.readings(alert.customer_id, alert.sensor_id),
        )
    ]


def text(value: Any) -> str:  # noqa: ANN401
    """A Redis reply as text: bytes decoded, None as ''."""
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def iso(epoch: float) -> str:
    """UTC ISO-8601 with milliseconds, as records show times."""
    ms = round(epoch * 1000)
    return f"{_second(ms // 1000)}.{ms % 1000:03d}Z"


@functools.lru_cache(maxsize=256)
def _second(second: int) -> str:
    # Several entries per alert share their second: formatting each would be 4 % of a drain.
    # The year padded to four digits by hand: glibc's strftime writes year 1 as "1", which
    # sorts after "2026" (a ledger query's `to=0500-01-01` would then include everything).
    t = time.gmtime(second)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:"
        f"{t.tm_sec:02d}"
    )


def history_entry(state: str, now: float, reason: Reason = Reason.NONE, **extra: Any) -> bytes:  # noqa: ANN401
    """One timestamped history entry."""
    entry: dict[str, Any] = {"at": iso(now), "state": state}
    if reason:
        entry["reason"] = reason.value
    entry.update({k: v for k, v in extra.items() if v not in (None, "")})
    return orjson.dumps(entry)


def accept_args(keys: Keys, alert: Alert, ttl: int) -> tuple[list[str], list[Any]]:
    """Keys and arguments of ACCEPT_LUA for one alert."""
    # Built as one list, on every accepted alert: the enums' properties (.label, .value) are
    # Python calls, read once at import (_PRIORITY_LABELS, _ACCEPTED).
    accepted_at = iso(alert.accepted_at)
    args: list[Any] = [
        ttl,
        history_entry(_ACCEPTED, alert.accepted_at),
        "idempotencyKey",
        alert.idempotency_key,
        "sensorId",
        alert.sensor_id,
        "customerId",
        alert.customer_id,
        "alertType",
        alert.alert_type,
        "status",
        "firing" if alert.firing else "resolved",
        "severity",
        alert.severity,
        "priority",
        _PRIORITY_LABELS[alert.priority],
        "referenceId",
        alert.reference_id,
        "telemetryHash",
        alert.telemetry_hash,
        "timestamp",
        iso(alert.timestamp),
        "acceptedAt",
        accepted_at,
        "state",
        _ACCEPTED,
        "alert",
        orjson.dumps(alert_to_dict(alert)),
    ]
    return [keys.record(alert.idempotency_key), keys.history(alert.idempotency_key)], args


_ACCEPTED = State.ACCEPTED.value
_PRIORITY_LABELS = tuple(p.label for p in sorted(Priority))  # by value: 0, 1, 2, 3


def transition_args(
    keys: Keys,
    key: str,
    *,
    state: str,
    now: float,
    reason: Reason = Reason.NONE,
    allowed_from: str = "",
    **fields: Any,  # noqa: ANN401
) -> tuple[list[str], list[Any]]:
    """Keys and arguments of TRANSITION_LUA; a terminal `state` also sets outcome and reason."""
    detail = {k: v for k, v in fields.items() if k in ("callId", "taskId", "detail", "groupedInto")}
    values: dict[str, Any] = {"state": state, "updatedAt": iso(now), **fields}
    if state in TERMINAL:
        values["outcome"] = state
        values["reason"] = reason.value
        values["decidedAt"] = iso(now)
    args: list[Any] = [allowed_from, history_entry(state, now, reason, **detail)]
    for name, value in values.items():
        plain = isinstance(value, str | int | float | bytes)
        args += [name, value if plain else orjson.dumps(value)]
    return keys.ledger_keys(key, append=state in TERMINAL), args


def annotate_args(
    keys: Keys,
    key: str,
    *,
    now: float,
    event: str,
    **fields: Any,  # noqa: ANN401
) -> tuple[list[str], list[Any]]:
    """Keys and arguments of ANNOTATE_LUA: set `fields`, log `event` in the history."""
    args: list[Any] = [history_entry(event, now, **fields)]
    for name, value in fields.items():
        args += [name, value]
    # A raised task (its id) is evidence; other notes are not.
    return keys.ledger_keys(key, append="taskId" in fields), args


def alert_to_dict(alert: Alert) -> dict[str, Any]:
    """The alert as stored in its record, enough to rebuild it after a restart."""
    return dict(zip(_ALERT_FIELDS, _alert_values(alert), strict=True))


_ALERT_FIELDS: tuple[str, ...] = Alert.__slots__
_alert_values = operator.attrgetter(*_ALERT_FIELDS)  # every field in one C call


def alert_from_dict(data: dict[str, Any]) -> Alert:
    """Rebuild an alert stored by alert_to_dict."""
    return Alert(**{**data, "priority": Priority(data.get("priority", Priority.NORMAL))})


def work_to_json(work: DialIntent | TaskIntent) -> bytes:
    """Queued dial work as stored in the dialer's Redis queue."""
    common = {"alert": alert_to_dict(work.alert), "facts": [list(f) for f in work.facts]}
    if isinstance(work, DialIntent):
        return orjson.dumps(
            {
                "kind": "dial",
                **common,
                "intentId": work.intent_id,
                "customer": work.customer,  # orjson writes a dataclass as its fields
                "priority": int(work.priority),
                "enqueuedAt": work.enqueued_at,
                "notBefore": work.not_before,
                "attempt": work.attempt,
                "contact": work.contact,
                "scheduledFor": work.scheduled_for,
            }
        )
    return orjson.dumps(
        {
            "kind": "task",
            **common,
            "reason": work.reason.value,
            "due": work.due,
            "detail": work.detail,
            "outcome": work.outcome.value,
        }
    )


def work_from_json(blob: bytes) -> DialIntent | TaskIntent:
    """Rebuild queued work stored by work_to_json."""
    doc = orjson.loads(blob)
    alert = alert_from_dict(doc["alert"])
    facts = tuple((str(k), v) for k, v in doc["facts"])
    if doc["kind"] == "dial":
        return DialIntent(
            intent_id=doc["intentId"],
            alert=alert,
            customer=Customer(
                **{
                    **doc["customer"],
                    # orjson wrote each Contact as an object; older work has no contacts.
                    "contacts": tuple(Contact(**c) for c in doc["customer"].get("contacts", ())),
                }
            ),
            priority=Priority(doc["priority"]),
            enqueued_at=doc["enqueuedAt"],
            facts=facts,
            not_before=doc.get("notBefore", 0.0),  # absent in work queued by older versions
            attempt=doc.get("attempt", 1),
            contact=doc.get("contact", ""),
            scheduled_for=doc.get("scheduledFor", 0.0),
        )
    return TaskIntent(
        alert=alert,
        reason=Reason(doc["reason"]),
        due=doc["due"],
        detail=doc["detail"],
        facts=facts,
        outcome=Outcome(doc.get("outcome", Outcome.DEFERRED)),
    )


def decode_record(raw: dict[bytes, bytes], history: list[bytes]) -> dict[str, Any]:
    """Turn a record hash and its history into the JSON answer of GET /v1/alerts/{key}."""
    rec = {k.decode(): v.decode() for k, v in raw.items()}
    facts = rec.pop("facts", None)
    rec.pop("alert", None)
    out: dict[str, Any] = {
        "idempotencyKey": rec.get("idempotencyKey"),
        "sensorId": rec.get("sensorId"),
        "customerId": rec.get("customerId"),
        "alertType": rec.get("alertType"),
        "status": rec.get("status"),
        "priority": rec.get("priority"),
        "referenceId": rec.get("referenceId"),
        "telemetryHash": rec.get("telemetryHash"),
        "timestamp": rec.get("timestamp"),
        "acceptedAt": rec.get("acceptedAt"),
        "state": rec.get("state"),
        "outcome": rec.get("outcome"),
        "reason": rec.get("reason") or None,
        "callId": rec.get("callId"),
        "taskId": rec.get("taskId"),
        "groupedInto": rec.get("groupedInto"),
        "detail": rec.get("detail"),
        "result": rec.get("result"),
        "resultReason": rec.get("resultReason") or None,
        "nextAttemptAt": rec.get("nextAt") if rec.get("attemptState") == "waiting" else None,
        "scheduledFor": rec.get("scheduledFor"),
        "ladderEnd": rec.get("ladderEnd"),
        "history": [orjson.loads(h) for h in history],
    }
    if facts:
        out["facts"] = orjson.loads(facts)
    if attempts := rec.get("attempts"):
        out["attempts"] = orjson.loads(attempts)  # phones masked; the raw one is never shown
    return {k: v for k, v in out.items() if v is not None}
