"""POST /v1/providers/twilio/status attacked: forged, huge, slow, garbled and replayed callbacks.

The endpoint runs in the real application (build_app) on a loopback port, over the real Redis
under a key prefix of the test's own; requests are written byte by byte on a raw socket so that
nothing between the test and the server repairs them. Signatures are computed here the way
twilio-python's RequestValidator does, over the URL exactly as Twilio requests it (the
StatusCallback URL the Twilio backend handed over, percent-encoded), not with the module under
test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson
import pytest
import redis

from tests.conftest import AppThread, free_port
from tripline.adapters.attempts import follow_key
from tripline.adapters.store import Keys
from tripline.conf import schema
from tripline.edge.http_api import build_app
from tripline.service.lease import registry_keys

if TYPE_CHECKING:
    from tripline.supervisor import Service

pytestmark = pytest.mark.long(23)

TOKEN = "unit-twilio-token"
STATUS_URL = "https://tripline.example.com/v1/providers/twilio/status"
PATH = urlsplit(STATUS_URL).path
INSTANCE = "tripline-gw1"
SID = "CA0123456789abcdef0123456789abcdef"
OLD_SID = "CAffffffffffffffffffffffffffffffff"


def sign(url: str, pairs: list[tuple[str, str]], token: str = TOKEN) -> str:
    """X-Twilio-Signature as twilio-python computes it (each name sorted, its values sorted)."""
    names: dict[str, set[str]] = {}
    for name, value in pairs:
        names.setdefault(name, set()).add(value)
    signed = url + "".join(name + value for name in sorted(names) for value in sorted(names[name]))
    digest = hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def callback_query(key: str, n: str = "1", instance: str = INSTANCE) -> str:
    """The query the Twilio backend puts on StatusCallback (adapters/backends/twilio.py)."""
    return urlencode({"key": key, "n": n, "i": instance})


def form(status: str, *, sid: str = SID, sequence: int | None = None) -> list[tuple[str, str]]:
    """A status callback's form as Twilio posts it."""
    pairs = [
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", sid),
        ("CallStatus", status),
        ("Direction", "outbound-api"),
        ("From", "+12015550100"),
        ("To", "+12015550199"),
    ]
    if sequence is not None:
        pairs.append(("SequenceNumber", str(sequence)))
    return pairs


@dataclass
class Reply:
    status: int
    body: bytes


