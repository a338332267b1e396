"""/status and /metrics for every worker of one `tripline run --workers N`, from any of them.

The workers share the HTTP port: which one answers a request is the kernel's choice. Each also
serves its application on a private Unix socket (`w<I>.sock` in a directory only the service's
user may enter, made by the parent); the worker that takes GET /status or GET /metrics asks
its siblings there — with a short timeout, in parallel — and answers for all of them. A
request that arrived on the private socket is answered for that worker alone.

/metrics: every family once (one HELP and TYPE), each sample with a `worker` label.
/status: the counters summed, a `workers` list (index, pid, client id, up) and `partial`:
true when a worker did not answer, whose counts are then missing from the sums.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tripline.service.workers import client_id

_ASK_SECONDS = 3.0  # a sibling's own /status asks its actors with 2 s timeouts


@dataclass(frozen=True, slots=True)
class Fleet:
    """This worker's place among its siblings."""

    index: int
    count: int
    directory: Path
    base_client_id: str
    read_token: str = ""

    def socket_path(self, index: int) -> str:
        """Where worker `index` serves its application privately."""
        return str(self.directory / f"w{index}.sock")

    async def status(self, request: web.Request, own: dict[str, Any]) -> dict[str, Any]:
        """This worker's /status document, or every worker's when asked on the shared port."""
        own = {**own, "pid": os.getpid()}
        if private(request):
            return own
        answers = await self._gather("/status")
        docs: list[dict[str, Any] | None] = []
        for i, raw in enumerate(answers):
            if i == self.index:
                docs.append(own)
                continue
            try:
                doc = orjson.loads(raw) if raw is not None else None
            except orjson.JSONDecodeError:
                doc = None
            docs.append(doc if isinstance(doc, dict) else None)
        return merge_status(docs, answering=self.index, base_client_id=self.base_client_id)

    async def metrics(self, request: web.Request, own: bytes) -> bytes:
        """This worker's metrics, or every worker's with a `worker` label."""
        if private(request):
            return own
        answers = await self._gather("/metrics")
        answers[self.index] = own
        return merge_metrics([a.decode() if a is not None else None for a in answers])

    async def _gather(self, path: str) -> list[bytes | None]:
        """Every sibling's answer to GET `path` on its private socket (None: no answer)."""
        others = [i for i in range(self.count) if i != self.index]
        found = await asyncio.gather(*(self._ask(i, path) for i in others))
        answers: list[bytes | None] = [None] * self.count
        for i, answer in zip(others, found, strict=True):
            answers[i] = answer
        return answers

    async def _ask(self, index: int, path: str) -> bytes | None:
        headers = {"Authorization": f"Bearer {self.read_token}"} if self.read_token else {}
        timeout = aiohttp.ClientTimeout(total=_ASK_SECONDS)
        connector = aiohttp.UnixConnector(path=self.socket_path(index))
        try:
            async with (
                aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
                session.get(f"http://worker{index}{path}", headers=headers) as response,
            ):
                return await response.read() if response.status == 200 else None
        except (aiohttp.ClientError, OSError, TimeoutError):
            return None


FLEET: web.AppKey[Fleet] = web.AppKey("fleet", Fleet)


def private(request: web.Request) -> bool:
    """Whether the request came on this worker's private Unix socket (not the shared port)."""
    transport = request.transport
    return transport is not None and isinstance(transport.get_extra_info("sockname"), str)


# --- /metrics ---------------------------------------------------------------------------------


def merge_metrics(texts: Sequence[str | None]) -> bytes:
    """The workers' expositions as one: a family once, its samples labelled `worker="<I>"`.

    `texts[i]`: worker i's exposition, None when it did not answer (its samples are absent,
    and `tripline_worker_up{worker="i"}` says so).
    """
    families: dict[str, Metric] = {}
    for index, text in enumerate(texts):
        if text is None:
            continue
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = Metric(family.name, family.documentation, family.type, family.unit)
                families[family.name] = merged
            merged.samples.extend(_labelled(family.samples, index))
    up = Metric("tripline_worker_up", "1 when the worker answered this scrape", "gauge")
    up.samples = [
        Sample("tripline_worker_up", {"worker": str(i)}, 0.0 if t is None else 1.0)
        for i, t in enumerate(texts)
    ]
    families["tripline_worker_up"] = up
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(list(families.values())))
    return generate_latest(registry)


