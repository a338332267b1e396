"""Adversarial input through both doors (issue #16, item 5; promise 5 of docs/architecture.md).

A generative corpus (tests/integration/adversarial_corpus.py: hypothesis strategies over the
alert payload's grammar, each example with what the contract says must become of it) is sent
through HTTP POST /v1/alerts and through MQTT at QoS 1, a batch per category. Over HTTP each
answer is judged as it comes (so hypothesis shrinks a failure to a minimal payload); over MQTT
the batch is published, then every message must have either a record or a report on the
rejected topic, as its expectation allows. After each batch: /healthz answers 200, /status
counts no actor restart and no dead letter, every refusal was counted by its reason, the
contact center was asked for nothing odd, and a critical alert sent afterwards through the
same door is called (its record says `called` and the emulator received the callback).

Besides the corpus: nesting at every depth up to orjson's limit, ids crafted against our Redis
key names, a reused idempotency key (409 / a report) and identical re-deliveries (200), the HTTP
transport (truncated and trickled bodies, odd headers, content types, foreign origins), and a
poison MQTT message across a restart.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import paho.mqtt.client as mqtt
import pytest
import redis
import yarl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import (
    BROKER,
    EmulatorHandle,
    Listener,
    ServiceHandle,
    alert,
)
from tests.integration.adversarial_corpus import (
    ORJSON_DEPTH,
    REJECT_REASONS,
    SENTINEL,
    Case,
    Expect,
    Limits,
    Members,
    Raw,
    categories,
    deep_alert,
    depth_verdict,
    encode,
    named_cases,
    nested,
    zulu,
)
from tripline.adapters.mqtt_io import stop_network
from tripline.adapters.store import Keys

pytestmark = [pytest.mark.integration, pytest.mark.long(60)]

ENV = {
    "TRIPLINE__TASKS__BACKEND": "log",
    "TRIPLINE__DIALER__RATE_PER_MINUTE": "600000",
    "TRIPLINE__DIALER__BURST": "1000",
}
"""The corpus's valid alerts are of customers no CRM knows: each becomes a task, which goes to
the log, and the rate budget is wide, so that hundreds of them neither wait out a minute's
budget nor hold the canary's call (governance is tested elsewhere)."""
EXAMPLES = {"http": 100, "mqtt": 100}
"""Generated examples per category and door (the suite's runtime is the budget)."""
CALLBACKS = "/api/v2/conversations/callbacks"
_EMULATOR_PATHS = re.compile(
    r"^/(oauth/token|api/v2/conversations/callbacks|api/v2/taskmanagement/workitems"
    r"|api/v2/analytics/queues/observations/query|api/v1/customers(/[^/?#]+)?)$"
)
_URL_SAFE = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;=:@/"
)
CONTEXT_TOKEN = "ctx-token"  # tests/conftest.py service_env
_nonces = itertools.count()
_INLINE = 1 << 16  # aiohttp warns about larger bodies given as bytes
MQTT_CHUNK = 400


def nonce() -> str:
    """A fresh suffix for a case's key: no two sends share a key."""
    return f"{next(_nonces) % 10**6:06d}{uuid.uuid4().hex[:4]}"


