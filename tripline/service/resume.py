"""Resume: finds this instance's unfinished alerts and drives each to exactly one outcome.

Run at start (everything from a previous life is unfinished) and periodically (an actor that
died took its in-memory messages with it). Safe to repeat: the record's state machine decides,
so a re-routed alert can neither be called twice nor end twice.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from tripline.adapters.redis_clients import SyncRedis
from tripline.adapters.redis_io import batch, execute
from tripline.adapters.store import TERMINAL, Keys, alert_from_dict, text
from tripline.messages import Alert, Reason, State, TaskIntent

log = logging.getLogger("tripline.resume")

_BATCH = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepRules:
    """How old unfinished work must be before the sweep acts on it."""

    accepted_grace: float = 30.0
    """An 'accepted' alert younger than this is still moving through the actors."""
    dialing_grace: float = 600.0
    """A 'dialing' record older than this lost its dial (the process or actor died)."""
    reroute_limit: int = 0
    """An 'accepted' alert the periodic sweep re-routed this often without a decision is
    poison: it goes to a person (deferred/internal_error) and to the dead-letter instead of
    round again. 0: no limit, and not counted (the sweep at start: a restart is no sign that
    the alerts it left were to blame)."""


def sweep(
    client: SyncRedis,
    keys: Keys,
    *,
    instance: str,
    now: float,
    rules: SweepRules,
    route: Callable[[list[Alert]], None],
    defer: Callable[[TaskIntent], None],
    in_flight: Callable[[str, float], bool] = lambda _key, _age: False,
    settled: Callable[[list[str]], None] = lambda _keys: None,
    between_pages: Callable[[float], None] = lambda _took: None,
    quarantine: Callable[[str, str, bytes], None] = lambda _key, _error, _blob: None,
) -> Counter[str]:
    """One pass over the instance's pending index, a page of _BATCH entries at a time.

    Args:
        client: Redis.
        keys: the key layout.
        instance: whose pending index (the MQTT client id).
        now: the current time, epoch seconds.
        rules: the graces.
        route: hands re-routed alerts to the shards.
        defer: hands tasks for lost dials to the dialer.
        in_flight: whether an 'accepted' alert of this age is still moving through this
            process's actors (routed, and no actor has died since): it is left alone, or a slow
            backlog would be routed again and again, each pass adding to it.
        settled: told the keys that left the actors' hands (decided, queued, dialing).
        between_pages: told the seconds each full page took (the periodic sweep pauses
            there, so its work is spread out rather than contending with the pipeline in one
            burst).
        quarantine: told (key, error, stored alert) of each entry the sweep gives up on: a
            record it cannot read, or an alert re-routed `rules.reroute_limit` times. The
            entry leaves the index; an alert that could be read also goes to `defer`.

    Returns:
        How many entries were 'done' (decided, removed from the index), 're-routed'
        (accepted, sent to the shards again), 'uncertain' (dialing, handed to a person),
        'quarantined' (given up, see `quarantine`) or 'waiting' (queued or young: left alone).
    """
    pending_key = keys.pending(instance)
    counts: Counter[str] = Counter()
    # The next page starts at the last page's last score, inclusive, less the members already
    # seen there: one accepted batch shares one score, and an exclusive cursor skipped the rest
    # of a batch that a page boundary split.
    floor: float | str = "-inf"
    seen: set[Any] = set()  # members at `floor` on earlier pages
    while True:
        started = time.perf_counter()
        asked = _BATCH + len(seen)
        page: list[tuple[Any, float]] = client.zrangebyscore(  # type: ignore[assignment]
            pending_key, floor, now, start=0, num=asked, withscores=True
        )
        entries = [entry for entry in page if entry[0] not in seen]
        if not entries:
            return counts
        pipe = batch(client)
        for member, _ in entries:
            # Not the alert itself: most entries are decided and only leave the index.
            pipe.hmget(keys.record(text(member)), ["state", "updatedAt"])
        states = execute(pipe, item_errors=True)
        done, act, passed = _triage(
            entries,
            states,
            now=now,
            rules=rules,
            counts=counts,
            in_flight=in_flight,
            quarantine=quarantine,
        )
        reroute = _act(
            act,
            _read_alerts(client, keys, act, rules) if act else [],
            now=now,
            rules=rules,
            defer=defer,
            counts=counts,
            quarantine=quarantine,
            done=done,
        )
        if done:
            client.zrem(pending_key, *done)
        settled(done + passed)
        if reroute:
            route(reroute)
        if len(page) < asked:
            return counts
        between_pages(time.perf_counter() - started)
        if entries[-1][1] != floor:
            floor, seen = entries[-1][1], set()
        seen.update(member for member, score in entries if score == floor)


def _triage(
    entries: list[tuple[Any, float]],
    states: list[list[Any]],
    *,
    now: float,
    rules: SweepRules,
    counts: Counter[str],
    in_flight: Callable[[str, float], bool],
    quarantine: Callable[[str, str, bytes], None],
) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """Sort a page: done (leaves the index), to act on (key, state), passed the actors."""
    done: list[str] = []
    act: list[tuple[str, str]] = []
    passed: list[str] = []  # left the shards and the enricher: queued or dialing
    for (member, score), reply in zip(entries, states, strict=True):
        if isinstance(reply, Exception):  # its record is not a record (e.g. WRONGTYPE)
            quarantine(text(member), f"unreadable record: {reply}", b"")
            done.append(text(member))
            counts["quarantined"] += 1
            continue
        state, updated = reply
        key, state_text, age = text(member), text(state), now - float(score)
        if state_text in (State.QUEUED, State.DIALING):
            passed.append(key)
        if state_text == State.DIALING:  # how long it has been dialing, not since accepted
            age = now - _epoch(text(updated), default=float(score))
        if not state_text or state_text in TERMINAL:
            done.append(key)
            counts["done"] += 1
        elif state_text == State.ACCEPTED and age >= rules.accepted_grace:
            if in_flight(key, age):
                counts["in flight"] += 1
                continue
            act.append((key, state_text))
        elif state_text == State.DIALING and age >= rules.dialing_grace:
            act.append((key, state_text))
        else:
            counts["waiting"] += 1
    return done, act, passed


def _read_alerts(
    client: SyncRedis, keys: Keys, act: list[tuple[str, str]], rules: SweepRules
) -> list[Any]:
    """Per entry of `act`, its stored alert and, if counted, its re-routes so far (this one in)."""
    pipe = batch(client)
    for member, state in act:
        pipe.hget(keys.record(member), "alert")
        if _counted(state, rules):
            pipe.hincrby(keys.record(member), "reroutes", 1)
    return execute(pipe, item_errors=True)


def _counted(state: str, rules: SweepRules) -> bool:
    return state == State.ACCEPTED and rules.reroute_limit > 0


def _act(
    act: list[tuple[str, str]],
    replies: list[Any],
    *,
    now: float,
    rules: SweepRules,
    defer: Callable[[TaskIntent], None],
    counts: Counter[str],
    quarantine: Callable[[str, str, bytes], None],
    done: list[str],
) -> list[Alert]:
    """Re-route the lost 'accepted' alerts (returned); hand the lost dials to a person.

    An entry given up on (see sweep's `quarantine`) is added to `done`.
    """
    reroute: list[Alert] = []
    answers = iter(replies)
    for key, state in act:
        blob = next(answers)
        rerouted = next(answers) if _counted(state, rules) else 0
        if not blob:
            counts["waiting"] += 1
            continue
        try:
            alert = _stored_alert(blob, rerouted)
        except Exception as exc:  # one unreadable record is that record's problem
            quarantine(key, f"unreadable record: {type(exc).__name__}: {exc}", b"")
            done.append(key)
            counts["quarantined"] += 1
            continue
        limit = rules.reroute_limit
        if state == State.ACCEPTED and (not limit or int(rerouted) <= limit):
            reroute.append(alert)
            counts["re-routed"] += 1
            continue
        if state == State.ACCEPTED:
            error = f"re-routed {rules.reroute_limit} times without reaching a decision"
            quarantine(key, error, blob)
            counts["quarantined"] += 1
            reason, detail = Reason.INTERNAL_ERROR, f"{error}; quarantined"
        else:
            reason = Reason.DIAL_UNCERTAIN
            detail = "the service stopped while this call was being placed"
            counts["uncertain"] += 1
        defer(TaskIntent(alert=alert, reason=reason, due=now, detail=detail))
    return reroute


def _stored_alert(blob: Any, rerouted: Any) -> Alert:  # noqa: ANN401
    for reply in (blob, rerouted):
        if isinstance(reply, Exception):
            raise reply
    return alert_from_dict(orjson.loads(blob))


def _epoch(stamp: str, *, default: float) -> float:
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return default
