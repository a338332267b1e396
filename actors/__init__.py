"""Actors: each owns state and I/O and delegates decisions to pipeline/."""

from __future__ import annotations

import logging
import threading
from types import TracebackType

log = logging.getLogger("tripline.actors")


class FailureLog:
    """Last failure per actor URN, written by the failing actor, read by the supervisor."""

    def __init__(self) -> None:
        """Start empty."""
        self._lock = threading.Lock()
        self._last: dict[str, str] = {}

    def record(self, name: str, error: BaseException | None) -> None:
        """Remember `error` as the last failure of `name`."""
        with self._lock:
            self._last[name] = repr(error)

    def last(self, name: str) -> str | None:
        """The last failure of `name`, if any."""
        with self._lock:
            return self._last.get(name)


FAILURES = FailureLog()


class Supervised:
    """Mixin: on failure, record the error and release resources (pykka skips on_stop then)."""

    def on_failure(
        self,
        _exc_type: type[BaseException] | None,
        exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        """Tell the supervisor what killed us (the jodal/pykka#42 workaround), then clean up."""
        FAILURES.record(getattr(self, "actor_urn", ""), exc)
        stop = getattr(self, "on_stop", None)
        if stop is not None:
            try:
                stop()
            except Exception:
                log.exception("cleanup after failure of %s failed", type(self).__name__)
