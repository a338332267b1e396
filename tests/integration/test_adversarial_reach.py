"""Reaching the customer (#17) attacked, on real Redis, Mosquitto and the emulator.

A buggy contact center (garbage, throttled or hanging answers to the results request, a
garbled answer to a dial), a hostile network (forged, replayed, garbled Twilio status
callbacks), a hostile CRM document (contacts by the hundred, contacts that are not numbers,
zones that are not zones) and a stressed ladder (resolved, paused, under maintenance, many
alerts of one customer). The rule: bad input gets a clear error and loses nothing else, every
actor survives, and a critical alert sent afterwards is still called and followed.

A Genesys "front" stands between the service and the emulator: it passes every request
through, except those a test takes over.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson
import pytest
import redis
from aiohttp import web

from tests.conftest import (
    AppThread,
    EmulatorHandle,
    ServiceHandle,
    alert,
    free_port,
    http,
    wait_for,
)
from tripline.adapters.attempts import follow_key
from tripline.adapters.store import Keys

pytestmark = [pytest.mark.integration, pytest.mark.long(170)]

FAST = {
    "TRIPLINE__REACH__RETRY_AFTER_SECONDS": "{ critical = 1, high = 1, normal = 1, low = 1 }",
    "TRIPLINE__REACH__MAX_ATTEMPTS": "{ critical = 4, high = 3, normal = 1, low = 1 }",
    "TRIPLINE__REACH__ATTEMPTS_PER_CONTACT": "{ critical = 2, high = 1, normal = 1, low = 1 }",
    "TRIPLINE__OUTCOMES__POLL_SECONDS": "0.2",
    "TRIPLINE__COMPLY__NUMBER_CAPS": '["50/24h"]',
    "TRIPLINE__COMPLY__CUSTOMER_CAPS": '["50/24h"]',
}
ADMIN = {"Authorization": "Bearer adm"}
SECOND = "+12015550142"
THIRD = "+12015550143"
DETAILS = "/api/v2/analytics/conversations/details/query"
CALLBACKS = "/api/v2/conversations/callbacks"
TWILIO_TOKEN = "demo-twilio-token"

Override = Callable[[web.Request, bytes], Awaitable[web.StreamResponse | None]]


class Front:
    """Genesys as the service sees it: the emulator behind, a test's overrides in front."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.overrides: dict[str, Override] = {}
        self.answered: list[tuple[str, int]] = []
        self.asked: list[str] = []
        self.slow: dict[str, float] = {}
        """Seconds to hold the upstream's answer to a path ending so."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.app = AppThread(app)
        self.url = self.app.url

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.asked.append(request.path)
        override = self.overrides.get(request.path)
        if override is not None and (answer := await override(request, body)) is not None:
            self.answered.append((request.path, answer.status))
            return answer
        headers = {
            k: v for k, v in request.headers.items() if k in ("Authorization", "Content-Type")
        }
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                self.upstream + request.rel_url.raw_path_qs,
                data=body,
                headers=headers,
            ) as resp,
        ):
            raw = await resp.read()
            kept = {k: v for k, v in resp.headers.items() if k in ("Content-Type", "Retry-After")}
            for ending, seconds in self.slow.items():
                if request.path.endswith(ending):
                    await asyncio.sleep(seconds)
            self.answered.append((request.path, resp.status))
            return web.Response(status=resp.status, body=raw, headers=kept)

    def stop(self) -> None:
        self.overrides.clear()
        self.app.stop()


@pytest.fixture
def front(emulator: EmulatorHandle) -> Any:
    handle = Front(emulator.url)
    yield handle
    handle.stop()


@pytest.fixture
def reach(make_service: Callable[..., ServiceHandle]) -> Callable[..., ServiceHandle]:
    def make(**env: str) -> ServiceHandle:
        return make_service(**{**FAST, "TRIPLINE__HTTP__ADMIN_TOKEN": "adm", **env}).start()

    return make


def results(emulator: EmulatorHandle, *plan: Any, delay: float = 0.3, **more: Any) -> None:
    status, body = http(
        "PUT",
        f"{emulator.url}/_emulator/settings",
        {"call_results": list(plan), "call_result_delay_seconds": delay, **more},
    )
    assert status == 200, body


def record_of(service: ServiceHandle, key: str) -> dict[str, Any] | None:
    """GET /v1/alerts/{key}, the key as one escaped path segment (it may hold '/')."""
    status, body = http("GET", f"{service.url}/v1/alerts/{quote(key, safe='')}")
    return body if status == 200 else None


def ended(service: ServiceHandle, key: str, timeout: float = 15.0) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        rec = record_of(service, key)
        return rec if rec and rec.get("result") not in (None, "pending") else None

    found: dict[str, Any] = wait_for(done, timeout=timeout, interval=0.1)
    return found


def ladder_state(redis_client: redis.Redis, service: ServiceHandle, key: str) -> str:
    raw = redis_client.hget(Keys(service.prefix).record(key), "attemptState")
    return raw.decode() if isinstance(raw, bytes) else str(raw or "")


def called_numbers(emulator: EmulatorHandle) -> list[str]:
    return [c["body"]["callbackNumbers"][0] for c in emulator.callbacks()]


def critical_still_called(service: ServiceHandle, emulator: EmulatorHandle) -> None:
    """A critical alert of another customer, afterwards: called, and followed to its result."""
    emulator.add_customer("CUST-AFTER")
    doc = alert(customer="CUST-AFTER", sensor=f"SNS-{uuid.uuid4().hex[:6]}")
    service.publish(doc, sensor=doc["sensorId"])
    record = ended(service, doc["idempotencyKey"])
    assert record["outcome"] == "called"
    assert record["result"] == "reached"


def json_answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Override:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)

    async def answer(_request: web.Request, _body: bytes) -> web.Response:
        return web.Response(
            status=status, body=raw, content_type="application/json", headers=headers
        )

    return answer


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def foreign_conversations(count: int) -> dict[str, Any]:
    """Ended, reached-looking conversations of ids nobody asked for."""
    return {
        "conversations": [
            {
                "conversationId": str(uuid.uuid4()),
                "conversationEnd": "2024-01-01T00:00:00Z",
                "participants": [
                    {
                        "purpose": "agent",
                        "sessions": [{"segments": [{"segmentType": "interact"}]}],
                    }
                ],
            }
            for _ in range(count)
        ]
    }


async def _hang(_request: web.Request, _body: bytes) -> web.Response:
    await asyncio.sleep(3)  # thrice the service's request timeout
    return web.Response(status=204)


GARBAGE: dict[str, Override] = {
    "conversations-a-string": json_answer(200, {"conversations": "all of them"}),
    "body-a-list": json_answer(200, [1, "two", None, {"conversations": []}]),
    "wrong-types-inside": json_answer(
        200,
        {
            "conversations": [
                1,
                "x",
                None,
                [],
                {"conversationId": 5},
                {"conversationId": None, "participants": {"a": 1}},
                {"conversationId": ["x"], "conversationEnd": 7},
            ]
        },
    ),
    "not-json": json_answer(200, b"<html>gateway</html>"),
    "truncated-json": json_answer(200, b'{"conversations": [{"conversationId": "'),
    "deeply-nested-200": json_answer(200, nested(1000)),
    "too-deep-to-parse": json_answer(200, nested(5000)),
    "ids-never-asked-for": json_answer(200, foreign_conversations(300)),
    "huge-array": json_answer(200, {"conversations": [{"conversationId": "x"}] * 200_000}),
    # A short wait: the polls are held for it (test_a_throttled_results_request_waits...).
    "429-retry-after": json_answer(429, {"message": "slow down"}, {"Retry-After": "1"}),
    "500": json_answer(500, {"message": "boom"}),
    "500-deeply-nested-message": json_answer(500, b'{"message":' + nested(990) + b"}"),
    "hang": _hang,
}


@pytest.mark.parametrize("garbage", list(GARBAGE))
def test_garbage_answers_to_the_results_request_keep_the_ladder(
    reach: Callable[..., ServiceHandle],
    emulator: EmulatorHandle,
    front: Front,
    redis_client: redis.Redis,
    garbage: str,
) -> None:
    emulator.add_customer("CUST-9981")
    results(emulator, "no_answer")
    front.overrides[DETAILS] = GARBAGE[garbage]
    service = reach(
        TRIPLINE__GENESYS__BASE_URL=front.url,
        TRIPLINE__DIALER__REQUEST_TIMEOUT_SECONDS="1",
    )
    doc = alert()
    key = doc["idempotencyKey"]
    service.publish(doc, sensor=doc["sensorId"])
    wait_for(lambda: service.outcome(key) == "called")
    # Several polls answered with garbage: nothing is made of them.
    wait_for(lambda: front.asked.count(DETAILS) >= 3, timeout=10)
    record = service.record(key)
    assert record is not None
    assert record["result"] == "pending"
    assert [a["n"] for a in record["attempts"]] == [1]
    assert ladder_state(redis_client, service, key) == "placed"
    assert len(emulator.callbacks()) == 1

    front.overrides.clear()  # the contact center recovers: the ladder goes on from where it was
    record = ended(service, key)
    assert record["result"] == "reached"
    assert [(a["n"], a["result"]) for a in record["attempts"]] == [
        (1, "not_reached"),
        (2, "reached"),
    ]
    assert len(emulator.callbacks()) == 2
    critical_still_called(service, emulator)


def test_a_throttled_results_request_waits_for_its_retry_after(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle, front: Front
) -> None:
    emulator.add_customer("CUST-9981")
    results(emulator, "answered")
    front.overrides[DETAILS] = json_answer(429, {"message": "slow down"}, {"Retry-After": "30"})
    service = reach(TRIPLINE__GENESYS__BASE_URL=front.url)
    doc = alert()
    service.publish(doc, sensor=doc["sensorId"])
    wait_for(lambda: front.asked.count(DETAILS) >= 1, timeout=10)
    asked = front.asked.count(DETAILS)
    time.sleep(2.5)
    assert front.asked.count(DETAILS) - asked <= 1


def test_a_throttled_results_request_is_asked_again_and_the_ladder_goes_on(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle, front: Front
) -> None:
    emulator.add_customer("CUST-9981")
    results(emulator, "busy")
    throttled = {"left": 3}

    async def twice_throttled(_request: web.Request, _body: bytes) -> web.Response | None:
        if throttled["left"] <= 0:
            return None
        throttled["left"] -= 1
        return web.json_response({"message": "slow down"}, status=429, headers={"Retry-After": "1"})

    front.overrides[DETAILS] = twice_throttled
    service = reach(TRIPLINE__GENESYS__BASE_URL=front.url)
    doc = alert()
    service.publish(doc, sensor=doc["sensorId"])
    record = ended(service, doc["idempotencyKey"])
    assert [a["resultReason"] for a in record["attempts"]] == ["busy", None]
    assert record["result"] == "reached"


def _dial_answered_once(status: int, body: bytes) -> Override:
    state = {"left": 1}

    async def answer(request: web.Request, _body: bytes) -> web.Response | None:
        if request.method != "POST" or state["left"] <= 0:
            return None
        state["left"] -= 1
        return web.Response(
            status=status, body=body, content_type="application/json", headers={"Retry-After": "1"}
        )

    return answer


def test_a_plain_429_to_a_dial_is_retried_and_the_call_placed(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle, front: Front
) -> None:
    emulator.add_customer("CUST-9981")
    front.overrides[CALLBACKS] = _dial_answered_once(429, b'{"message": "slow down"}')
    service = reach(TRIPLINE__GENESYS__BASE_URL=front.url)
    doc = alert()
    service.publish(doc, sensor=doc["sensorId"])
    record = ended(service, doc["idempotencyKey"])
    assert (record["outcome"], record["result"]) == ("called", "reached")
    assert len(emulator.callbacks()) == 1


def test_a_429_with_a_deeply_nested_message_is_still_retried(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle, front: Front
) -> None:
    emulator.add_customer("CUST-9981")
    front.overrides[CALLBACKS] = _dial_answered_once(429, b'{"message":' + nested(1000) + b"}")
    service = reach(TRIPLINE__GENESYS__BASE_URL=front.url)
    doc = alert()
    service.publish(doc, sensor=doc["sensorId"])
    wait_for(lambda: service.outcome(doc["idempotencyKey"]) is not None)
    wait_for(lambda: (service.record(doc["idempotencyKey"]) or {}).get("outcome") != "queued")
    record = service.record(doc["idempotencyKey"])
    assert record is not None
    assert record["outcome"] == "called", (record.get("reason"), record.get("detail"))


# --- Twilio's status callbacks, attacked on the running service -----------------------------


def twilio_service(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle, **env: str
) -> tuple[ServiceHandle, str]:
    port = free_port()
    status_url = f"http://127.0.0.1:{port}/v1/providers/twilio/status"
    service = make_service(
        **{
            **FAST,
            "TRIPLINE__DIALER__BACKEND": "twilio",
            "TRIPLINE__TWILIO__BASE_URL": emulator.url,
            "TRIPLINE__TWILIO__AUTH_TOKEN": TWILIO_TOKEN,
            "TRIPLINE__OUTCOMES__TWILIO_STATUS_URL": status_url,
            # Results from the pushed callbacks alone: the reconciliation poll comes too late.
            "TRIPLINE__OUTCOMES__POLL_SECONDS": "60",
            **env,
        }
    ).start(port=port)
    return service, status_url


def twilio_sign(url: str, pairs: list[tuple[str, str]], token: str = TWILIO_TOKEN) -> str:
    names: dict[str, set[str]] = {}
    for name, value in pairs:
        names.setdefault(name, set()).add(value)
    signed = url + "".join(n + v for n in sorted(names) for v in sorted(names[n]))
    return base64.b64encode(
        hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()
    ).decode()


def post_form(url: str, body: bytes, signature: str | None) -> int:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    return http("POST", url, body, headers=headers)[0]


def test_hostile_status_callbacks_leave_a_twilio_ladder_as_it_was(
    make_service: Callable[..., ServiceHandle],
    emulator: EmulatorHandle,
    redis_client: redis.Redis,
) -> None:
    emulator.add_customer("CUST-9981")
    results(emulator, "no_answer", delay=2.0)
    service, status_url = twilio_service(make_service, emulator)
    instance = f"tripline-{service.prefix}"
    doc = alert()
    key = doc["idempotencyKey"]
    service.publish(doc, sensor=doc["sensorId"])
    first = wait_for(lambda: ((service.record(key) or {}).get("attempts") or [None])[0])
    sid = first["callId"]
    query = urlencode({"key": key, "n": "1", "i": instance})
    url = f"{status_url}?{query}"
    reached = [("CallSid", sid), ("CallStatus", "completed"), ("AnsweredBy", "human")]
    body = urlencode(reached).encode()
    # Forged: no, wrong and foreign-token signatures over a "reached" for the live call.
    for signature in (None, "", "AAAA", twilio_sign(url, reached, "guessed")):
        assert post_form(url, body, signature) == 401
    # Garbled and oversized, with and without a signature.
    assert post_form(url, b"\xff\xfe%zz=&&=" * 10, "AAAA") == 401
    assert post_form(url, b"x=" + b"a" * 100_000, "AAAA") == 413
    # Validly signed but naming no live call: another CallSid, another attempt, no record.
    other = [("CallSid", "CA" + "0" * 32), ("CallStatus", "completed")]
    assert post_form(url, urlencode(other).encode(), twilio_sign(url, other)) == 204
    later = f"{status_url}?{urlencode({'key': key, 'n': '7', 'i': instance})}"
    assert post_form(later, body, twilio_sign(later, reached)) == 204
    nobody = f"{status_url}?{urlencode({'key': 'sensor-evt-nobody', 'n': '1', 'i': instance})}"
    assert post_form(nobody, body, twilio_sign(nobody, reached)) == 204
    assert not redis_client.exists(Keys(service.prefix).record("sensor-evt-nobody"))
    record = service.record(key)
    assert record is not None
    assert record["result"] == "pending"
    assert ladder_state(redis_client, service, key) == "placed"

    record = ended(service, key)  # the genuine callbacks drive it as before
    assert [(a["n"], a["result"], a["resultReason"]) for a in record["attempts"]] == [
        (1, "not_reached", "no_answer"),
        (2, "reached", None),
    ]
    # Replays of the genuine callbacks after the end: nothing moves, nobody is called again.
    second = record["attempts"][1]["callId"]
    for n, call, status in ((1, sid, "no-answer"), (2, second, "no-answer"), (2, second, "busy")):
        again = f"{status_url}?{urlencode({'key': key, 'n': str(n), 'i': instance})}"
        pairs = [("CallSid", call), ("CallStatus", status), ("SequenceNumber", "1")]
        assert post_form(again, urlencode(pairs).encode(), twilio_sign(again, pairs)) == 204
    time.sleep(1.5)  # the follower's tick
    after = service.record(key)
    assert after is not None
    assert (after["result"], after["attempts"]) == ("reached", record["attempts"])
    calls = [r for r in emulator.requests() if r["path"].endswith("/Calls.json")]
    assert len(calls) == 2
    assert not redis_client.zscore(follow_key(Keys(service.prefix), instance), key)
    critical_still_called(service, emulator)


def test_a_twilio_ladder_of_a_key_with_reserved_characters_is_driven_by_its_callbacks(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    emulator.add_customer("CUST-9981")
    results(emulator, "no_answer")
    service, _ = twilio_service(make_service, emulator)
    doc = alert(key=f"plant:7/freezer{{1}}%25+x:{uuid.uuid4().hex[:8]}")
    service.publish(doc, sensor=doc["sensorId"])
    record = ended(service, doc["idempotencyKey"], timeout=10)
    assert record["result"] == "reached"


def test_a_terminal_callback_that_overtakes_the_dial_answer_is_not_lost(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle, front: Front
) -> None:
    emulator.add_customer("CUST-9981")
    results(emulator, "failed", delay=0)  # an unreachable number fails at once
    front.slow["/Calls.json"] = 0.5  # Twilio's answer to the dial is a little slower
    service, _ = twilio_service(make_service, emulator, TRIPLINE__TWILIO__BASE_URL=front.url)
    doc = alert()
    service.publish(doc, sensor=doc["sensorId"])
    record = ended(service, doc["idempotencyKey"], timeout=10)
    assert [a["resultReason"] for a in record["attempts"]] == ["failed", None]


def test_a_terminal_callback_after_the_dial_answer_drives_the_ladder(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle, front: Front
) -> None:
    """The control of the test above: the same path, the callback a second behind the answer."""
    emulator.add_customer("CUST-9981")
    results(emulator, "failed", delay=1.0)
    front.slow["/Calls.json"] = 0.5
    service, _ = twilio_service(make_service, emulator, TRIPLINE__TWILIO__BASE_URL=front.url)
    doc = alert()
    service.publish(doc, sensor=doc["sensorId"])
    record = ended(service, doc["idempotencyKey"], timeout=10)
    assert [a["resultReason"] for a in record["attempts"]] == ["failed", None]


# --- hostile CRM documents ---------------------------------------------------------------------


def many_contacts(count: int) -> list[dict[str, Any]]:
    return [
        {"name": f"Contact {i}", "phone": f"+1201555{1000 + i:04d}", "order": i}
        for i in range(1, count + 1)
    ]


def decided(service: ServiceHandle, key: str) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(
        lambda: (rec := service.record(key)) and rec.get("outcome") and rec,
        timeout=15,
        interval=0.1,
    )
    return found


@pytest.mark.parametrize(
    "contacts",
    [
        pytest.param(many_contacts(300), id="three-hundred-contacts"),
        pytest.param([{"name": {"first": "A"}, "phone": SECOND}], id="nested-object"),
        pytest.param([{"phone": {"e164": SECOND}}], id="phone-an-object"),
        pytest.param([{"phone": SECOND, "order": "1"}], id="order-a-string"),
        pytest.param([{"phone": SECOND, "order": -1}], id="negative-order"),
        pytest.param([[SECOND]], id="contact-a-list"),
        pytest.param({"phone": SECOND}, id="contacts-an-object"),
        pytest.param([{"phone": "x" * 10_000}], id="huge-phone"),
    ],
)
def test_an_unreadable_contacts_list_is_a_clear_task_and_loses_nothing_else(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle, contacts: Any
) -> None:
    emulator.add_customer("CUST-BAD")
    emulator.state.customers["CUST-BAD"]["contacts"] = contacts
    service = reach()
    doc = alert(customer="CUST-BAD")
    service.publish(doc, sensor=doc["sensorId"])
    record = decided(service, doc["idempotencyKey"])
    # The CRM answered: this customer is unknown (no contact), the CRM is not down.
    assert (record["outcome"], record.get("reason")) == ("deferred", "no_contact"), (
        record.get("reason"),
        record.get("detail"),
    )
    assert "unusable" in str(record.get("detail"))
    assert not emulator.callbacks()
    wait_for(emulator.workitems)
    critical_still_called(service, emulator)


def test_the_task_of_an_unreadable_contacts_list_says_what_is_wrong(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    emulator.add_customer("CUST-BAD")
    emulator.state.customers["CUST-BAD"]["contacts"] = many_contacts(300)
    service = reach()
    doc = alert(customer="CUST-BAD")
    service.publish(doc, sensor=doc["sensorId"])
    record = decided(service, doc["idempotencyKey"])
    assert "contacts" in str(record.get("detail"))
    wait_for(emulator.workitems)
    assert "contacts" in emulator.workitems()[0]["body"]["description"]


def test_one_customers_hostile_contacts_do_not_open_the_crm_breaker_for_everyone(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    emulator.add_customer("CUST-BAD", contacts=[])
    emulator.state.customers["CUST-BAD"]["contacts"] = many_contacts(300)
    service = reach()
    for i in range(5):
        doc = alert(customer="CUST-BAD", sensor=f"SNS-BAD-{i}")
        service.publish(doc, sensor=doc["sensorId"])
        decided(service, doc["idempotencyKey"])
    emulator.add_customer("CUST-GOOD")
    doc = alert(customer="CUST-GOOD", sensor="SNS-GOOD")
    service.publish(doc, sensor=doc["sensorId"])
    record = decided(service, doc["idempotencyKey"])
    assert record["outcome"] == "called", (record.get("reason"), record.get("detail"))


def test_contacts_that_cannot_be_called_are_skipped_with_their_reasons(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    customer = emulator.add_customer(
        "CUST-9981",
        contacts=[
            {"name": "Junk", "phone": "call me maybe", "order": 1},
            {"name": "Empty", "phone": "", "order": 1},
            {"name": "Nope", "phone": SECOND, "order": 1, "callConsent": False},
            {"name": "Day", "phone": THIRD, "order": 2},
        ],
    )
    results(emulator, "no_answer")
    service = reach()
    doc = alert(alert_type="flood")  # high: one attempt per contact
    service.publish(doc, sensor=doc["sensorId"])
    record = ended(service, doc["idempotencyKey"])
    assert record["result"] == "reached"
    assert called_numbers(emulator) == [customer["phone"], THIRD]
    (queued,) = [h for h in record["history"] if h["state"] == "attempt_queued"]
    assert "Junk: invalid_phone" in queued["detail"]
    assert "Empty: no_contact" in queued["detail"]
    assert "Nope: do_not_call" in queued["detail"]


def test_a_contact_with_the_customers_own_number_is_not_called_as_someone_else(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    customer = emulator.add_customer("CUST-9981")
    own = customer["phone"]
    formatted = f"+1 ({own[2:5]}) {own[5:8]}-{own[8:]}"
    emulator.state.customers["CUST-9981"]["contacts"] = [
        {"name": "Same line", "phone": formatted, "order": 1},
        {"name": "Day", "phone": THIRD, "order": 2},
    ]
    results(emulator, "no_answer")
    service = reach()
    doc = alert(alert_type="flood")  # high: one attempt per contact
    service.publish(doc, sensor=doc["sensorId"])
    ended(service, doc["idempotencyKey"])
    assert called_numbers(emulator) == [own, THIRD]


@pytest.mark.parametrize("zone", ["America", "x" * 256])
def test_a_contact_whose_zone_is_garbage_does_not_stall_the_ladder(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle, zone: str
) -> None:
    emulator.add_customer(
        "CUST-9981",
        contacts=[
            {"name": "Bad zone", "phone": SECOND, "order": 1},
            {"name": "Day", "phone": THIRD, "order": 2},
        ],
    )
    emulator.state.customers["CUST-9981"]["contacts"][0]["timezone"] = zone
    results(emulator, "no_answer", "no_answer")
    service = reach()
    doc = alert(alert_type="flood")  # high: three attempts, one per contact
    service.publish(doc, sensor=doc["sensorId"])
    record = ended(service, doc["idempotencyKey"], timeout=10)
    assert record["result"] == "reached"


def test_a_contact_whose_zone_is_unknown_falls_back_to_its_numbers_zone(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    emulator.add_customer(
        "CUST-9981",
        contacts=[{"name": "Odd zone", "phone": THIRD, "order": 1, "timezone": "Mars/Olympus"}],
    )
    results(emulator, "no_answer")
    service = reach()
    doc = alert(alert_type="flood", sensor="SNS-ODD")
    service.publish(doc, sensor=doc["sensorId"])
    record = ended(service, doc["idempotencyKey"])
    assert record["result"] in ("reached", "not_reached")
    assert record["attempts"][0]["result"] == "not_reached"


def test_a_customer_whose_own_zone_is_garbage_gets_a_decision(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    emulator.add_customer("CUST-ZONE", timezone="America")
    service = reach()
    doc = alert(customer="CUST-ZONE")
    service.publish(doc, sensor=doc["sensorId"])
    record = decided(service, doc["idempotencyKey"])
    assert record["outcome"] in ("called", "deferred")  # a call, or a task with a reason


def test_a_crm_document_that_turns_hostile_mid_ladder_ends_it_with_a_task(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    emulator.add_customer("CUST-9981")
    results(emulator, "no_answer", delay=1.0)
    service = reach()
    doc = alert()
    key = doc["idempotencyKey"]
    service.publish(doc, sensor=doc["sensorId"])
    wait_for(lambda: service.outcome(key) == "called")
    emulator.state.customers["CUST-9981"]["contacts"] = many_contacts(300)
    record = ended(service, key, timeout=10)
    assert len(emulator.callbacks()) == 1
    assert record["result"] == "not_reached"
    wait_for(emulator.workitems)


# --- the ladder under stress -------------------------------------------------------------------


def resolve(service: ServiceHandle, doc: dict[str, Any]) -> None:
    done = alert(sensor=doc["sensorId"], customer=doc["customerId"], status="resolved")
    service.publish(done, sensor=doc["sensorId"])


def admin(service: ServiceHandle, method: str, path: str, body: Any = None) -> Any:
    status, answer = http(method, f"{service.url}{path}", body, ADMIN)
    assert status in (200, 201), answer
    return answer


def test_a_resolve_while_the_next_attempt_waits_ends_the_ladder(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle, redis_client: redis.Redis
) -> None:
    emulator.add_customer("CUST-9981")
    results(emulator, "no_answer")
    service = reach(
        TRIPLINE__REACH__RETRY_AFTER_SECONDS="{ critical = 30, high = 30, normal = 30, low = 30 }"
    )
    doc = alert()
    key = doc["idempotencyKey"]
    service.publish(doc, sensor=doc["sensorId"])
    wait_for(lambda: ladder_state(redis_client, service, key) == "waiting")
    resolve(service, doc)
    record = ended(service, key)
    assert record["ladderEnd"] == "the sensor resolved"
    assert record["result"] == "not_reached"
    time.sleep(1.0)
    assert len(emulator.callbacks()) == 1
    assert not emulator.workitems()
    critical_still_called(service, emulator)


def test_a_resolve_while_the_dialer_is_paused_withdraws_the_queued_attempt(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle, redis_client: redis.Redis
) -> None:
    emulator.add_customer("CUST-9981")
    results(emulator, "no_answer", delay=1.0)
    service = reach()
    doc = alert()
    key = doc["idempotencyKey"]
    service.publish(doc, sensor=doc["sensorId"])
    wait_for(lambda: service.outcome(key) == "called")
    admin(service, "POST", "/v1/admin/dialing/pause")
    wait_for(lambda: ladder_state(redis_client, service, key) == "queued", timeout=10)
    resolve(service, doc)
    record = ended(service, key)
    assert record["ladderEnd"].startswith("the sensor resolved")
    admin(service, "POST", "/v1/admin/dialing/resume")
    time.sleep(1.5)
    assert len(emulator.callbacks()) == 1
    assert not emulator.workitems()
    critical_still_called(service, emulator)


def test_a_paused_dialer_holds_the_next_attempt_until_it_resumes(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle, redis_client: redis.Redis
) -> None:
    emulator.add_customer("CUST-9981")
    results(emulator, "no_answer", delay=1.0)
    service = reach()
    doc = alert()
    key = doc["idempotencyKey"]
    service.publish(doc, sensor=doc["sensorId"])
    wait_for(lambda: service.outcome(key) == "called")
    admin(service, "POST", "/v1/admin/dialing/pause")
    wait_for(lambda: ladder_state(redis_client, service, key) == "queued", timeout=10)
    time.sleep(1.5)
    assert len(emulator.callbacks()) == 1
    assert ladder_state(redis_client, service, key) == "queued"
    admin(service, "POST", "/v1/admin/dialing/resume")
    record = ended(service, key)
    assert record["result"] == "reached"
    assert [a["n"] for a in record["attempts"]] == [1, 2]
    assert len(emulator.callbacks()) == 2


@pytest.mark.parametrize("opened_while", ["placed", "waiting"])
def test_maintenance_opened_mid_ladder_ends_it_without_another_call(
    reach: Callable[..., ServiceHandle],
    emulator: EmulatorHandle,
    redis_client: redis.Redis,
    opened_while: str,
) -> None:
    emulator.add_customer("CUST-9981")
    results(emulator, "no_answer", delay=1.5)
    service = reach(
        TRIPLINE__REACH__RETRY_AFTER_SECONDS="{ critical = 3, high = 3, normal = 3, low = 3 }"
    )
    doc = alert()
    key = doc["idempotencyKey"]
    service.publish(doc, sensor=doc["sensorId"])
    wait_for(lambda: ladder_state(redis_client, service, key) == opened_while)
    window = admin(
        service,
        "POST",
        "/v1/admin/maintenance",
        {
            "sensorId": doc["sensorId"],
            "durationSeconds": 3600,
            "comment": "defrost",
            "createdBy": "ana",
        },
    )
    record = ended(service, key)
    assert record["ladderEnd"].startswith("maintenance"), record["ladderEnd"]
    assert record["result"] == "not_reached"
    time.sleep(1.0)
    assert len(emulator.callbacks()) == 1
    assert not emulator.workitems()
    admin(service, "DELETE", f"/v1/admin/maintenance/{window['id']}")
    critical_still_called(service, emulator)


def test_a_resolve_while_a_reattempt_is_dialing_cancels_the_callback_it_creates(
    reach: Callable[..., ServiceHandle],
    emulator: EmulatorHandle,
    front: Front,
    redis_client: redis.Redis,
) -> None:
    emulator.add_customer("CUST-9981")
    results(emulator, "no_answer", "answered", delay=0.5)
    service = reach(TRIPLINE__GENESYS__BASE_URL=front.url)
    doc = alert()
    key = doc["idempotencyKey"]
    service.publish(doc, sensor=doc["sensorId"])
    wait_for(lambda: ladder_state(redis_client, service, key) == "waiting")
    results(emulator, "answered", delay=30)  # the second callback waits for an agent
    front.slow[CALLBACKS] = 2.0  # and its creation is slow to be confirmed
    wait_for(lambda: ladder_state(redis_client, service, key) == "dialing", timeout=10)
    resolve(service, doc)
    wait_for(lambda: ladder_state(redis_client, service, key) != "dialing", timeout=10)
    time.sleep(2.0)  # a few of the follower's ticks
    assert len(emulator.callbacks()) == 2
    cancels = [r for r in emulator.requests() if r["method"] == "PATCH" and r["status"] == 200]
    assert len(cancels) == 1, ladder_state(redis_client, service, key)
    record = ended(service, key)
    assert record["ladderEnd"].startswith("the sensor resolved")


def test_many_alerts_of_one_customer_each_get_one_ladder_and_no_call_twice(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle, redis_client: redis.Redis
) -> None:
    emulator.add_customer(
        "CUST-9981", contacts=[{"name": "Site manager", "phone": SECOND, "order": 1}]
    )
    results(emulator, *(["no_answer", "busy", "answered"] * 8), delay=0.3)
    service = reach()
    docs = [alert(sensor=f"SNS-MANY-{i}") for i in range(8)]
    for doc in docs:
        service.publish(doc, sensor=doc["sensorId"])
    records = [ended(service, doc["idempotencyKey"], timeout=30) for doc in docs]
    call_ids = [a["callId"] for r in records for a in r["attempts"]]
    assert len(call_ids) == len(set(call_ids)) == len(emulator.callbacks())
    for record in records:
        assert [a["n"] for a in record["attempts"]] == list(range(1, len(record["attempts"]) + 1))
        assert record["result"] in ("reached", "not_reached")
    keys = Keys(service.prefix)
    time.sleep(1.0)
    index = follow_key(keys, f"tripline-{service.prefix}")
    assert not any(redis_client.zscore(index, d["idempotencyKey"]) for d in docs)
    critical_still_called(service, emulator)