class Edge:
    """The application on a loopback port, and what a test needs to read its effects."""

    def __init__(self, prefix: str, client: redis.Redis, *, redis_url: str = "") -> None:
        self.keys = Keys(prefix)
        self.redis = client
        config = schema.load(
            env={
                "TRIPLINE__REDIS__KEY_PREFIX": prefix,
                "TRIPLINE__TWILIO__AUTH_TOKEN": TOKEN,
                "TRIPLINE__OUTCOMES__TWILIO_STATUS_URL": STATUS_URL,
                # No shards here to decide handed-off webhook alerts (none are posted).
                "TRIPLINE__HTTP__HANDOFF": "false",
            }
        )
        backing = redis.Redis.from_url(redis_url, socket_timeout=1) if redis_url else client
        service = SimpleNamespace(config=config, redis=backing, keys=self.keys, clock=time.time)
        # The instances the tests name hold live leases (the one that placed a call follows it).
        self.live(INSTANCE, "tripline-gw2")
        self.app = AppThread(build_app(cast("Service", service)))
        self.port = self.app.port

    def live(self, *instances: str, until: float | None = None) -> None:
        """Leases for `instances`, expiring at `until` (an hour from now by default)."""
        expires = time.time() + 3600 if until is None else until
        self.redis.zadd(registry_keys(self.keys)[0], dict.fromkeys(instances, expires))

    def placed(self, key: str, *, n: int = 1, sid: str = SID) -> None:
        """A record whose attempt `n` is the call `sid`, placed and awaiting its result."""
        self.redis.hset(
            self.keys.record(key),
            mapping={
                "attempt": str(n),
                "attemptCallId": sid,
                "attemptState": "placed",
                "result": "pending",
            },
        )
        self.redis.expire(self.keys.record(key), 300)

    def pushed(self, key: str) -> dict[str, object] | None:
        raw = self.redis.hget(self.keys.record(key), "pushed")
        return orjson.loads(raw) if raw else None

    def indexed(self, key: str, instance: str = INSTANCE) -> float | None:
        score = self.redis.zscore(follow_key(self.keys, instance), key)
        return None if score is None else float(score)

    def send(
        self,
        target: str | bytes,
        body: bytes | list[bytes] = b"",
        *,
        signature: str | bytes | None = None,
        headers: dict[str, str] | None = None,
        length: int | None = None,
        pause: float = 0.0,
        timeout: float = 5.0,
    ) -> Reply:
        """One POST on a fresh connection, written as given (`body` as a list: in segments)."""
        parts = body if isinstance(body, list) else [body]
        size = sum(len(p) for p in parts) if length is None else length
        head = [
            b"POST " + (target if isinstance(target, bytes) else target.encode()) + b" HTTP/1.1",
            b"Host: tripline.example.com",
            b"Content-Type: application/x-www-form-urlencoded",
            b"Connection: close",
        ]
        if "Transfer-Encoding" not in (headers or {}):
            head.append(b"Content-Length: " + str(size).encode())
        if signature is not None:
            sig = signature if isinstance(signature, bytes) else signature.encode()
            head.append(b"X-Twilio-Signature: " + sig)
        head += [f"{k}: {v}".encode() for k, v in (headers or {}).items()]
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(b"\r\n".join(head) + b"\r\n\r\n")

            def write() -> None:  # beside the read: the server may answer before the body ends
                try:
                    for i, part in enumerate(parts):
                        if i and pause:
                            time.sleep(pause)
                        sock.sendall(part)
                except OSError:
                    pass  # it answered and closed

            writer = threading.Thread(target=write, daemon=True)
            writer.start()
            reply = _read_reply(sock)
        writer.join(5)
        return reply

    def callback(
        self,
        key: str,
        pairs: list[tuple[str, str]],
        *,
        n: str = "1",
        instance: str = INSTANCE,
        query: str | None = None,
    ) -> Reply:
        """A callback signed as Twilio signs it: over the StatusCallback URL as we gave it."""
        query = callback_query(key, n, instance) if query is None else query
        url = f"{STATUS_URL}?{query}"
        return self.send(f"{PATH}?{query}", urlencode(pairs).encode(), signature=sign(url, pairs))


