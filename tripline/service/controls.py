"""Maintenance windows and the dialing pause in Redis, and each instance's copy in memory.

Both live in one Redis hash shared by every instance, so an operator's pause holds every
instance's calls and survives restarts. Each instance keeps the current state in memory
(swapped whole, so the shards and the dialer read it without a lock or a round trip per
alert) and polls the hash's version once a second. A change through this instance's HTTP API
applies here at once; one made elsewhere (another instance, the CLI) within about a second.
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace

import orjson
import redis

from tripline.adapters.redis_clients import SyncRedis
from tripline.adapters.store import Keys, text
from tripline.messages import Alert
from tripline.pipeline.maintenance import (
    RETENTION_SECONDS,
    Window,
    covering,
    from_doc,
    parse_request,
)
from tripline.pipeline.validate import Problem

log = logging.getLogger(__name__)

_VERSION = "_version"
_PAUSED = "_paused"


@dataclass(frozen=True, slots=True)
class Pause:
    """An operator's pause of every call, on every instance."""

    by: str
    since: float


class OperatorControls:
    """This instance's view of what operators set in Redis: maintenance windows and the pause.

    Shards and the dialer consult it without a lock or a round trip (its values are swapped
    whole); the supervisor refreshes it.
    """

    def __init__(self) -> None:
        """Start empty: the first refresh reads Redis."""
        self.windows: tuple[Window, ...] = ()
        self.dialing_paused: Pause | None = None
        self._version: str | None = None
        # The watchdog's poll and an HTTP change may refresh at once: one at a time, so an
        # older read never lands after a newer one.
        self._refreshing = threading.Lock()

    def covering(self, alert: Alert, now: float) -> Window | None:
        """The window that covers this alert now, if any."""
        windows = self.windows  # one read: a refresh may swap the tuple meanwhile
        return covering(windows, alert, now) if windows else None

    def refresh(self, client: SyncRedis, keys: Keys) -> bool:
        """Reload when the version moved (one HGET when it did not).

        Returns whether the dialing pause changed (only the refresh that saw it change does).
        """
        with self._refreshing:
            version = text(client.hget(keys.maintenance(), _VERSION))
            if version == self._version:
                return False
            before = self.dialing_paused
            self.windows, self.dialing_paused = _read(client, keys)
            self._version = version
            return self.dialing_paused != before

    def open_at(self, now: float) -> list[Window]:
        """The windows open at `now`."""
        return [w for w in self.windows if w.is_open(now)]


def read_all(client: SyncRedis, keys: Keys) -> list[Window]:
    """Every stored window, by start; an unreadable entry is logged and skipped, never fatal."""
    return list(_read(client, keys)[0])


def _read(client: SyncRedis, keys: Keys) -> tuple[tuple[Window, ...], Pause | None]:
    windows, paused = [], None
    for field, raw in client.hgetall(keys.maintenance()).items():
        name = text(field)
        if name == _VERSION:
            continue
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = None
        if name == _PAUSED:
            paused = _pause(doc)
            continue
        window = from_doc(doc)
        if window is None:
            log.warning("maintenance window %s is unreadable; ignored", name)
            continue
        windows.append(window)
    return tuple(sorted(windows, key=lambda w: (w.starts_at, w.window_id))), paused


def _pause(doc: object) -> Pause:
    """The stored pause; an unreadable one still pauses (the safe reading of 'paused')."""
    if isinstance(doc, dict) and isinstance(doc.get("by"), str):
        since = doc.get("since")
        return Pause(doc["by"], float(since) if isinstance(since, int | float) else 0.0)
    log.warning("the dialing pause is unreadable; dialing stays paused until resumed")
    return Pause("unknown", 0.0)


def add(client: SyncRedis, keys: Keys, doc: object, *, now: float) -> Window | list[Problem]:
    """Validate and store a new window; the window, or what is wrong with the request."""
    parsed = parse_request(doc, window_id=uuid.uuid4().hex[:12], now=now)
    if isinstance(parsed, Window):
        _store(client, keys, parsed, now)
    return parsed


def end(client: SyncRedis, keys: Keys, window_id: str, *, now: float) -> Window | None:
    """End a window now (it stays listed for the retention); None if there is no such window."""
    for window in read_all(client, keys):
        if window.window_id == window_id:
            ends = min(window.ends_at, now)
            # A window that had not started yet ends before it starts: it never opens.
            ended = replace(window, ends_at=ends, starts_at=min(window.starts_at, ends))
            _store(client, keys, ended, now)
            return ended
    return None


def set_paused(client: SyncRedis, keys: Keys, *, by: str | None, now: float) -> None:
    """Pause every call on every instance (`by`: who), or resume them all (None)."""
    windows, _ = _read(client, keys)
    pipe = client.pipeline(transaction=True)  # one key: a MULTI holds on a cluster too
    if by is None:
        pipe.hdel(keys.maintenance(), _PAUSED)
    else:
        pipe.hset(keys.maintenance(), _PAUSED, orjson.dumps({"by": by, "since": now}))
    _bump(pipe, keys, windows, paused=by is not None, now=now)
    pipe.execute()


def _store(client: SyncRedis, keys: Keys, window: Window, now: float) -> None:
    """Write one window, forget those ended past the retention, bump the version."""
    key = keys.maintenance()
    windows, paused = _read(client, keys)
    others = [w for w in windows if w.window_id != window.window_id]
    gone = [w.window_id for w in others if w.ends_at + RETENTION_SECONDS < now]
    pipe = client.pipeline(transaction=True)
    pipe.hset(key, window.window_id, orjson.dumps(window.to_doc()))
    if gone:
        pipe.hdel(key, *gone)
    _bump(pipe, keys, [window, *others], paused=paused is not None, now=now)
    pipe.execute()


def _bump(
    pipe: redis.client.Pipeline,
    keys: Keys,
    windows: Sequence[Window],
    *,
    paused: bool,
    now: float,
) -> None:
    """A new version, and the key's lifetime.

    A pause never ends by itself (as an opt-out from the do-not-call list never does);
    otherwise the key lives until the last window's end + the retention.
    """
    key = keys.maintenance()
    pipe.hincrby(key, _VERSION, 1)
    if paused:
        pipe.persist(key)
        return
    latest = max([now, *(w.ends_at for w in windows)])
    pipe.expire(key, max(1, math.ceil(latest + RETENTION_SECONDS - now)))
