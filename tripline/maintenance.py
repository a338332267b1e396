"""Maintenance windows in Redis, and each instance's copy of them in memory.

The windows live in one Redis hash shared by every instance; each instance keeps the current
set in memory (a tuple swapped whole, so the shards and the dialer read it without a lock or a
round trip per alert) and polls the hash's version once a second. A change through this
instance's HTTP API applies here at once; one made elsewhere (another instance, the CLI)
within about a second.
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from dataclasses import replace

import orjson
import redis

from messages import Alert
from pipeline.maintenance import RETENTION_SECONDS, Window, covering, from_doc, parse_request
from pipeline.validate import Problem
from tripline.store import Keys, text

log = logging.getLogger(__name__)

_VERSION = "_version"


class MaintenanceWindows:
    """This instance's view of the windows (what shards and dialer consult)."""

    def __init__(self) -> None:
        """Start empty: the first refresh reads Redis."""
        self.windows: tuple[Window, ...] = ()
        self._version: str | None = None
        # The watchdog's poll and an HTTP change may refresh at once: one at a time, so an
        # older read never lands after a newer one.
        self._refreshing = threading.Lock()

    def covering(self, alert: Alert, now: float) -> Window | None:
        """The window that covers this alert now, if any."""
        windows = self.windows  # one read: a refresh may swap the tuple meanwhile
        return covering(windows, alert, now) if windows else None

    def refresh(self, client: redis.Redis, keys: Keys) -> None:
        """Reload the windows when their version moved (one HGET when it did not)."""
        with self._refreshing:
            version = text(client.hget(keys.maintenance(), _VERSION))
            if version == self._version:
                return
            self.windows = tuple(read_all(client, keys))
            self._version = version

    def open_at(self, now: float) -> list[Window]:
        """The windows open at `now`."""
        return [w for w in self.windows if w.is_open(now)]


def read_all(client: redis.Redis, keys: Keys) -> list[Window]:
    """Every stored window, by start; an unreadable entry is logged and skipped, never fatal."""
    windows = []
    for field, raw in client.hgetall(keys.maintenance()).items():
        if text(field) == _VERSION:
            continue
        try:
            window = from_doc(orjson.loads(raw))
        except orjson.JSONDecodeError:
            window = None
        if window is None:
            log.warning("maintenance window %s is unreadable; ignored", text(field))
            continue
        windows.append(window)
    return sorted(windows, key=lambda w: (w.starts_at, w.window_id))


def add(client: redis.Redis, keys: Keys, doc: object, *, now: float) -> Window | list[Problem]:
    """Validate and store a new window; the window, or what is wrong with the request."""
    parsed = parse_request(doc, window_id=uuid.uuid4().hex[:12], now=now)
    if isinstance(parsed, Window):
        _store(client, keys, parsed, now)
    return parsed


def end(client: redis.Redis, keys: Keys, window_id: str, *, now: float) -> Window | None:
    """End a window now (it stays listed for the retention); None if there is no such window."""
    for window in read_all(client, keys):
        if window.window_id == window_id:
            ends = min(window.ends_at, now)
            # A window that had not started yet ends before it starts: it never opens.
            ended = replace(window, ends_at=ends, starts_at=min(window.starts_at, ends))
            _store(client, keys, ended, now)
            return ended
    return None


def _store(client: redis.Redis, keys: Keys, window: Window, now: float) -> None:
    """Write one window, forget those ended past the retention, bump the version."""
    key = keys.maintenance()
    others = [w for w in read_all(client, keys) if w.window_id != window.window_id]
    gone = [w.window_id for w in others if w.ends_at + RETENTION_SECONDS < now]
    latest = max([window.ends_at, *(w.ends_at for w in others)])
    pipe = client.pipeline(transaction=True)  # one key: a MULTI holds on a cluster too
    pipe.hset(key, window.window_id, orjson.dumps(window.to_doc()))
    if gone:
        pipe.hdel(key, *gone)
    pipe.hincrby(key, _VERSION, 1)
    pipe.expire(key, max(1, math.ceil(latest + RETENTION_SECONDS - now)))
    pipe.execute()