def _read_reply(sock: socket.socket) -> Reply:
    """The status and body of one answer (its Content-Length), without waiting for the close."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        data += chunk
    if not data:
        return Reply(0, b"")
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        body += chunk
    return Reply(int(head.split(b" ", 2)[1]), body)


@pytest.fixture
def edge(prefix: str, redis_client: redis.Redis) -> Iterator[Edge]:
    handle = Edge(prefix, redis_client)
    yield handle
    handle.app.stop()


def _untouched(edge: Edge, key: str) -> None:
    assert edge.pushed(key) is None
    assert edge.indexed(key) is None


# --- what holds ------------------------------------------------------------------------------


def test_a_genuine_terminal_callback_is_kept_for_the_follower(edge: Edge) -> None:
    edge.placed("sensor-evt-1")
    reply = edge.callback("sensor-evt-1", form("no-answer", sequence=3))
    assert reply.status == 204
    assert edge.pushed("sensor-evt-1") == {
        "callId": SID,
        "result": "not_reached",
        "reason": "no_answer",
        "wrapupCode": "",
        "doNotCall": False,
        "sequence": 3,
    }
    assert edge.indexed("sensor-evt-1") == 0


def test_a_progress_event_changes_nothing(edge: Edge) -> None:
    edge.placed("sensor-evt-1")
    for status in ("initiated", "ringing", "in-progress", "queued", "no-such-status"):
        assert edge.callback("sensor-evt-1", form(status)).status == 204
    _untouched(edge, "sensor-evt-1")


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("AAAA", id="short"),
        pytest.param("=" * 28, id="padding-only"),
        pytest.param("A" * 7000, id="huge-but-fits-a-header"),
        pytest.param(b"\xff\xfe\x80garbage", id="not-utf8"),
        pytest.param("ünïcödé+/==", id="non-ascii"),
        pytest.param(sign(f"{STATUS_URL}?x=1", form("busy")), id="signed-for-another-url"),
        pytest.param(
            sign(f"{STATUS_URL}?{callback_query('sensor-evt-1')}", form("busy"), "other-token"),
            id="signed-with-another-token",
        ),
        pytest.param(
            sign(f"{STATUS_URL}?{callback_query('sensor-evt-1')}", form("completed")),
            id="signed-for-another-form",
        ),
    ],
)
def test_a_forged_signature_is_401_and_changes_nothing(
    edge: Edge, signature: str | bytes | None
) -> None:
    edge.placed("sensor-evt-1")
    body = urlencode(form("busy")).encode()
    reply = edge.send(f"{PATH}?{callback_query('sensor-evt-1')}", body, signature=signature)
    assert reply.status == 401
    assert orjson.loads(reply.body)["problems"][0]["field"] == "X-Twilio-Signature"
    _untouched(edge, "sensor-evt-1")


def test_a_signature_header_beyond_the_header_limit_is_refused_by_the_server(edge: Edge) -> None:
    edge.placed("sensor-evt-1")
    body = urlencode(form("busy")).encode()
    reply = edge.send(f"{PATH}?{callback_query('sensor-evt-1')}", body, signature="A" * 20_000)
    assert 400 <= reply.status < 500
    _untouched(edge, "sensor-evt-1")
    assert edge.callback("sensor-evt-1", form("busy")).status == 204  # still serving


@pytest.mark.parametrize("size", [16 * 1024 + 1, 4 * 1024 * 1024])
def test_a_body_over_the_limit_is_413(edge: Edge, size: int) -> None:
    edge.placed("sensor-evt-1")
    pairs = [*form("busy"), ("Pad", "x" * size)]
    query = callback_query("sensor-evt-1")
    body = urlencode(pairs).encode()
    reply = edge.send(
        f"{PATH}?{query}", body, signature=sign(f"{STATUS_URL}?{query}", pairs), timeout=20
    )
    assert reply.status == 413
    _untouched(edge, "sensor-evt-1")


def test_an_endless_chunked_body_gets_an_answer_and_the_endpoint_keeps_serving(
    edge: Edge,
) -> None:
    edge.placed("sensor-evt-1")
    chunk = b"4000\r\n" + b"a" * 0x4000 + b"\r\n"
    with socket.create_connection(("127.0.0.1", edge.port), timeout=5) as sock:
        sock.sendall(
            f"POST {PATH}?{callback_query('sensor-evt-1')} HTTP/1.1\r\n".encode()
            + b"Host: tripline.example.com\r\nTransfer-Encoding: chunked\r\n"
            + b"Content-Type: application/x-www-form-urlencoded\r\n"
            + b"X-Twilio-Signature: AAAA\r\n\r\n"
        )
        status = b""
        deadline = time.monotonic() + 5
        sock.settimeout(0.0)
        while not status and time.monotonic() < deadline:
            try:
                sock.send(chunk)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                time.sleep(0.01)
            try:
                status = sock.recv(12)
            except BlockingIOError:
                pass
            except ConnectionResetError:
                break
    assert status.startswith(b"HTTP/1.1 4"), status
    _untouched(edge, "sensor-evt-1")
    assert edge.callback("sensor-evt-1", form("busy")).status == 204


@pytest.mark.parametrize(
    ("target_query", "body"),
    [
        pytest.param(None, b"CallSid=\xff\xfe&CallStatus=busy", id="raw-invalid-utf8-form"),
        pytest.param(None, b"CallSid=%ff%fe%80&CallStatus=busy", id="escaped-invalid-utf8-form"),
        pytest.param(None, b"CallSid=%zz%&CallStatus=%%busy", id="bad-escapes-form"),
        pytest.param(None, b"%%%&&&===&=&&=x", id="separators-only"),
        pytest.param(None, b"\x00\x01\x02=\x7f", id="control-bytes"),
        pytest.param(None, b"&".join([b"a=b"] * 4000), id="thousands-of-fields"),
        pytest.param(b"key=%ff%fe&n=1&i=x", None, id="escaped-invalid-utf8-query"),
        pytest.param(b"key=\xff\xfe&n=1&i=x", None, id="raw-invalid-utf8-query"),
        pytest.param(b"key=%zz&n=%&i=%%", None, id="bad-escapes-query"),
        pytest.param(b"key&n&i", None, id="names-without-values"),
        pytest.param(b"=&=&=", None, id="values-without-names"),
        pytest.param(b"key=a&key=b&n=1&n=2&i=x&i=y", None, id="repeated-query"),
    ],
)
@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed-as-received"])
def test_garbled_forms_and_queries_get_a_clear_answer(
    edge: Edge, target_query: bytes | None, body: bytes | None, signed: bool
) -> None:
    """Never a 500: a 4xx, or 204 when a valid signature covers it (nothing to act on)."""
    edge.placed("sensor-evt-1")
    query = target_query or callback_query("sensor-evt-1").encode()
    raw_body = body if body is not None else urlencode(form("busy", sid="CAnobody")).encode()
    signature: str | None = None
    if signed:  # signed over exactly the bytes sent, read as the endpoint reads them
        url = f"{STATUS_URL}?{query.decode('utf-8', 'replace')}"
        pairs = parse_qsl(raw_body.decode("utf-8", "replace"), keep_blank_values=True)
        signature = sign(url, pairs)
    reply = edge.send(PATH.encode() + b"?" + query, raw_body, signature=signature)
    assert reply.status in (204, 400, 401), reply
    if reply.status == 401:  # the handler's own answer (a 400 may be the HTTP parser's)
        assert orjson.loads(reply.body)["problems"]
    _untouched(edge, "sensor-evt-1")


def test_repeated_form_parameters_never_pass_a_value_the_signature_did_not_cover(
    edge: Edge,
) -> None:
    edge.placed("sensor-evt-1")
    pairs = [*form("busy"), ("CallStatus", "completed")]
    query = callback_query("sensor-evt-1")
    unsigned_extra = [*pairs, ("CallStatus", "no-answer")]
    reply = edge.send(
        f"{PATH}?{query}",
        urlencode(unsigned_extra).encode(),
        signature=sign(f"{STATUS_URL}?{query}", pairs),
    )
    assert reply.status == 401
    _untouched(edge, "sensor-evt-1")


def test_a_key_of_no_record_creates_nothing(edge: Edge) -> None:
    assert edge.callback("sensor-evt-nobody", form("busy")).status == 204
    assert not edge.redis.exists(edge.keys.record("sensor-evt-nobody"))
    _untouched(edge, "sensor-evt-nobody")


def test_the_callsid_of_an_older_attempt_is_not_taken(edge: Edge) -> None:
    edge.placed("sensor-evt-1", n=2, sid=SID)
    assert edge.callback("sensor-evt-1", form("completed", sid=OLD_SID), n="1").status == 204
    assert edge.callback("sensor-evt-1", form("completed", sid=OLD_SID), n="2").status == 204
    assert edge.callback("sensor-evt-1", form("completed"), n="1").status == 204
    _untouched(edge, "sensor-evt-1")
    assert edge.callback("sensor-evt-1", form("completed"), n="2").status == 204
    assert edge.pushed("sensor-evt-1") is not None


@pytest.mark.parametrize(
    "n", ["x", "", "-1", "1.0", "0x1", " 1", "+1", "1e3", "11111111111111111111111111111111"]
)
def test_an_attempt_that_is_not_the_current_one_is_ignored(edge: Edge, n: str) -> None:
    edge.placed("sensor-evt-1")
    assert edge.callback("sensor-evt-1", form("busy"), n=n).status == 204
    _untouched(edge, "sensor-evt-1")


@pytest.mark.parametrize("n", ["²", "9" * 5000], ids=["superscript-two", "5000-digits"])
def test_an_attempt_number_int_cannot_read_is_not_a_500(edge: Edge, n: str) -> None:
    edge.placed("sensor-evt-1")
    assert edge.callback("sensor-evt-1", form("busy"), n=n).status == 204
    _untouched(edge, "sensor-evt-1")


def test_hostile_characters_sent_raw_stay_inside_the_prefix(edge: Edge) -> None:
    """`}`, `:` and `%` unescaped in key and instance: the keys written stay the test's own."""
    key = "evt}:{x%25"
    edge.placed(key)
    query = "key=evt}:{x%25&n=1&i=gw}:{evil"
    reply = edge.callback(key, form("busy"), query=query)
    assert reply.status in (204, 401)
    everything = {k.decode() for k in edge.redis.scan_iter(match="*evil*", count=1000)}
    assert all(k.startswith(edge.keys.prefix + ":") for k in everything)


