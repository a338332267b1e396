"""The ledger as append-only NDJSON files, for an edge gateway without PostgreSQL.

One file per UTC day of the entries' time (`ledger-YYYY-MM-DD.ndjson`), continued in
`ledger-YYYY-MM-DD.1.ndjson`, `.2`, … once a file passes `max_bytes`. Each batch is written and
fsync'd before the stream entries are acknowledged. A crash between the two writes a batch
again: readers skip an entry whose (source, streamId) they have seen, so nothing is counted
twice. Retention deletes whole days.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from tripline.adapters.ledger.entry import export_line
from tripline.adapters.ledger.query import LedgerQuery, matches, order_key

_NAME = re.compile(r"^ledger-(\d{4}-\d{2}-\d{2})(?:\.(\d+))?\.ndjson$")


class FileStore:
    """LedgerStore over a directory of NDJSON files."""

    def __init__(self, directory: str | Path, *, max_bytes: int = 256 * 1024 * 1024) -> None:
        """Keep the directory (created on the first write)."""
        self._dir, self._max = Path(directory), max_bytes

    def write(self, entries: list[dict[str, Any]]) -> int:
        """Append the batch to its days' files and fsync them."""
        by_day: dict[str, list[bytes]] = {}
        for entry in entries:
            by_day.setdefault(str(entry["at"])[:10], []).append(export_line(entry))
        self._dir.mkdir(parents=True, exist_ok=True)
        for day, lines in sorted(by_day.items()):
            path = self._current(day)
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                # A crash mid-write leaves a torn last line: end it, so it spoils only itself.
                size = os.fstat(fd).st_size
                torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
                os.write(fd, (b"\n" if torn else b"") + b"".join(lines))
                os.fsync(fd)
            finally:
                os.close(fd)
        return len(entries)

    def query(self, q: LedgerQuery) -> list[dict[str, Any]]:
        """One page, oldest first (reads the days of the period)."""
        page = [
            entry
            for entry in self._entries(q.start[:10], q.end[:10])
            if matches(entry, q) and (q.after is None or order_key(entry) > q.after)
        ]
        page.sort(key=order_key)
        return page[: q.limit]

    def export(self, start: str, end: str) -> Iterator[dict[str, Any]]:
        """Every entry of the period, in order."""
        q = LedgerQuery(start=start, end=end)
        found = [e for e in self._entries(start[:10], end[:10]) if matches(e, q)]
        yield from sorted(found, key=order_key)

    def purge(self, before: str) -> int:
        """Delete the files of days wholly before `before`; how many entries went."""
        gone = 0
        for day, path in self._files():
            if (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat() <= before[:10]:
                with path.open("rb") as f:
                    gone += sum(1 for _ in f)
                path.unlink()
        return gone

    def erase(self, *, customer_id: str = "", phone_hash: str = "") -> int:
        """Delete a customer's (or a number's) entries: the right to erasure; how many."""
        return erase_from_files(self, customer_id=customer_id, phone_hash=phone_hash)

    def close(self) -> None:
        """Nothing is held open between batches."""

    def _current(self, day: str) -> Path:
        parts = [_NAME.match(p.name) for d, p in self._files() if d == day]
        n = max((int(m.group(2) or 0) for m in parts if m), default=0)
        path = self._path(day, n)
        if path.exists() and path.stat().st_size >= self._max:
            path = self._path(day, n + 1)
        return path

    def _path(self, day: str, n: int) -> Path:
        return self._dir / (f"ledger-{day}.ndjson" if n == 0 else f"ledger-{day}.{n}.ndjson")

    def _files(self) -> list[tuple[str, Path]]:
        if not self._dir.is_dir():
            return []
        found = [
            (m.group(1), int(m.group(2) or 0), path)
            for path in self._dir.iterdir()
            if (m := _NAME.match(path.name))
        ]
        return [(day, path) for day, _, path in sorted(found)]

    def _entries(self, first_day: str, last_day: str) -> Iterator[dict[str, Any]]:
        seen: set[tuple[str, str]] = set()
        for day, path in self._files():
            if (first_day and day < first_day) or (last_day and day > last_day):
                continue
            with path.open("rb") as f:
                for line in f:
                    try:
                        entry = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        continue  # a line torn by a crash mid-write: its batch was written again
                    identity = (entry.get("source"), entry.get("streamId"))
                    if identity not in seen:
                        seen.add(identity)
                        yield entry


def erase_from_files(store: FileStore, *, customer_id: str = "", phone_hash: str = "") -> int:
    """Rewrite every file without a customer's (or a number's) entries; how many went.

    Each file is written anew beside the old one, fsync'd and renamed over it: a crash leaves
    either the old file or the new one, never half of each.
    """
    if not customer_id and not phone_hash:
        return 0
    gone = 0
    for _, path in store._files():  # noqa: SLF001 - the store's own module
        kept: list[bytes] = []
        with path.open("rb") as f:
            for line in f:
                try:
                    entry = orjson.loads(line)
                except orjson.JSONDecodeError:
                    kept.append(line)
                    continue
                hit = (customer_id and entry.get("customerId") == customer_id) or (
                    phone_hash and entry.get("phoneHash") == phone_hash
                )
                if hit:
                    gone += 1
                else:
                    kept.append(line)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as out:
            out.write(b"".join(kept))
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(path)
    return gone