def _labelled(samples: Sequence[Sample], index: int) -> Iterator[Sample]:
    for sample in samples:
        yield sample._replace(labels={**sample.labels, "worker": str(index)})


class _Families:
    """A collector handing back families already gathered."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


# --- /status ----------------------------------------------------------------------------------

# The worst state wins: one worker's open breaker is an open breaker.
_BREAKER_ORDER = ("closed", "half_open", "open")
# The same for every worker (Redis holds them): the answering worker's.
_SHARED = frozenset({"maintenance", "dialingPaused", "redis"})
_LISTS_BY_TIME = {"events": 20, "recentDecisions": 30}


def merge_status(
    docs: Sequence[dict[str, Any] | None], *, answering: int, base_client_id: str
) -> dict[str, Any]:
    """Every worker's /status as one document.

    `docs[i]`: worker i's own document, None when it did not answer. Counts are summed
    (a worker that did not answer is missing from them: `partial`); what all workers share
    (maintenance windows, the dead-letter stream, an operator's pause) is the answering
    worker's; recent events and decisions are interleaved by time; each worker's actors
    appear as `w<I>/<name>`.
    """
    present = [(i, d) for i, d in enumerate(docs) if d is not None]
    own = docs[answering] or {}
    merged: dict[str, Any] = {}
    for key in _keys(d for _, d in present):
        values = [d[key] for _, d in present if key in d]
        if key in _SHARED:
            merged[key] = own.get(key, values[0])
        elif key in _LISTS_BY_TIME:
            merged[key] = _by_time(values, _LISTS_BY_TIME[key])
        elif key == "actors":
            merged[key] = {
                f"w{i}/{name}": actor for i, d in present for name, actor in d["actors"].items()
            }
        elif key == "pid":
            continue
        else:
            merged[key] = _combine(key, values)
    merged["instance"] = base_client_id
    merged["healthy"] = len(present) == len(docs) and all(d.get("healthy") for _, d in present)
    merged["uptimeSeconds"] = max((d.get("uptimeSeconds", 0) for _, d in present), default=0)
    if "reach" in merged:
        merged["reach"] = _reach(merged["reach"])
    merged["partial"] = len(present) < len(docs)
    merged["workers"] = [
        {
            "index": i,
            "clientId": client_id(base_client_id, i),
            "pid": d.get("pid") if d else None,
            "up": d is not None,
            **({"healthy": d.get("healthy"), "uptimeSeconds": d.get("uptimeSeconds")} if d else {}),
        }
        for i, d in enumerate(docs)
    ]
    return merged


def _keys(docs: Iterator[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for doc in docs:
        seen.update(dict.fromkeys(doc))
    return list(seen)


def _combine(key: str, values: list[Any]) -> Any:  # noqa: ANN401, PLR0911
    """One value from every worker's: numbers summed, tables field by field, else the first."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    if key in ("perMinute", "burst", "cacheWarmedWith"):  # settings, or worker 0's alone
        return max(present)
    if key in ("breaker", "backendBreaker"):
        return max(present, key=lambda s: _BREAKER_ORDER.index(s) if s in _BREAKER_ORDER else 3)
    if key == "pausedUntil":
        return max(present)  # ISO 8601 of one clock: the latest
    if key == "occupancy":  # the freshest observation
        return max(present, key=lambda o: str(o.get("observedAt", "")))
    if key == "reachRate":
        return None  # recomputed from the summed results
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return sum(present)
    if all(isinstance(v, Mapping) for v in present):
        return {k: _combine(k, [v.get(k) for v in present]) for k in _keys(iter(present))}
    return present[0]


def _by_time(lists: list[Any], limit: int) -> list[Any]:
    """The newest `limit` items of the workers' lists (events: ISO 8601; decisions: seconds)."""
    items = [item for found in lists if isinstance(found, list) for item in found]
    items.sort(key=_at, reverse=True)
    return items[:limit]


def _at(item: Any) -> tuple[int, Any]:  # noqa: ANN401
    at = item.get("at") if isinstance(item, dict) else None
    if isinstance(at, int | float) and not isinstance(at, bool):
        return 1, at
    return (2, at) if isinstance(at, str) else (0, 0)


def _reach(reach: dict[str, Any]) -> dict[str, Any]:
    """The reach rate of the summed results (reached / calls with a final result)."""
    counts = reach.get("results") or {}
    final = sum(n for r, n in counts.items() if r != "pending")
    rate = round(counts.get("reached", 0) / final, 3) if final else None
    return {**reach, "results": counts, "reachRate": rate}