def test_a_callback_naming_another_instance_is_indexed_for_that_instance_only(
    edge: Edge,
) -> None:
    """`i` is signed with the rest of the URL: the instance that placed the call named itself."""
    edge.placed("sensor-evt-1")
    assert edge.callback("sensor-evt-1", form("busy"), instance="tripline-gw2").status == 204
    assert edge.indexed("sensor-evt-1", "tripline-gw2") == 0
    assert edge.indexed("sensor-evt-1") is None


def test_a_callback_naming_an_instance_whose_lease_lapsed_is_indexed_for_this_one(
    edge: Edge,
) -> None:
    """Its follow index was adopted: an entry added there would wait for no one."""
    edge.live("tripline-gone", until=time.time() - 1)
    edge.placed("sensor-evt-1")
    edge.placed("sensor-evt-2")
    assert edge.callback("sensor-evt-1", form("busy"), instance="tripline-gone").status == 204
    assert edge.callback("sensor-evt-2", form("busy"), instance="tripline-never").status == 204
    here = schema.load(env={}).mqtt.client_id
    for key in ("sensor-evt-1", "sensor-evt-2"):
        assert edge.indexed(key, "tripline-gone") is None
        assert edge.indexed(key, "tripline-never") is None
        assert edge.indexed(key, here) == 0


