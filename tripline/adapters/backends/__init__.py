"""Contact-center backends: one small async client per product, all answering with a Result."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import aiohttp
import orjson

from tripline.messages import DialIntent, Priority, TaskIntent
from tripline.pipeline.dial import Answer, classify, retry_after
from tripline.pipeline.govern import Occupancy
from tripline.pipeline.reach import Evidence

ATTRIBUTE_MAX = 255
"""Genesys participant attributes: the guide's limit per value; we check, never truncate."""


@dataclass(frozen=True, slots=True)
class Result:
    """What a backend did with one request."""

    answer: Answer
    """Done, rate-limited, unsent, failed or uncertain."""
    ref: str = ""
    """The backend's id for what it created (conversation id, workitem id)."""
    retry_after: str | None = None
    """The raw Retry-After header of a 429."""
    detail: str = ""
    """What went wrong, for the record and the task."""

    def pause(self) -> float | None:
        """Seconds a 429 asks to wait (its Retry-After, 1 s without one); None otherwise."""
        if self.answer != Answer.RATE_LIMITED:
            return None
        return retry_after(self.retry_after, default=1.0)


class Backend(Protocol):
    """Places calls and raises tasks."""

    async def dial(self, intent: DialIntent, routing_priority: int) -> Result:
        """Place one call for `intent`."""
        ...

    async def create_task(self, task: TaskIntent) -> Result:
        """Raise one task for a person."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class Observer(Protocol):
    """A backend that can report queue occupancy."""

    async def occupancy(self, now: float) -> Occupancy:
        """Poll the contact center."""
        ...


@runtime_checkable
class Follows(Protocol):
    """A backend that reports what became of the calls it placed, and can cancel one."""

    async def results(self, calls: list[tuple[str, float]]) -> dict[str, Evidence]:
        """The terminal results among `calls` ((call id, placed at)); pending ones are absent.

        At most 100 calls per request; the caller batches.
        """
        ...

    async def cancel(self, call_id: str) -> bool:
        """Cancel a call still waiting (for an agent, or ringing); True when it was cancelled."""
        ...


@dataclass
class Backends:
    """Which backend serves which priority, which raises tasks, which reports occupancy."""

    by_priority: dict[Priority, Backend]
    tasks: Backend
    observer: Observer | None = None
    owned: list[Backend] = field(default_factory=list)
    """Closed at shutdown."""
    by_name: dict[str, Backend] = field(default_factory=dict)
    """By kind ([dialer] backend names): a record names the backend that placed its call."""

    @classmethod
    def uniform(cls, backend: Backend, observer: Observer | None = None) -> Backends:
        """One backend for everything (tests, the log backend)."""
        name = type(backend).__name__
        return cls(dict.fromkeys(Priority, backend), backend, observer, [backend], {name: backend})

    def name(self, priority: Priority) -> str:
        """The kind of the backend that places calls of `priority`."""
        backend = self.by_priority[priority]
        for name, candidate in self.by_name.items():
            if candidate is backend:
                return name
        return type(backend).__name__

    def batching(self, priority: Priority) -> bool:
        """Whether work of `priority` is batched (no token or slot per item)."""
        return bool(getattr(self.by_priority[priority], "batching", False))


BackendsFactory = Callable[[Callable[[], Awaitable[None]]], Backends]
"""Builds the backends on the loop, given the budget's async `take` for unbudgeted requests."""


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP response, read completely."""

    status: int
    headers: dict[str, str]
    body: Any


async def request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    **kwargs: Any,  # noqa: ANN401
) -> Reply | Result:
    """Send one request; a transport failure comes back as a Result saying whether it was sent.

    Only failures of the connect phase count as unsent: after that the server may have acted
    on the request, so resending could place a second call.
    """
    try:
        async with session.request(method, url, **kwargs) as resp:
            raw = await resp.read()
            try:
                body = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                body = raw[:200].decode("utf-8", "replace")
            return Reply(resp.status, dict(resp.headers), body)
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
        return Result(classify(None, sent=False), detail=f"connect failed: {exc!r}"[:300])
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Result(classify(None, sent=True), detail=f"no answer after sending: {exc!r}"[:300])


class ResultsUnavailableError(Exception):
    """The contact center did not answer a results request (it is asked again later)."""

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        """Say what went wrong; `retry_after`: a 429's wait, seconds."""
        super().__init__(detail)
        self.retry_after = retry_after


def unavailable(what: str, result: Result) -> ResultsUnavailableError:
    """The error for a results request that failed with `result` (a 429 keeps its wait)."""
    return ResultsUnavailableError(f"{what}: {result.detail}", result.pause())


def shown(body: Any, limit: int = 200) -> str:  # noqa: ANN401 - a decoded JSON body
    """A body as an error detail shows it, at most `limit` characters, whatever its shape.

    str() of a deeply nested body recurses once per level (a hostile 429 nesting a thousand
    levels raised RecursionError in the dialer, which took the 429 for an uncertain call).
    """
    if isinstance(body, str):
        return body[:limit]
    try:
        return orjson.dumps(body).decode()[:limit]
    except (TypeError, orjson.JSONEncodeError):  # nested past orjson's limit, or not JSON
        return f"<{type(body).__name__} body, not shown>"


def oversized(values: dict[str, str]) -> str:
    """Name the first attribute longer than ATTRIBUTE_MAX, or '' when all fit."""
    for name, value in values.items():
        if len(value) > ATTRIBUTE_MAX:
            return f"attribute {name} is {len(value)} characters, limit {ATTRIBUTE_MAX}"
    return ""


def _json(body: Any) -> str:  # noqa: ANN401 - what a backend sends as `json=`
    return orjson.dumps(body).decode()


class HttpSession:
    """The one aiohttp session of a backend: explicit timeouts, made on the loop that uses it."""

    def __init__(self, *, request_timeout: float, connect_timeout: float) -> None:
        """Keep the timeouts; the session is created at first use."""
        self._timeout = aiohttp.ClientTimeout(total=request_timeout, sock_connect=connect_timeout)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            # orjson for `json=` bodies, as for every other JSON here (aiohttp's default is the
            # standard library's encoder, in pure Python for every call placed).
            self._session = aiohttp.ClientSession(timeout=self._timeout, json_serialize=_json)
        return self._session

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