# --- an HTTP client for thousands of requests ------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One HTTP answer."""

    status: int
    raw: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body as JSON, None when it is not."""
        try:
            return orjson.loads(self.raw)
        except orjson.JSONDecodeError:
            return None


class Client:
    """One keep-alive aiohttp session on a loop thread of its own (conftest.http opens one per
    request: too slow for a corpus)."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._session: aiohttp.ClientSession = self._run(self._open())

    @staticmethod
    async def _open() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(60)

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """Send `url` exactly as written (already percent-encoded)."""
        answer: Answer = self._run(self._request(method, url, body, headers))
        return answer

    async def _request(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str] | None
    ) -> Answer:
        data = io.BytesIO(body) if body is not None and len(body) > _INLINE else body
        async with self._session.request(
            method, yarl.URL(url, encoded=True), data=data, headers=headers
        ) as resp:
            raw = await resp.read()
            return Answer(resp.status, raw, dict(resp.headers))

    def drop_connections(self) -> None:
        """Close the kept-alive connections (before the service they lead to stops)."""
        self._run(self._session.close())
        self._session = self._run(self._open())

    def close(self) -> None:
        self._run(self._session.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def client() -> Iterator[Client]:
    handle = Client()
    yield handle
    handle.close()


def publish_all(messages: Sequence[tuple[str, bytes]]) -> None:
    """Publish every (topic, payload) at QoS 1 on one connection; wait until the broker has each."""
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect(*BROKER)
    pub.loop_start()
    try:
        infos = [pub.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=30)
    finally:
        pub.disconnect()
        stop_network(pub)


# --- one test's service, and how a batch is judged ---------------------------------------------


@dataclass
class Ctx:
    """What a test sends through, and what it checks against."""

    service: ServiceHandle
    emulator: EmulatorHandle
    client: Client
    door: str
    headers: dict[str, str] = field(default_factory=dict)
    """Sent with every POST (a bearer token where the service wants one)."""
    listener: Listener | None = None
    statuses: list[int] = field(default_factory=list)
    """Every HTTP status this test's service answered."""

    @property
    def limits(self) -> Limits:
        return Limits.of(self.service.config)

    @property
    def url(self) -> str:
        return self.service.url

    def get(self, path: str) -> Answer:
        answer = self.client.request("GET", self.url + path)
        self.statuses.append(answer.status)
        return answer

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> Answer:
        sent = {"Content-Type": "application/json", **self.headers, **(headers or {})}
        answer = self.client.request("POST", f"{self.url}/v1/alerts", body, sent)
        self.statuses.append(answer.status)
        return answer

    def record(self, key: str) -> dict[str, Any] | None:
        if len(key) > self.limits.max_string:
            return None  # never accepted (the id checks say so), and over aiohttp's 8 KiB URL
        answer = self.get(f"/v1/alerts/{quote(key, safe='')}")
        return answer.json() if answer.status == 200 else None

    def status(self) -> dict[str, Any]:
        answer = self.get("/status")
        assert answer.status == 200, answer
        body: dict[str, Any] = answer.json()
        return body

    def rejected_counts(self) -> Counter[str]:
        return Counter(self.status()["counters"].get("rejected", {}))


def start(
    make_service: Callable[..., ServiceHandle],
    emulator: EmulatorHandle,
    client: Client,
    door: str,
    **env: str,
) -> Ctx:
    service = make_service(**{**ENV, **env}).start()
    ctx = Ctx(service, emulator, client, door)
    if door == "mqtt":
        ctx.listener = Listener(service.config.mqtt.rejected_topic)
    return ctx


def stop(ctx: Ctx) -> None:
    ctx.client.drop_connections()
    if ctx.listener is not None:
        ctx.listener.close()
        ctx.listener = None


def describe(case: Case, body: bytes, problems: Sequence[str]) -> str:
    shown = body if len(body) <= 200 else body[:120] + b"..." + body[-40:]
    return f"[{case.expect.label}] {len(body)} bytes {shown!r}: " + "; ".join(problems)


def judge_refusal(expect: Expect, doc: Any, status: int | None) -> list[str]:
    """A refusal's problem document: well formed, and naming what the expectation names."""
    if not isinstance(doc, dict) or not doc.get("error") or not doc.get("problems"):
        return [f"refusal is not a problem document: {doc!r:.300}"]
    problems = doc["problems"]
    bad_shape = [
        p
        for p in problems
        if not isinstance(p, dict)
        or not isinstance(p.get("field"), str)
        or p.get("reason") not in REJECT_REASONS
        or not p.get("message")
    ]
    if bad_shape:
        return [f"malformed problems {bad_shape!r:.300}"]
    seen = [(p["field"], p["reason"]) for p in problems]
    out = []
    if status == 413 and not expect.too_large:
        out.append(f"413 for a payload within the limit: {seen}")
    if status == 400 and expect.too_large:
        out.append(f"400 instead of 413 for a payload over the limit: {seen}")
    if expect.named and not any(
        (name is None or name == f) and r in reasons
        for f, r in seen
        for name, reasons in expect.named
    ):
        wanted = [(n, sorted(r)) for n, r in expect.named]
        out.append(f"refused naming {seen}, expected one of {wanted}")
    return out


def judge_record(ctx: Ctx, case: Case, key: str, n: str) -> list[str]:
    record = ctx.record(key)
    if record is None:
        return [f"accepted, but GET /v1/alerts/{quote(key, safe='')} finds no record"]
    wrong = {k: record.get(k) for k, v in case.recorded(n).items() if record.get(k) != v}
    return [f"the record shows {wrong!r:.300}, sent {case.recorded(n)!r:.300}"] if wrong else []


def judge_context(ctx: Ctx, reference: str, body: bytes) -> list[str]:
    """The stored context is the alert as sent (promise 6 of docs/architecture.md), and the
    agent's page of it renders."""
    url = f"/v1/context/{quote(reference, safe='')}"
    auth = {"Authorization": f"Bearer {CONTEXT_TOKEN}"}
    stored = ctx.client.request("GET", ctx.url + url, headers=auth)
    page = ctx.client.request("GET", ctx.url + url, headers={**auth, "Accept": "text/html"})
    ctx.statuses += [stored.status, page.status]
    try:
        sent = orjson.loads(body.removeprefix(b"\xef\xbb\xbf"))
    except orjson.JSONDecodeError:
        sent = None  # accepted although orjson cannot read it: the record check says more
    out = []
    if stored.status != 200 or (sent is not None and (stored.json() or {}).get("alert") != sent):
        out.append(f"GET {url} answered {stored.status} {stored.raw[:200]!r}, not the alert sent")
    if page.status != 200 or b"<html" not in page.raw.lower():
        out.append(f"the agent page {url} answered {page.status} {page.raw[:200]!r}")
    return out


def judge_http(ctx: Ctx, case: Case, n: str, answer: Answer) -> list[str]:  # noqa: PLR0911
    """What the HTTP door answered for one case."""
    expect, status = case.expect, answer.status
    if status >= 500:
        return [f"answered {status} {answer.raw[:300]!r}"]
    if status in (400, 413):
        doc = answer.json()
        if not expect.reject:
            return [f"refused ({status}), must be accepted: {answer.raw[:300]!r}"]
        return judge_refusal(expect, doc, status)
    if status == 200:
        return [
            f"answered 200 for a key never sent before (a key collision?): {answer.raw[:200]!r}"
        ]
    if status != 202:
        return [f"answered {status}: {answer.raw[:300]!r}"]
    if not expect.accept:
        return ["accepted (202), must be refused"]
    key = case.key(n)
    body = answer.json() or {}
    if key is None or body.get("idempotencyKey") != key:
        return [f"202 names key {body.get('idempotencyKey')!r}, sent {key!r}"]
    out = judge_record(ctx, case, key, n)
    out += judge_context(ctx, str(body.get("referenceId", "")), case.render(n))
    link = str(body.get("links", {}).get("record", ""))
    if not set(link) <= _URL_SAFE:
        out.append(f"links.record {link!r} is not percent-encoded")
    else:
        followed = ctx.get(link)
        if followed.status != 200 or (followed.json() or {}).get("idempotencyKey") != key:
            out.append(f"links.record {link!r} answers {followed.status}, not this record")
    return out


def run_http(ctx: Ctx, cases: Sequence[Case]) -> tuple[list[str], Counter[str]]:
    """Send each case, judge each answer; the failures and the refusals by counted reason."""
    failures: list[str] = []
    refused: Counter[str] = Counter()
    for case in cases:
        n = nonce()
        body = case.render(n)
        answer = ctx.post(body)
        refused.update(_counted(answer))
        if problems := judge_http(ctx, case, n, answer):
            failures.append(describe(case, body, problems))
    return failures, refused


def _counted(answer: Answer) -> list[str]:
    """The reason a refusal is counted under (the first problem's)."""
    if answer.status not in (400, 413):
        return []
    doc = answer.json()
    try:
        return [str(doc["problems"][0]["reason"])]
    except (KeyError, IndexError, TypeError):
        return ["?"]


def run_mqtt(ctx: Ctx, cases: Sequence[Case]) -> tuple[list[str], Counter[str]]:
    """Publish every case (each on a topic of its own), then judge what became of each."""
    assert ctx.listener is not None
    root = ctx.service.topic_root
    sends = []
    for i, case in enumerate(cases):
        n = nonce()
        sends.append((case, n, f"{root}/sensors/c{i}-{n}/alerts", case.render(n)))
    already = len(ctx.listener.messages)

    def reports() -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for m in ctx.listener.messages[already:]:  # type: ignore[union-attr]
            out.setdefault(str(m.get("topic")), []).append(m)
        return out

    def settled(i: int, found: dict[str, list[dict[str, Any]]]) -> bool:
        case, n, topic, _ = sends[i]
        key = case.key(n)
        return topic in found or (key is not None and ctx.record(key) is not None)

    # In chunks: a broker with Mosquitto's defaults drops what queues past 1,000 messages for
    # a client, and this test's listener would miss reports of a larger burst.
    for first in range(0, len(sends), MQTT_CHUNK):
        chunk = range(first, min(first + MQTT_CHUNK, len(sends)))
        publish_all([(sends[i][2], sends[i][3]) for i in chunk])
        pending = set(chunk)
        deadline = time.monotonic() + 20
        while pending and time.monotonic() < deadline:
            found = reports()
            pending -= {i for i in sorted(pending) if settled(i, found)}
            if pending:
                time.sleep(0.1)
    return _judge_sends(ctx, sends, reports())


def _judge_sends(
    ctx: Ctx, sends: list[tuple[Case, str, str, bytes]], found: dict[str, list[dict[str, Any]]]
) -> tuple[list[str], Counter[str]]:
    failures: list[str] = []
    refused: Counter[str] = Counter()
    for case, n, topic, body in sends:
        mine = found.get(topic, [])
        for report in mine:
            refused.update([str((report.get("problems") or [{}])[0].get("reason"))])
        problems = _judge_mqtt(ctx, case, n, mine)
        if problems:
            failures.append(describe(case, body, problems))
    return failures, refused


def _judge_mqtt(  # noqa: PLR0911
    ctx: Ctx, case: Case, n: str, reports: list[dict[str, Any]]
) -> list[str]:
    expect, key = case.expect, case.key(n)
    record = ctx.record(key) if key is not None else None
    if len(reports) > 1:
        return [f"reported {len(reports)} times"]
    if reports and record is not None:
        return [f"both recorded and reported: {reports[0].get('problems')!r:.300}"]
    if reports:
        if not expect.reject:
            return [f"reported as rejected, must be accepted: {reports[0].get('problems')!r:.300}"]
        return judge_refusal(expect, reports[0], None)
    if record is not None:
        if not expect.accept:
            return ["recorded (accepted), must be refused"]
        assert key is not None
        return judge_record(ctx, case, key, n)
    return ["no answer within 20 s: neither a record nor a report on the rejected topic"]


def run_batch(ctx: Ctx, cases: Sequence[Case]) -> tuple[list[str], Counter[str]]:
    return run_http(ctx, cases) if ctx.door == "http" else run_mqtt(ctx, cases)


def run_generated(
    ctx: Ctx, strategy: st.SearchStrategy[Case], examples: int
) -> tuple[list[str], Counter[str]]:
    """A hypothesis run of `strategy` through the door.

    HTTP: each example is judged as it is answered, so a failure is shrunk to a minimal
    payload. MQTT: the examples are published together and judged afterwards.
    """
    failures: list[str] = []
    refused: Counter[str] = Counter()
    drawn: list[Case] = []

    @given(case=strategy)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    def run(case: Case) -> None:
        if ctx.door == "mqtt":
            drawn.append(case)
            return
        found, counted = run_http(ctx, [case])
        refused.update(counted)
        assert not found, found[0]

    try:
        run()
    except Exception as exc:
        notes = "\n    ".join(getattr(exc, "__notes__", []))
        failures.append(f"hypothesis (shrunk): {exc}\n    {notes}")
    if drawn:
        found, counted = run_mqtt(ctx, drawn)
        failures.extend(sorted(found, key=len)[:15])
        if len(found) > 15:
            failures.append(f"... and {len(found) - 15} more (the shortest are shown)")
        refused.update(counted)
    return failures, refused


# --- after each batch ---------------------------------------------------------------------------


def canary(ctx: Ctx) -> list[str]:
    """A critical alert of a customer inside its calling window, sent through the test's door,
    is called: its record reaches `called`, and the emulator received its callback."""
    tag = uuid.uuid4().hex[:10]
    customer, sensor = f"CANARY-{tag}", f"CANARY-S-{tag}"
    ctx.emulator.add_customer(customer, phone=f"+1201555{int(tag[:6], 16) % 10000:04d}")
    doc = alert(sensor=sensor, customer=customer)
    key = doc["idempotencyKey"]
    if ctx.door == "http":
        answer = ctx.post(orjson.dumps(doc))
        if answer.status != 202:
            return [f"canary: POST answered {answer.status} {answer.raw[:200]!r}"]
    else:
        publish_all([(f"{ctx.service.topic_root}/sensors/{sensor}/alerts", orjson.dumps(doc))])
    deadline = time.monotonic() + 15
    record = None
    while time.monotonic() < deadline:
        record = ctx.record(key)
        if record and record.get("outcome"):
            break
        time.sleep(0.05)
    if not record or record.get("outcome") != "called":
        return [f"canary through {ctx.door} not called: {record!r:.500}"]
    received = ctx.client.request("GET", f"{ctx.emulator.url}/_emulator/requests").json()
    called = [
        r
        for r in received
        if r["path"] == CALLBACKS
        and r["status"] == 200
        and (r.get("body") or {}).get("data", {}).get("sensorId") == sensor
    ]
    return [] if len(called) == 1 else [f"canary: {len(called)} callbacks for {sensor}"]


def check_unharmed(
    ctx: Ctx, refused: Counter[str] | None, before: Counter[str], what: str, dead: int = 0
) -> list[str]:
    """After a batch: healthy, no restart, no dead letter, refusals counted, a call still placed."""
    failures = []
    health = ctx.get("/healthz")
    if health.status != 200:
        failures.append(f"/healthz answered {health.status} {health.raw[:200]!r}")
    status = ctx.status()
    restarted = {
        name: (a.get("status"), a.get("restarts"), a.get("lastError"))
        for name, a in status["actors"].items()
        if a.get("restarts") or a.get("status") != "running"
    }
    if restarted:
        failures.append(f"actors restarted or down: {restarted!r:.1000}")
    quarantined = (status.get("deadLetters") or {}).get("quarantined") or {}
    if sum(quarantined.values()) != dead:
        failures.append(f"quarantined in the dead-letter since start: {quarantined}, not {dead}")
    counted = Counter(status["counters"].get("rejected", {})) - before
    if refused is not None and +counted != +refused:
        failures.append(f"rejected counters grew by {dict(counted)}, refusals seen {dict(refused)}")
    metrics = ctx.get("/metrics")
    lines = [
        line
        for line in metrics.raw.decode(errors="replace").splitlines()
        if line.startswith("tripline_dead_letters_total{")
    ]
    if metrics.status != 200 or sum(float(line.rsplit(" ", 1)[1]) for line in lines) != dead:
        failures.append(f"/metrics answered {metrics.status}; dead letters counted: {lines}")
    fives = [s for s in ctx.statuses if s >= 500]
    if fives:
        failures.append(f"{len(fives)} HTTP answers were 5xx: {Counter(fives)}")
    odd = [
        (r["method"], r.get("rawPath", r["path"]))
        for r in ctx.emulator.requests()
        if not _EMULATOR_PATHS.match(r.get("rawPath", r["path"]))
    ]
    if odd:
        failures.append(f"the contact center/CRM was asked for odd paths: {odd[:10]}")
    failures.extend(canary(ctx))
    return [f"after {what}: {f}" for f in failures]


def verdict(failures: list[str]) -> None:
    if failures:
        shown = "\n  ".join(f[:3000] for f in failures[:40])
        pytest.fail(f"{len(failures)} failure(s):\n  {shown}", pytrace=False)


# --- the corpus, a category per batch, through each door ----------------------------------------

CATEGORIES = ("ids", "timestamps", "numbers", "text", "fields", "nesting", "encoding", "sizes")


@pytest.mark.parametrize("category", CATEGORIES)
@pytest.mark.parametrize("door", ["http", "mqtt"])
def test_generated_corpus(
    door: str,
    category: str,
    make_service: Callable[..., ServiceHandle],
    emulator: EmulatorHandle,
    client: Client,
) -> None:
    ctx = start(make_service, emulator, client, door)
    try:
        failures: list[str] = []
        before = ctx.rejected_counts()
        found, refused = run_batch(ctx, named_cases(category, ctx.limits))
        failures += found
        failures += check_unharmed(ctx, refused, before, f"the named {category} cases")
        before = ctx.rejected_counts()
        strategy = categories(ctx.limits)[category]
        found, refused = run_generated(ctx, strategy, EXAMPLES[door])
        failures += found
        failures += check_unharmed(ctx, refused, before, f"the generated {category} cases")
    finally:
        stop(ctx)
    verdict(failures)


@pytest.mark.parametrize("door", ["http", "mqtt"])
def test_nesting_at_every_depth(
    door: str,
    make_service: Callable[..., ServiceHandle],
    emulator: EmulatorHandle,
    client: Client,
) -> None:
    """Arrays in an extra member and objects inside telemetryData, at every document depth from
    2 to orjson's limit and one beyond (1,025)."""
    ctx = start(make_service, emulator, client, door)
    limits = ctx.limits
    base = alert(key=f"deep-{SENTINEL}", sensor="adv-deep", customer="ADV-deep")
    base["alertType"] = "temp_high"
    cases = [
        Case(
            tuple(deep_alert(base, kind, depth, where).items()),
            depth_verdict(depth, limits, f"{kind}s to level {depth} in {where}"),
        )
        for where, kind in (("extra", "array"), ("telemetry", "object"))
        for depth in range(2 if where == "extra" else 3, ORJSON_DEPTH + 2)
    ]
    try:
        before = ctx.rejected_counts()
        failures, refused = run_batch(ctx, cases)
        if len(failures) > 20:
            failures = [*failures[:20], f"... and {len(failures) - 20} more"]
        failures += check_unharmed(ctx, refused, before, "nesting at every depth")
    finally:
        stop(ctx)
    verdict(failures)


# --- a reused key: a conflict; the same alert again: a duplicate --------------------------------


@dataclass(frozen=True)
class Variant:
    """The original alert changed: a conflict, a duplicate, or either (the contract is open)."""

    label: str
    doc: Any
    """The payload (a dict, or Members for another order of the same members)."""
    verdict: str
    """'conflict', 'duplicate' or 'either'."""
    spaced: bool = False


def _variant(label: str, doc: Any, verdict: str, *, spaced: bool = False) -> Variant:
    return Variant(label, doc, verdict, spaced)


@st.composite
def variants(draw: st.DrawFn, original: dict[str, Any]) -> Variant:
    """The original with one thing changed (or nothing but its spelling)."""
    tele = original["telemetryData"]
    other = "V-" + draw(st.text("abcdefXYZ0123456789", min_size=1, max_size=8))
    options = {
        "sensorId": lambda: {**original, "sensorId": other},
        "customerId": lambda: {**original, "customerId": other},
        "alertType": lambda: {**original, "alertType": "smoke"},
        "status": lambda: {**original, "status": "resolved"},
        "currentValue": lambda: {
            **original,
            "telemetryData": {
                **tele,
                "currentValue": tele["currentValue"] + draw(st.integers(1, 99)),
            },
        },
        "threshold": lambda: {**original, "telemetryData": {**tele, "threshold": -1.5}},
        "unit": lambda: {**original, "telemetryData": {**tele, "unit": "fahrenheit"}},
        "telemetry member": lambda: {**original, "telemetryData": {**tele, other: 1}},
    }
    kind = draw(st.sampled_from([*options, "order", "spelling", "timestamp", "severity", "extra"]))
    if kind in options:
        return _variant(f"another {kind}", options[kind](), "conflict")
    if kind == "order":
        members = draw(st.permutations(list(original.items())))
        return _variant(
            "members reordered, spaced", Members(tuple(members)), "duplicate", spaced=True
        )
    if kind == "spelling":  # the same numbers written otherwise: the same telemetry
        same = {**tele, "currentValue": Raw(b"8.95e1"), "threshold": Raw(b"85.000")}
        return _variant("numbers spelt otherwise", {**original, "telemetryData": same}, "duplicate")
    if kind == "timestamp":
        return _variant(
            "another timestamp", {**original, "timestamp": zulu(time.time() - 5)}, "either"
        )
    if kind == "severity":
        return _variant("a severity added", {**original, "severity": "critical"}, "either")
    return _variant("an extra member", {**original, other: "x"}, "either")


def _render(variant: Variant) -> bytes:
    body = encode(variant.doc)
    return b" \n" + body.replace(b",", b" , ") + b"\n" if variant.spaced else body


def judge_reuse_http(variant: Variant, answer: Answer) -> list[str]:
    status, doc = answer.status, answer.json()
    if status == 409:
        if variant.verdict == "duplicate":
            return [f"409 for the same alert: {answer.raw[:300]!r}"]
        problems = (doc or {}).get("problems") or []
        if (
            (doc or {}).get("error") != "conflict"
            or not problems
            or not all(
                isinstance(p, dict)
                and p.get("field") is not None
                and p.get("reason")
                and p.get("message")
                for p in problems
            )
        ):
            return [f"409 without a conflict problem document: {answer.raw[:300]!r}"]
        return []
    if status == 200:
        if variant.verdict == "conflict":
            return [f"200 for another alert under the same key: {answer.raw[:300]!r}"]
        return [] if (doc or {}).get("status") == "duplicate" else [f"200 {answer.raw[:200]!r}"]
    return [f"answered {status}: {answer.raw[:300]!r}"]


@dataclass
class Reuse:
    """The original alert of a key-reuse test and what its variants were answered."""

    ctx: Ctx
    original: dict[str, Any]
    failures: list[str] = field(default_factory=list)
    conflicts: int = 0
    duplicates: int = 0

    def post(self, variant: Variant, door: str = "") -> list[str]:
        answer = self.ctx.post(_render(variant))
        self.conflicts += answer.status == 409
        self.duplicates += answer.status == 200
        return [f"{door}[{variant.label}] {p}" for p in judge_reuse_http(variant, answer)]

    def publish(self, sent: Sequence[Variant], door: str = "") -> None:
        conflicts, duplicates, found = _reuse_over_mqtt(self.ctx, sent)
        self.conflicts += conflicts
        self.duplicates += duplicates
        self.failures += [f"{door}{f}" for f in found]

    def check_after(self, recorded: dict[str, Any], before: dict[str, Any]) -> None:
        """The record is the original's, called once; every answer was counted."""
        key, sensor = self.original["idempotencyKey"], self.original["sensorId"]
        deadline = time.monotonic() + 15
        while (self.ctx.record(key) or {}).get("outcome") is None and time.monotonic() < deadline:
            time.sleep(0.05)
        final = self.ctx.record(key) or {}
        names = ("sensorId", "customerId", "alertType", "status", "telemetryHash", "referenceId")
        self.failures += [
            f"the record's {n} became {final.get(n)!r}, was {recorded.get(n)!r}"
            for n in names
            if final.get(n) != recorded.get(n)
        ]
        if final.get("outcome") != "called":
            self.failures.append(f"the original was not called: {final!r:.300}")
        calls = [
            (r.get("body") or {}).get("data", {}).get("sensorId")
            for r in self.ctx.emulator.callbacks()
        ]
        if calls.count(sensor) != 1 or any(s and s.startswith(("V-", f"{sensor}-")) for s in calls):
            self.failures.append(f"callbacks for {calls}, expected one for {sensor}")
        after = self.ctx.status()["counters"]

        def grew(outcome: str, reason: str) -> int:
            was: int = before.get(outcome, {}).get(reason, 0)
            return int(after.get(outcome, {}).get(reason, 0)) - was

        counted = (grew("rejected", "conflict"), grew("suppressed", "duplicate"))
        if counted != (self.conflicts, self.duplicates):
            self.failures.append(
                f"counted {counted[0]} conflicts and {counted[1]} duplicates, "
                f"answered {self.conflicts} and {self.duplicates}"
            )


@pytest.mark.parametrize("door", ["http", "mqtt"])
def test_a_reused_key_is_a_conflict_and_the_same_alert_a_duplicate(
    door: str,
    make_service: Callable[..., ServiceHandle],
    emulator: EmulatorHandle,
    client: Client,
) -> None:
    """Variants of a recorded alert under its key (hypothesis): another sensor, customer, type,
    status or telemetry is a 409 problem document (over MQTT a report on the rejected topic),
    the same alert again is a 200 duplicate (over MQTT, silence); the record stays the
    original's, which is called once. One conflict and one copy go through the other door."""
    ctx = start(make_service, emulator, client, door)
    tag = uuid.uuid4().hex[:8]
    customer, sensor = f"REUSE-{tag}", f"REUSE-S-{tag}"
    emulator.add_customer(customer, phone=f"+1201555{int(tag[:6], 16) % 10000:04d}")
    original = alert(sensor=sensor, customer=customer)
    original["telemetryData"] = {"currentValue": 89.5, "threshold": 85.0, "unit": "celsius"}
    reuse = Reuse(ctx, original)
    before = ctx.status()["counters"]
    try:
        if door == "http":
            assert ctx.post(orjson.dumps(original)).status == 202
        else:
            topic = f"{ctx.service.topic_root}/sensors/{sensor}/alerts"
            publish_all([(topic, orjson.dumps(original))])
        deadline = time.monotonic() + 10
        while ctx.record(original["idempotencyKey"]) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        recorded = ctx.record(original["idempotencyKey"])
        assert recorded is not None, "the original was not recorded"
        drawn: list[Variant] = []

        @given(variant=variants(original))
        @settings(
            max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def run(variant: Variant) -> None:
            if door == "mqtt":
                drawn.append(variant)
                return
            problems = reuse.post(variant)
            assert not problems, f"{_render(variant)[:300]!r}: {problems}"

        try:
            run()
        except Exception as exc:  # reported with the rest
            reuse.failures.append(f"hypothesis (shrunk): {exc}")
        fixed = [  # the same bytes twice, and a conflict
            _variant("the same bytes", original, "duplicate"),
            _variant("the same bytes again", original, "duplicate"),
            _variant("another sensorId", {**original, "sensorId": f"{sensor}-2"}, "conflict"),
        ]
        if door == "mqtt":
            reuse.publish([*drawn, *fixed])
            for variant in (fixed[0], fixed[2]):
                reuse.failures += reuse.post(variant, "over http ")
        else:
            for variant in fixed:
                reuse.failures += reuse.post(variant)
            reuse.publish([fixed[0], fixed[2]], "over mqtt ")
        reuse.check_after(recorded, before)
        reuse.failures += check_unharmed(ctx, None, Counter(), "key reuse")
    finally:
        stop(ctx)
    verdict(reuse.failures)


def _reuse_over_mqtt(ctx: Ctx, sent: Sequence[Variant]) -> tuple[int, int, list[str]]:
    """Publish each variant on a topic of its own: a conflict is reported on the rejected
    topic, a duplicate is not. Returns conflicts and duplicates seen, and the failures."""
    listener = ctx.listener or Listener(ctx.service.config.mqtt.rejected_topic)
    try:
        already = len(listener.messages)
        root = ctx.service.topic_root
        topics = [f"{root}/sensors/reuse{i}-{nonce()}/alerts" for i in range(len(sent))]
        publish_all([(t, _render(v)) for t, v in zip(topics, sent, strict=True)])
        expected = {t for t, v in zip(topics, sent, strict=True) if v.verdict == "conflict"}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            seen = {m.get("topic") for m in listener.messages[already:]}
            if expected <= seen:
                break
            time.sleep(0.05)
        time.sleep(0.3)  # reports that must not come
        reports: dict[str, list[dict[str, Any]]] = {}
        for m in listener.messages[already:]:
            reports.setdefault(str(m.get("topic")), []).append(m)
    finally:
        if ctx.listener is None:
            listener.close()
    failures, conflicts, duplicates = [], 0, 0
    for topic, variant in zip(topics, sent, strict=True):
        mine = reports.get(topic, [])
        reasons = [p.get("reason") for m in mine for p in m.get("problems") or []]
        if mine:
            conflicts += 1
        else:
            duplicates += 1
        if variant.verdict == "conflict" and (len(mine) != 1 or "conflict" not in reasons):
            failures.append(f"[{variant.label}] published: {len(mine)} reports, reasons {reasons}")
        elif variant.verdict == "duplicate" and mine:
            failures.append(f"[{variant.label}] published: reported {reasons} for the same alert")
        elif variant.verdict == "either" and mine and set(reasons) != {"conflict"}:
            failures.append(f"[{variant.label}] published: reported {reasons}")
    return conflicts, duplicates, failures


# --- ids crafted against our Redis key names ----------------------------------------------------

SENSOR_KEYS = ("cool", "readings", "snap", "flaptask")
CUSTOMER_KEYS = ("profile", "calls", "groupn")


def crafted_pairs() -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """Pairs of (sensorId, customerId) whose keys would be one and the same unescaped.

    A sensor key is `{c:<customer>}:<kind>:<sensor>`, a customer key `{c:<customer>}:<kind>`:
    with customer X and sensor `Y}:K2:T`, the first alert's K1 key reads `{c:X}:K1:Y}:K2:T`,
    which is the K2 key of customer `X}:K1:Y` and sensor T.
    """
    pairs = [(("Q}:cool:T", "SECK"), ("T", "SECK}:readings:Q"))]
    for n, (k1, k2) in enumerate(itertools.product(SENSOR_KEYS, SENSOR_KEYS + CUSTOMER_KEYS)):
        x, y, t = f"X{n}", f"Y{n}", f"T{n}"
        if k2 in SENSOR_KEYS:
            pairs.append(((f"{y}}}:{k2}:{t}", x), (t, f"{x}}}:{k1}:{y}")))
        else:
            pairs.append(((f"{y}}}:{k2}", x), (f"S{n}", f"{x}}}:{k1}:{y}")))
    return pairs


def test_ids_crafted_against_key_names_are_decided_each_on_its_own(
    make_service: Callable[..., ServiceHandle],
    emulator: EmulatorHandle,
    client: Client,
) -> None:
    """Both alerts of every pair are called: no key of one is a key of the other (the first
    of each pair comes over HTTP, the second over MQTT)."""
    ctx = start(make_service, emulator, client, "http")
    tag = uuid.uuid4().hex[:6]
    pairs = crafted_pairs()
    alerts = []
    for i, pair in enumerate(pairs):
        for j, (sensor, crafted) in enumerate(pair):
            customer = f"{crafted}{tag}" if j == 0 else crafted.replace("}", f"{tag}}}", 1)
            emulator.add_customer(customer, phone=f"+1201555{(2 * i + j) % 10000:04d}")
            alerts.append(alert(sensor=sensor, customer=customer))
    failures: list[str] = []
    try:
        firsts, seconds = alerts[0::2], alerts[1::2]
        for doc in firsts:
            answer = ctx.post(orjson.dumps(doc))
            if answer.status != 202:
                failures.append(f"{doc['sensorId']!r}/{doc['customerId']!r}: {answer.status}")
        root = ctx.service.topic_root
        publish_all(
            [(f"{root}/sensors/pair{i}/alerts", orjson.dumps(d)) for i, d in enumerate(seconds)]
        )
        deadline = time.monotonic() + 20
        outcomes: dict[str, Any] = {}
        while time.monotonic() < deadline:
            outcomes = {d["idempotencyKey"]: ctx.record(d["idempotencyKey"]) for d in alerts}
            if all(r and r.get("outcome") for r in outcomes.values()):
                break
            time.sleep(0.2)
        for doc in alerts:
            rec = outcomes.get(doc["idempotencyKey"]) or {}
            if rec.get("outcome") != "called":
                failures.append(
                    f"sensorId {doc['sensorId']!r} customerId {doc['customerId']!r}: "
                    f"{rec.get('outcome')}/{rec.get('reason')} {rec.get('detail', '')!r:.200}"
                )
        called = Counter(
            (r.get("body") or {}).get("data", {}).get("sensorId") for r in emulator.callbacks()
        )
        twice = {s: n for s, n in called.items() if n > 1}
        if twice:
            failures.append(f"sensors called more than once: {twice}")
        failures += check_unharmed(ctx, Counter(), Counter(), "the crafted pairs")
    finally:
        stop(ctx)
    verdict(failures)


# --- the HTTP transport: framing, pacing, headers, content types, origins ------------------------

HOOK_TOKEN = "hook-token"


@dataclass(frozen=True)
class Wire:
    """One raw HTTP exchange and the answers allowed (None: the server closed without one)."""

    label: str
    allowed: frozenset[int | None]
    head: list[tuple[bytes, bytes]]
    body: bytes = b""
    request_line: bytes = b"POST /v1/alerts HTTP/1.1"
    chunks: int = 1
    """Send in this many pieces..."""
    pause: float = 0.0
    """...this long apart."""
    cut: int = 0
    """Bytes of the body never sent (the write side is then shut)."""
    problem: bool = True
    """A 4xx from our handlers must be a problem document."""


def exchange(port: int, wire: Wire, timeout: float = 5.0) -> tuple[int | None, bytes]:
    head = wire.request_line + b"\r\n" + b"".join(k + b": " + v + b"\r\n" for k, v in wire.head)
    data = head + b"\r\n" + wire.body[: len(wire.body) - wire.cut]
    size = max(1, -(-len(data) // wire.chunks))
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            for i in range(0, len(data), size):
                if i and wire.pause:
                    time.sleep(wire.pause)
                sock.sendall(data[i : i + size])
            if wire.cut:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered (413) and closed before the rest was sent
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except OSError:
            pass
    if not received.startswith(b"HTTP/1."):
        return None, received
    return int(received.split(b" ", 2)[1]), received.partition(b"\r\n\r\n")[2]


def transport_cases(port: int) -> list[Wire]:  # noqa: PLR0915 - a table
    def body() -> bytes:
        return orjson.dumps(alert(customer="ADV-wire", sensor="adv-wire"))

    def head(
        payload: bytes,
        *extra: tuple[bytes, bytes],
        ctype: bytes | None = b"application/json",
        auth: bytes | None = b"Bearer " + HOOK_TOKEN.encode(),
        length: int | None = -1,
    ) -> list[tuple[bytes, bytes]]:
        out = [(b"Host", f"127.0.0.1:{port}".encode()), (b"Connection", b"close")]
        if ctype is not None:
            out.append((b"Content-Type", ctype))
        if auth is not None:
            out.append((b"Authorization", auth))
        if length is not None:
            out.append((b"Content-Length", str(len(payload) if length < 0 else length).encode()))
        return out + list(extra)

    accepted = frozenset({202})
    refused_4xx = frozenset({400, 401, 403, 405, 408, 411, 413, 414, 415, 417, 431, None})
    cases: list[Wire] = []

    def add(label: str, allowed: Iterable[int | None], payload: bytes, **kw: Any) -> None:
        hdrs = kw.pop("hdrs", None)
        cases.append(
            Wire(
                label,
                frozenset(allowed),
                hdrs if hdrs is not None else head(payload),
                payload,
                **kw,
            )
        )

    b = body()
    add("a valid alert (control)", accepted, b)
    # Framing.
    add("truncated: Content-Length 100 more than sent", {400, None}, b + b"x" * 100, cut=100)
    add("truncated mid-JSON", {400, None}, b, cut=len(b) // 2)
    b = body()
    add("trickled: 20 pieces 40 ms apart", {202}, b, chunks=20, pause=0.04)
    b = body()
    add(
        "Content-Length: -1",
        {400},
        b,
        hdrs=[*head(b, length=None), (b"Content-Length", b"-1")],
        problem=False,
    )
    add(
        "Content-Length: abc",
        {400},
        b,
        hdrs=[*head(b, length=None), (b"Content-Length", b"abc")],
        problem=False,
    )
    add(
        "two different Content-Lengths",
        {400},
        b,
        hdrs=[*head(b), (b"Content-Length", str(len(b) + 1).encode())],
        problem=False,
    )
    chunked = f"{len(b):x}\r\n".encode() + b + b"\r\n0\r\n\r\n"
    add(
        "Content-Length and Transfer-Encoding: chunked",
        {400},
        chunked,
        hdrs=[*head(chunked), (b"Transfer-Encoding", b"chunked")],
        problem=False,
    )
    b = body()
    chunked = f"{len(b):x}\r\n".encode() + b + b"\r\n0\r\n\r\n"
    add(
        "chunked",
        accepted,
        chunked,
        hdrs=[*head(chunked, length=None), (b"Transfer-Encoding", b"chunked")],
    )
    junk = b"zz\r\n" + b + b"\r\n0\r\n\r\n"
    add(
        "chunked with a bad chunk size",
        {400},
        junk,
        hdrs=[*head(junk, length=None), (b"Transfer-Encoding", b"chunked")],
        problem=False,
    )
    big = b'{"pad":"' + b"x" * (1 << 20) + b'"}'
    add("1 MB with its Content-Length", {413}, big)
    piece = 1 << 16
    big_chunked = (
        b"".join(
            f"{len(big[i : i + piece]):x}\r\n".encode() + big[i : i + piece] + b"\r\n"
            for i in range(0, len(big), piece)
        )
        + b"0\r\n\r\n"
    )
    add(
        "1 MB chunked",
        {413, None},
        big_chunked,
        hdrs=[*head(big_chunked, length=None), (b"Transfer-Encoding", b"chunked")],
    )
    # Headers.
    for label, auth, allowed in (
        ("Authorization: Bearer \\xff", b"Bearer \xff", {401}),
        ("Authorization: \\xff\\xfe", b"\xff\xfe", {401}),
        ("Authorization: Bearer <token>\\xff", b"Bearer " + HOOK_TOKEN.encode() + b"\xff", {401}),
        (
            "Authorization: Bearer <token> + NUL",
            b"Bearer " + HOOK_TOKEN.encode() + b"\x00",
            {400, 401},
        ),
        ("no Authorization", None, {401}),
        ("lowercase bearer", b"bearer " + HOOK_TOKEN.encode(), {202, 401}),
        ("Bearer with two spaces", b"Bearer  " + HOOK_TOKEN.encode(), {202, 401}),
        ("a huge Authorization", b"Bearer " + b"t" * 20_000, {400, 401, 431}),
    ):
        b = body()
        add(label, allowed, b, hdrs=head(b, auth=auth), problem=400 not in allowed)
    b = body()
    add(
        "Authorization twice (wrong, then right)",
        {400, 401},
        b,
        hdrs=[*head(b, auth=b"Bearer wrong"), (b"Authorization", b"Bearer " + HOOK_TOKEN.encode())],
    )
    b = body()
    add(
        "a 100 KB header",
        refused_4xx,
        b,
        hdrs=[*head(b), (b"X-Huge", b"h" * 100_000)],
        problem=False,
    )
    b = body()
    many = [(f"X-H{i}".encode(), b"v" * 40) for i in range(500)]
    add("500 headers", refused_4xx | accepted, b, hdrs=head(b) + many, problem=False)
    b = body()
    add(
        "\\x80\\xff in another header",
        {202, 400},
        b,
        hdrs=[*head(b), (b"X-Note", b"\x80\xff")],
        problem=False,
    )
    # Content types.
    for ctype, allowed in (
        (b"text/plain", {415}),
        (b"application/x-www-form-urlencoded", {415}),
        (b"multipart/form-data; boundary=x", {415}),
        (b"text/plain; charset=utf-8", {415}),
        (b"application/json; charset=utf-8", {202}),
        (b"Application/JSON", {202}),
        (b"application/json; charset=latin-1", {202, 400, 415}),
        (b"application/octet-stream", {202, 415}),
        (b"text/json", {202, 415}),
        (b"application/vnd.api+json", {202, 415}),
        (None, {202, 415}),
        (b"", {202, 415}),
        (b"\xff/\xfe", {400, 415}),
    ):
        b = body()
        add(f"Content-Type: {ctype!r}", allowed, b, hdrs=head(b, ctype=ctype))
    # Origins: a browser's cross-site request.
    for label, extra, allowed in (
        ("Origin: https://evil.example", [(b"Origin", b"https://evil.example")], {403}),
        ("Origin: null", [(b"Origin", b"null")], {403}),
        ("Origin: http://127.0.0.1 (no port)", [(b"Origin", b"http://127.0.0.1")], {403}),
        ("Origin with \\xff", [(b"Origin", b"https://\xff.example")], {400, 403}),
        ("Sec-Fetch-Site: cross-site", [(b"Sec-Fetch-Site", b"cross-site")], {403}),
        (
            "same Origin, Sec-Fetch-Site: cross-site",
            [(b"Origin", f"http://127.0.0.1:{port}".encode()), (b"Sec-Fetch-Site", b"cross-site")],
            {403},
        ),
        ("same Origin", [(b"Origin", f"http://127.0.0.1:{port}".encode())], {202, 403}),
        ("Sec-Fetch-Site: none", [(b"Sec-Fetch-Site", b"none")], {202}),
        (
            "two Origins, one foreign",
            [
                (b"Origin", f"http://127.0.0.1:{port}".encode()),
                (b"Origin", b"https://evil.example"),
            ],
            {400, 403},
        ),
    ):
        b = body()
        add(label, allowed, b, hdrs=head(b) + extra)
    b = body()
    add(
        "a form from a foreign page",
        {403, 415},
        b"a=1",
        hdrs=[
            *head(b"a=1", ctype=b"application/x-www-form-urlencoded", auth=None),
            (b"Origin", b"https://evil.example"),
            (b"Sec-Fetch-Site", b"cross-site"),
        ],
    )
    b = body()
    add(
        "text/plain from a foreign page, no token",
        {401, 403, 415},
        b,
        hdrs=[*head(b, ctype=b"text/plain", auth=None), (b"Origin", b"https://evil.example")],
    )
    # Methods and request lines.
    add(
        "GET /v1/alerts",
        {405},
        b"",
        request_line=b"GET /v1/alerts HTTP/1.1",
        hdrs=head(b""),
        problem=False,
    )
    add(
        "DELETE /v1/alerts",
        {405},
        b"",
        request_line=b"DELETE /v1/alerts HTTP/1.1",
        hdrs=head(b""),
        problem=False,
    )
    add(
        "BREW /v1/alerts",
        {400, 405},
        b"",
        request_line=b"BREW /v1/alerts HTTP/1.1",
        hdrs=head(b""),
        problem=False,
    )
    add(
        "a request line of junk",
        {400, None},
        b"",
        request_line=b"\xff\xfe junk",
        hdrs=[],
        problem=False,
    )
    b = body()
    add(
        "HTTP/1.0 without Host",
        {202},
        b,
        request_line=b"POST /v1/alerts HTTP/1.0",
        hdrs=head(b)[1:],
    )
    return cases


def test_the_http_transport_refuses_odd_requests_and_never_answers_5xx(
    make_service: Callable[..., ServiceHandle],
    emulator: EmulatorHandle,
    client: Client,
) -> None:
    ctx = start(make_service, emulator, client, "http", TRIPLINE__HTTP__WEBHOOK_TOKEN=HOOK_TOKEN)
    ctx.headers = {"Authorization": f"Bearer {HOOK_TOKEN}"}
    port = int(ctx.url.rsplit(":", 1)[1])
    failures: list[str] = []
    try:
        for wire in transport_cases(port):
            status, body = exchange(port, wire)
            if status is not None:
                ctx.statuses.append(status)
            if status not in wire.allowed:
                allowed = sorted(wire.allowed, key=str)
                failures.append(
                    f"[{wire.label}] answered {status} {body[:200]!r}, allowed {allowed}"
                )
            elif status is not None and wire.problem and 400 <= status < 500:
                try:
                    doc = orjson.loads(body)
                except orjson.JSONDecodeError:
                    doc = None
                if not isinstance(doc, dict) or not doc.get("error") or not doc.get("problems"):
                    failures.append(
                        f"[{wire.label}] {status} is not a problem document: {body[:200]!r}"
                    )
        failures += check_unharmed(ctx, None, Counter(), "the transport cases")
    finally:
        stop(ctx)
    verdict(failures)


# --- a poison message and a restart -------------------------------------------------------------


def poison_messages(root: str, keys: Keys, redis_client: redis.Redis) -> list[Poison]:
    """Nesting orjson reads (1,024 levels) but cannot write back (254), in an extra member and
    in telemetryData; and an alert whose record key another type already holds (WRONGTYPE on
    every attempt to record it: the dead-letter's case)."""
    out = []
    for where in ("deep", "telemetry", "taken"):
        doc = alert(sensor=f"adv-poison-{where}", customer="ADV-poison", alert_type="temp_high")
        if where == "deep":
            payload = encode({**doc, "deep": nested("array", 1023)})
        elif where == "telemetry":
            tele = {**doc["telemetryData"], "history": nested("object", 1022)}
            payload = encode({**doc, "telemetryData": tele})
        else:
            payload = orjson.dumps(doc)
            redis_client.set(keys.record(doc["idempotencyKey"]), "not a hash", ex=600)
        topic = f"{root}/sensors/poison-{where}/alerts"
        out.append(Poison(where, topic, payload, doc["idempotencyKey"]))
    return out


@dataclass(frozen=True)
class Poison:
    """A message our side cannot record as an alert."""

    kind: str
    topic: str
    payload: bytes
    key: str


def dead_letters(redis_client: redis.Redis, stream: str, p: Poison) -> int:
    """Entries of the dead-letter stream for this message (by its topic or its key)."""
    entries: list[tuple[bytes, dict[bytes, bytes]]] = redis_client.xrange(stream)  # type: ignore[assignment]
    return sum(
        1
        for _, e in entries
        if e.get(b"topic", b"").decode() == p.topic
        or e.get(b"idempotencyKey", b"").decode() == p.key
    )


def quarantined(ctx: Ctx) -> int:
    counts = (ctx.status().get("deadLetters") or {}).get("quarantined") or {}
    return sum(counts.values())


def wait_until(predicate: Callable[[], Any], timeout: float) -> None:
    """Poll until `predicate` holds or `timeout` passes (the checks after say what was wrong)."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.1)


def judge_poison(
    poison: list[Poison], counts: Callable[[Poison], tuple[int, int]], second: Ctx
) -> list[str]:
    """Each message answered once; the one that cannot be recorded kept in the dead-letter."""
    failures = []
    for p in poison:
        reported, kept = counts(p)
        if reported > 1 or kept > 1 or not reported + kept or (p.kind == "taken" and kept != 1):
            failures.append(
                f"{p.kind}: {reported} reports on the rejected topic, {kept} dead letters"
            )
        if p.kind != "taken" and second.record(p.key) is not None:
            failures.append(f"{p.kind}: recorded as an alert")
    return failures


def test_poison_is_answered_once_and_not_redelivered_after_a_restart(
    make_service: Callable[..., ServiceHandle],
    emulator: EmulatorHandle,
    client: Client,
    redis_client: redis.Redis,
) -> None:
    """Before the depth limit a deep message crashed the subscriber before its ack, and the
    broker gave it to each new one. Now each poison message is answered once (a report on the
    rejected topic, and the unrecordable one a dead-letter entry), the critical alert published
    right behind them is called, and a restart (stop, start on the same client id and prefix)
    meets none of them again."""
    first = start(make_service, emulator, client, "mqtt")
    stream = f"{first.service.prefix}:{{dlq}}:deadletter"
    poison = poison_messages(first.service.topic_root, Keys(first.service.prefix), redis_client)
    tag = uuid.uuid4().hex[:8]
    emulator.add_customer(f"BEHIND-{tag}", phone=f"+1201555{int(tag[:6], 16) % 10000:04d}")
    behind = alert(sensor=f"BEHIND-S-{tag}", customer=f"BEHIND-{tag}")
    failures: list[str] = []
    reports: list[dict[str, Any]] = []

    def counts(p: Poison) -> tuple[int, int]:
        reported = sum(1 for m in reports if m.get("topic") == p.topic)
        return reported, dead_letters(redis_client, stream, p)

    try:
        assert first.listener is not None
        reports = first.listener.messages
        behind_topic = f"{first.service.topic_root}/sensors/behind/alerts"
        publish_all([*((p.topic, p.payload) for p in poison), (behind_topic, orjson.dumps(behind))])
        wait_until(lambda: all(sum(counts(p)) for p in poison), 10)
        wait_until(lambda: (first.record(behind["idempotencyKey"]) or {}).get("outcome"), 15)
        time.sleep(0.5)  # a crashing subscriber would be replaced meanwhile
        actors = first.status()["actors"]
        restarted = {n: a.get("restarts") for n, a in actors.items() if a.get("restarts")}
        if restarted:
            failures.append(f"first instance: actors restarted {restarted}")
        kept = sum(dead_letters(redis_client, stream, p) for p in poison)
        if quarantined(first) != kept:
            failures.append(
                f"the first instance's /status counts {quarantined(first)}, {kept} kept"
            )
        reports = list(reports)
        stop(first)
        first.service.stop()

        second = start(make_service, emulator, client, "mqtt")
        assert second.listener is not None
        # No refusal, no quarantine: the canary is the only message the second one meets.
        failures += check_unharmed(second, Counter(), Counter(), "the restart")
        reports += second.listener.messages
        stop(second)
        failures += judge_poison(poison, counts, second)
        decided = second.record(behind["idempotencyKey"]) or {}
        if decided.get("outcome") != "called":
            failures.append(f"the alert published behind the poison: {decided!r:.300}")
    finally:
        stop(first)
    verdict(failures)


def test_an_alert_our_side_cannot_record_is_a_problem_over_http_not_a_5xx(
    make_service: Callable[..., ServiceHandle],
    emulator: EmulatorHandle,
    client: Client,
    redis_client: redis.Redis,
) -> None:
    """The webhook's twin of the dead-letter case: the record key held by another type."""
    ctx = start(make_service, emulator, client, "http")
    doc = alert(sensor="adv-taken", customer="ADV-taken", alert_type="temp_high")
    keys = Keys(ctx.service.prefix)
    redis_client.set(keys.record(doc["idempotencyKey"]), "not a hash", ex=600)
    failures: list[str] = []
    try:
        answer = ctx.post(orjson.dumps(doc))
        problem = answer.json() or {}
        if answer.status >= 500 or answer.status < 400 or not problem.get("problems"):
            failures.append(f"answered {answer.status} {answer.raw[:300]!r}")
        entries: list[tuple[bytes, dict[bytes, bytes]]] = redis_client.xrange(keys.dead_letters())  # type: ignore[assignment]
        sources = [e.get(b"source") for _, e in entries]
        if sources != [b"http"]:
            failures.append(f"dead-letter sources {sources}, expected one from http")
        rejected = Counter(ctx.status()["counters"].get("rejected", {}))
        failures += check_unharmed(ctx, None, Counter(), "the unrecordable alert", dead=1)
        if sum(rejected.values()) != 1:
            failures.append(f"rejected counted {dict(rejected)}")
    finally:
        stop(ctx)
    verdict(failures)