def test_the_same_terminal_status_twice_is_harmless(edge: Edge) -> None:
    edge.placed("sensor-evt-1")
    for _ in range(2):
        assert edge.callback("sensor-evt-1", form("busy", sequence=4)).status == 204
    assert edge.pushed("sensor-evt-1") == {
        "callId": SID,
        "result": "not_reached",
        "reason": "busy",
        "wrapupCode": "",
        "doNotCall": False,
        "sequence": 4,
    }
    assert edge.redis.zcard(follow_key(edge.keys, INSTANCE)) == 1


def test_a_later_sequence_replaces_an_earlier_one(edge: Edge) -> None:
    edge.placed("sensor-evt-1")
    assert edge.callback("sensor-evt-1", form("no-answer", sequence=3)).status == 204
    assert edge.callback("sensor-evt-1", form("completed", sequence=4)).status == 204
    pushed = edge.pushed("sensor-evt-1")
    assert pushed is not None
    assert (pushed["result"], pushed["sequence"]) == ("reached", 4)


def test_an_out_of_order_earlier_sequence_does_not_replace_a_later_one(edge: Edge) -> None:
    edge.placed("sensor-evt-1")
    assert edge.callback("sensor-evt-1", form("completed", sequence=4)).status == 204
    assert edge.callback("sensor-evt-1", form("no-answer", sequence=3)).status == 204
    pushed = edge.pushed("sensor-evt-1")
    assert pushed is not None
    assert (pushed["result"], pushed["sequence"]) == ("reached", 4)


def test_redis_down_is_503_with_retry_after(prefix: str, redis_client: redis.Redis) -> None:
    edge = Edge(prefix, redis_client, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    try:
        reply = edge.callback("sensor-evt-1", form("busy"))
        assert reply.status == 503
    finally:
        edge.app.stop()


# --- defects -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["plant:7/evt-1", "evt}{1", "evt%1", "evt 1", "a&n=9", "evt+1", "ünï"]
)
def test_a_genuine_callback_for_a_key_with_reserved_characters_is_taken(
    edge: Edge, key: str
) -> None:
    edge.placed(key)
    assert edge.callback(key, form("busy")).status == 204
    assert edge.pushed(key) is not None


@pytest.mark.parametrize("pause", [0.0, 0.3])
def test_a_genuine_callback_in_two_segments_is_taken(edge: Edge, pause: float) -> None:
    edge.placed("sensor-evt-1")
    pairs = form("no-answer", sequence=3)
    query = callback_query("sensor-evt-1")
    body = urlencode(pairs).encode()
    reply = edge.send(
        f"{PATH}?{query}",
        [body[:40], body[40:]],
        signature=sign(f"{STATUS_URL}?{query}", pairs),
        pause=pause,
    )
    assert reply.status == 204
    assert edge.pushed("sensor-evt-1") is not None


def test_a_client_that_never_sends_its_body_is_answered_in_time(edge: Edge) -> None:
    started = time.monotonic()
    try:
        reply = edge.send(
            f"{PATH}?{callback_query('sensor-evt-1')}",
            b"",
            signature="AAAA",
            length=200,  # announced, never sent
            timeout=12.5,
        )
    except TimeoutError:
        reply = Reply(0, b"")
    assert reply.status in (400, 408), f"no answer after {time.monotonic() - started:.1f} s"
