"""What `tripline demo` shows: live progress, the summary, and where to look next.

On a terminal the progress is a rich progress display redrawn in place; elsewhere (a pipe, CI,
a log) and with --verbose, whose log lines would tear a live display, it is plain lines, one
when the figures change and at most every two seconds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tripline.messages import Outcome

OUTCOMES = tuple(o.value for o in Outcome)
"""The summary's order: called, suppressed, deferred, rejected."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Figures:
    """Where a demo run stands."""

    total: int
    """Messages the fleet publishes, malformed ones and re-deliveries included."""
    published: int
    accepted: int
    """Alerts accepted (recorded): not the malformed ones, nor re-deliveries."""
    decided: int
    """Messages with their answer: an accepted alert's outcome, a duplicate or a rejection."""
    called: int
    following: int
    """Called alerts whose re-attempt ladder has not ended."""
    results: Mapping[str, int]
    """Placed calls by result: reached, not_reached, unknown, pending."""

    @property
    def followed(self) -> int:
        """Called alerts whose ladder has ended."""
        return max(0, self.called - self.following)

    def line(self) -> str:
        """The figures as one plain line."""
        return (
            f"published {self.published}/{self.total} · accepted {self.accepted} · "
            f"decided {min(self.decided, self.total)}/{self.total} · called {self.called} · "
            f"calls followed {self.followed}/{self.called}"
        )


def figures(
    counters: Mapping[str, Mapping[str, int]],
    results: Mapping[str, int],
    *,
    total: int,
    published: int,
    following: int,
) -> Figures:
    """The figures from the service's counters (`Stats.snapshot()`) and call results."""
    return Figures(
        total=total,
        published=published,
        accepted=sum(counters.get("accepted", {}).values()),
        decided=sum(sum(counters.get(o, {}).values()) for o in OUTCOMES),
        called=sum(counters.get(Outcome.CALLED.value, {}).values()),
        following=following,
        results=dict(results),
    )


def pick_record(recent: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The decision to show as one record: the newest call, else the newest accepted alert.

    Args:
        recent: `Stats.recent()`, newest first.
    """
    keyed = [d for d in recent if d.get("idempotencyKey") and d.get("outcome") != "rejected"]
    called = [d for d in keyed if d.get("outcome") == Outcome.CALLED.value]
    # An accepted alert's decision names its sensor; a duplicate's does not (no record of its own).
    accepted = [d for d in keyed if d.get("sensorId")]
    found = called or accepted
    return found[0] if found else None


def record_url(base: str, key: str) -> str:
    """GET /v1/alerts/{key}, the key %-encoded (any id is allowed, slashes too)."""
    return f"{base}/v1/alerts/{quote(key, safe='')}"


class View(Protocol):
    """Shows the figures while the demo runs."""

    def update(self, now: Figures) -> None:
        """Show the figures as they are now."""

    def close(self, last: Figures | None) -> None:
        """Show the last figures (None: as shown) and stop."""


class LiveView:
    """A rich progress display, redrawn in place (a terminal)."""

    def __init__(self, console: Console, total: int) -> None:
        """Start the display."""
        self._progress = Progress(
            TextColumn("{task.description:>15}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            refresh_per_second=8,
        )
        add = self._progress.add_task
        self._published = add("published", total=total, detail="")
        self._decided = add("decided", total=total, detail="")
        self._followed = add("calls followed", total=None, detail="")
        self._progress.start()

    def update(self, now: Figures) -> None:
        """Move the bars."""
        update = self._progress.update
        update(self._published, completed=now.published)
        update(
            self._decided,
            completed=min(now.decided, now.total),
            detail=f"accepted {now.accepted} · called {now.called}",
        )
        reached = now.results.get("reached", 0)
        not_reached = now.results.get("not_reached", 0)
        update(
            self._followed,
            completed=now.followed,
            total=now.called or None,
            detail=f"reached {reached} · not reached {not_reached}" if now.called else "",
        )

    def close(self, last: Figures | None) -> None:
        """Draw the last figures and leave them on the screen."""
        if last is not None:
            self.update(last)
        self._progress.stop()


class LinesView:
    """Plain lines (a pipe, CI, or --verbose beside the logs)."""

    def __init__(self, console: Console, every: float = 2.0) -> None:
        """Print through `console` at most every `every` seconds."""
        self._console = console
        self._every = every
        self._last = ""
        self._at: float | None = None

    def update(self, now: Figures) -> None:
        """Print the figures when they changed and the last line is old enough."""
        line = now.line()
        if line != self._last and (self._at is None or time.monotonic() - self._at >= self._every):
            self._print(line)

    def close(self, last: Figures | None) -> None:
        """Print the last figures unless they were the last line."""
        if last is not None and last.line() != self._last:
            self._print(last.line())

    def _print(self, line: str) -> None:
        self._console.print(line, soft_wrap=True, highlight=False)
        self._last, self._at = line, time.monotonic()


def summary(counters: Mapping[str, Mapping[str, int]]) -> Table:
    """What became of the alerts: one row per outcome and reason."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("outcome")
    table.add_column("reason")
    table.add_column("count", justify="right")
    for outcome in OUTCOMES:
        for reason, n in sorted(counters.get(outcome, {}).items()):
            table.add_row(outcome, reason, str(n))
    return table


def results_line(reach: Mapping[str, Any]) -> str:
    """The placed calls' results and the reach rate; empty when no call was placed."""
    results = reach["results"]
    if not results:
        return ""
    rate = reach["reachRate"]
    return (
        f"call results: reached {results.get('reached', 0)}, not reached "
        f"{results.get('not_reached', 0)}, unknown {results.get('unknown', 0)}"
        + (f" (reach rate {rate:.0%})" if rate is not None else "")
    )


def next_steps(
    *, service: str, emulator: str, record: dict[str, Any] | None, log_file: str | None
) -> list[tuple[str, str]]:
    """(what, where) to look at after the summary."""
    steps = [("dashboard", f"{service}/"), ("status (JSON)", f"{service}/status")]
    if record is not None:
        reason = f"/{record['reason']}" if record.get("reason") else ""
        what = f"one record ({record['outcome']}{reason})"
        steps.append((what, record_url(service, record["idempotencyKey"])))
    steps.append(("what the contact center got", f"{emulator}/_emulator/requests"))
    if log_file is not None:
        steps.append(("the service's logs (JSON)", log_file))
    return steps
