"""The HTTP edge over real sockets: odd bytes, bodies that end early, browsers' cross-site
requests, the read token, and the security headers on every answer (issue #16).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from tests.conftest import ServiceHandle, alert, http, wait_for
from tripline.edge import http_api
from tripline.pipeline.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

pytestmark = pytest.mark.integration

HMAC_SECRET = "whsec-edge"
DESK = "https://desk.example.com"
LOCKED = {
    "TRIPLINE__HTTP__WEBHOOK_TOKEN": "hook-token",
    "TRIPLINE__HTTP__WEBHOOK_HMAC_SECRET": HMAC_SECRET,
    "TRIPLINE__HTTP__ADMIN_TOKEN": "admin-token",
    "TRIPLINE__HTTP__READ_TOKEN": "read-token",
    "TRIPLINE__HTTP__ALLOWED_ORIGINS": f'["{DESK}"]',
    "TRIPLINE__HTTP__FRAME_ANCESTORS": f'["{DESK}", "https://*.agents.example.com"]',
}
JSON = (b"Content-Type", b"application/json")


@dataclass
class Answer:
    """What came back on the socket: nothing (status None) when the server hung up."""

    status: int | None
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str:
        (value,) = self.headers.get(name.lower(), [""])
        return value

    def json(self) -> Any:
        return orjson.loads(self.body)


def raw(
    url: str,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    *parts: bytes,
    length: int | None = None,
    pause: float = 0.0,
    shut: bool = False,
    timeout: float = 5.0,
) -> Answer:
    """One request written byte for byte (aiohttp's client would refuse odd header bytes).

    `parts` are sent `pause` seconds apart; `length` overrides the Content-Length; `shut`
    half-closes the connection after the last part.
    """
    host, port = url.removeprefix("http://").split(":")
    body = b"".join(parts)
    lines = [f"{method} {path} HTTP/1.1".encode(), f"Host: {host}:{port}".encode()]
    lines += [
        b"Connection: close",
        b"Content-Length: %d" % (len(body) if length is None else length),
    ]
    lines += [name + b": " + value for name, value in headers]
    received = b""
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        for n, part in enumerate(parts):
            if n:
                time.sleep(pause)
            sock.sendall(part)
        if shut:
            sock.shutdown(socket.SHUT_WR)
        try:
            while not _complete(received) and (chunk := sock.recv(65536)):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    if not received:
        return Answer(None)
    head, _, payload = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    answer = Answer(int(status_line.split()[1]), body=payload)
    for line in header_lines:
        name, _, value = line.partition(":")
        answer.headers.setdefault(name.strip().lower(), []).append(value.strip())
    return answer


def _complete(received: bytes) -> bool:
    """Whether a whole answer is in: the server may linger over an unread request body."""
    head, sep, payload = received.partition(b"\r\n\r\n")
    found = re.search(rb"(?im)^content-length: *([0-9]+)", head)
    return bool(sep and found and len(payload) >= int(found.group(1)))


def signed(body: bytes, timestamp: str | None = None) -> list[tuple[bytes, bytes]]:
    stamp = timestamp or str(int(time.time()))
    return [
        (TIMESTAMP_HEADER.encode(), stamp.encode()),
        (SIGNATURE_HEADER.encode(), sign(HMAC_SECRET, int(time.time()), body).encode()),
    ]


@pytest.fixture
def locked(make_service: Callable[..., ServiceHandle]) -> ServiceHandle:
    return make_service(**LOCKED).start()


def assert_problem(answer: Answer, status: int, reason: str) -> dict[str, Any]:
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.header("Content-Type").startswith("application/json")
    problem: dict[str, Any] = answer.json()
    assert problem["error"]
    assert [p["reason"] for p in problem["problems"]] == [reason], problem
    assert problem["problems"][0]["message"]
    return problem


# --- Credentials: odd bytes, the bearer scheme, the signed timestamp ------------------------


def test_odd_bytes_in_any_credential_are_a_401_never_a_500(locked: ServiceHandle) -> None:
    body = orjson.dumps(alert())
    now = str(int(time.time())).encode()
    good_sig = sign(HMAC_SECRET, int(now), body).encode()
    for method, path, headers in (
        ("POST", "/v1/alerts", [(b"Authorization", b"Bearer \xff\xfe")]),
        ("POST", "/v1/alerts", [(b"Authorization", b"\xffearer hook-token")]),
        ("POST", "/v1/alerts", [(b"Authorization", "Bearer hook-t\u00f6ken".encode())]),
        (
            "POST",
            "/v1/alerts",
            [(TIMESTAMP_HEADER.encode(), now), (SIGNATURE_HEADER.encode(), b"sha256=\xff")],
        ),
        (
            "POST",
            "/v1/alerts",
            [(TIMESTAMP_HEADER.encode(), b"\xff"), (SIGNATURE_HEADER.encode(), good_sig)],
        ),
        (
            "POST",
            "/v1/alerts",
            [
                (TIMESTAMP_HEADER.encode(), "\u0661\u0667".encode()),
                (SIGNATURE_HEADER.encode(), good_sig),
            ],
        ),
        ("GET", "/v1/context/ref-1", [(b"Authorization", b"Bearer \xff")]),
        ("GET", "/v1/context/ref-1?token=%FF%FE", []),
        ("GET", "/v1/admin/dnc", [(b"Authorization", b"Bearer \xc3\x28")]),
        ("POST", "/v1/admin/dialing/pause", [(b"Authorization", b"Bearer \xff")]),
        ("GET", "/status", [(b"Authorization", b"Bearer \xff")]),
        ("GET", "/v1/alerts/some-key", [(b"Authorization", b"Bearer \x80")]),
        ("GET", "/?token=%FF", []),
    ):
        answer = raw(locked.url, method, path, [JSON, *headers], body if method == "POST" else b"")
        assert_problem(answer, 401, "unauthorized")
    assert http("GET", f"{locked.url}/healthz")[0] == 200
    assert (
        http("GET", f"{locked.url}/status", headers={"Authorization": "Bearer read-token"})[1][
            "dialingPaused"
        ]
        is None
    )


def test_the_bearer_scheme_is_case_insensitive(locked: ServiceHandle) -> None:
    for scheme in ("bearer", "BEARER", "bEaReR"):
        auth = {"Authorization": f"{scheme} hook-token"}
        status, answer = http("POST", f"{locked.url}/v1/alerts", alert(), auth)
        assert status == 202, (scheme, answer)
        admin = {"Authorization": f"{scheme} admin-token"}
        assert http("GET", f"{locked.url}/v1/admin/dnc", headers=admin)[0] == 200


def test_a_signed_timestamp_is_ascii_digits_only(locked: ServiceHandle) -> None:
    body = orjson.dumps(alert())
    now = int(time.time())
    for stamp in (f"{now:_}", f"+{now}", "".join(chr(0x0660 + int(d)) for d in str(now))):
        answer = raw(locked.url, "POST", "/v1/alerts", [JSON, *signed(body, stamp)], body)
        problem = assert_problem(answer, 401, "unauthorized")
        assert "unix seconds" in problem["problems"][0]["message"]
    answer = raw(locked.url, "POST", "/v1/alerts", [JSON, *signed(body)], body)
    assert answer.status == 202


def test_repeated_credentials_are_refused(locked: ServiceHandle) -> None:
    body = orjson.dumps(alert())
    good, bad = (b"Authorization", b"Bearer hook-token"), (b"Authorization", b"Bearer nope")
    for headers in ([good, bad], [bad, good], [good, good], [*signed(body), *signed(body)]):
        answer = raw(locked.url, "POST", "/v1/alerts", [JSON, *headers], body)
        assert_problem(answer, 401, "unauthorized")


# --- The body is read whole, or not at all -----------------------------------------------


@pytest.mark.parametrize("shut", [True, False], ids=["half-closed", "closed"])
def test_a_body_shorter_than_its_content_length_is_never_accepted(
    make_service: Callable[..., ServiceHandle], shut: bool
) -> None:
    service = make_service().start()
    doc = alert()
    body = orjson.dumps(doc)
    if shut:
        answer = raw(service.url, "POST", "/v1/alerts", [JSON], body, length=500, shut=True)
        assert answer.status in (None, 400), answer
    else:
        host, port = service.url.removeprefix("http://").split(":")
        head = f"POST /v1/alerts HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(f"{head}Content-Length: 500\r\n\r\n".encode() + body)
            time.sleep(0.3)
    time.sleep(0.3)
    assert http("GET", f"{service.url}/v1/alerts/{doc['idempotencyKey']}")[0] == 404
    assert http("GET", f"{service.url}/healthz")[0] == 200


def test_a_body_that_arrives_in_pieces_is_read_whole(
    make_service: Callable[..., ServiceHandle],
) -> None:
    service = make_service().start()
    body = orjson.dumps(alert())
    answer = raw(service.url, "POST", "/v1/alerts", [JSON], body[:40], body[40:], pause=0.3)
    assert answer.status == 202, answer.body


def test_a_body_that_stalls_is_answered_408(
    make_service: Callable[..., ServiceHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_api, "_BODY_TIMEOUT_SECONDS", 0.5, raising=False)
    service = make_service().start()
    started = time.monotonic()
    answer = raw(service.url, "POST", "/v1/alerts", [JSON], b'{"idem', length=500, timeout=8)
    assert_problem(answer, 408, "timeout")
    assert time.monotonic() - started < 5  # 0.5 s, with room for a loaded machine


# --- JSON only, and no browser's cross-site request ---------------------------------------


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        pytest.param(b"application/json", 202, id="json"),
        pytest.param(b"application/json; charset=utf-8", 202, id="json-utf-8"),
        pytest.param(b"Application/JSON;Charset=UTF-8", 202, id="any-case"),
        pytest.param(b"text/plain", 415, id="text-plain-a-form-can-send"),
        pytest.param(b"application/x-www-form-urlencoded", 415, id="form"),
        pytest.param(b"multipart/form-data; boundary=x", 415, id="multipart"),
        pytest.param(None, 415, id="none"),
        pytest.param(b"application/json; charset=latin-1", 415, id="not-utf-8"),
        pytest.param(b"application/jsonp", 415, id="another-type"),
        pytest.param(b"application/\xff", 415, id="odd-bytes"),
    ],
)
def test_the_webhook_takes_json_only(
    make_service: Callable[..., ServiceHandle], content_type: bytes | None, expected: int
) -> None:
    service = make_service().start()
    doc = alert()
    headers = [] if content_type is None else [(b"Content-Type", content_type)]
    answer = raw(service.url, "POST", "/v1/alerts", headers, orjson.dumps(doc))
    if expected == 415:
        problem = assert_problem(answer, 415, "unsupported_media_type")
        assert problem["problems"][0]["field"] == "Content-Type"
        assert http("GET", f"{service.url}/v1/alerts/{doc['idempotencyKey']}")[0] == 404
    else:
        assert answer.status == expected, answer.body


def test_browsers_cross_site_requests_are_refused(locked: ServiceHandle) -> None:
    own = locked.url
    hook = (b"Authorization", b"Bearer hook-token")
    admin = (b"Authorization", b"Bearer admin-token")
    number = "/v1/admin/dnc/+12015550123"
    for method, path, headers in (
        ("POST", "/v1/alerts", [(b"Origin", b"https://evil.example")]),
        ("POST", "/v1/alerts", [(b"Origin", b"null")]),
        ("POST", "/v1/alerts", [(b"Sec-Fetch-Site", b"cross-site")]),
        ("POST", "/v1/alerts", [(b"Origin", own.encode()), (b"Sec-Fetch-Site", b"cross-site")]),
        ("POST", "/v1/alerts", [(b"Origin", own.encode()), (b"Origin", b"https://evil.example")]),
        ("POST", "/v1/alerts", [(b"Origin", b"https://desk.example.com.evil.example")]),
        ("POST", "/v1/alerts", [(b"Origin", own.replace("127.0.0.1", "localhost").encode())]),
        ("POST", "/v1/alerts", [(b"Origin", b"https://\xff")]),
        ("PUT", number, [(b"Origin", b"https://evil.example")]),
        ("DELETE", number, [(b"Origin", b"https://evil.example")]),
        ("POST", "/v1/admin/dialing/pause", [(b"Origin", b"https://evil.example")]),
        ("POST", "/v1/admin/maintenance", [(b"Sec-Fetch-Site", b"cross-site")]),
    ):
        credentials = hook if path == "/v1/alerts" else admin
        body = orjson.dumps(alert()) if path == "/v1/alerts" else b""
        answer = raw(own, method, path, [JSON, credentials, *headers], body)
        problem = assert_problem(answer, 403, "cross_site")
        assert problem["error"] == "forbidden", (method, path, headers)
    read = {"Authorization": "Bearer read-token"}
    assert http("GET", f"{own}/status", headers=read)[1]["dialingPaused"] is None
    assert (
        http("GET", f"{own}/v1/admin/dnc", headers={"Authorization": "Bearer admin-token"})[1][
            "numbers"
        ]
        == []
    )

    for headers in (
        [],  # curl, devices, the simulator
        [(b"Origin", own.encode()), (b"Sec-Fetch-Site", b"same-origin")],
        [(b"Origin", DESK.encode())],
        [(b"Origin", DESK.upper().encode()), (b"Sec-Fetch-Site", b"same-site")],
        [(b"Sec-Fetch-Site", b"none")],
    ):
        answer = raw(own, "POST", "/v1/alerts", [JSON, hook, *headers], orjson.dumps(alert()))
        assert answer.status == 202, (headers, answer.body)
    answer = raw(own, "PUT", number, [admin, (b"Origin", own.encode())])
    assert answer.status == 200, answer.body
    # Reads are not refused: a browser keeps a cross-site answer from its page (no CORS).
    answer = raw(
        own,
        "GET",
        "/status",
        [(b"Authorization", b"Bearer read-token"), (b"Origin", b"https://evil.example")],
    )
    assert answer.status == 200


# --- The read token -------------------------------------------------------------------------


def test_the_read_token_guards_status_records_and_the_dashboard(locked: ServiceHandle) -> None:
    doc = alert()
    auth = {"Authorization": "Bearer hook-token"}
    assert http("POST", f"{locked.url}/v1/alerts", doc, auth)[0] == 202
    record = f"/v1/alerts/{doc['idempotencyKey']}"
    for path in ("/status", record, "/"):
        for headers in (
            {},
            {"Authorization": "Bearer nope"},
            {"Authorization": "Bearer admin-token"},
            {"Authorization": "read-token"},
        ):
            status, problem = http("GET", f"{locked.url}{path}", headers=headers)
            assert status == 401, (path, headers)
            assert problem["problems"][0]["field"] == "Authorization"
            assert "TRIPLINE__HTTP__READ_TOKEN" not in problem["problems"][0]["message"]
        status, _ = http(
            "GET", f"{locked.url}{path}", headers={"Authorization": "Bearer read-token"}
        )
        assert status == 200, path
    assert http("GET", f"{locked.url}/?token=read-token")[0] == 200
    assert http("GET", f"{locked.url}/?token=nope")[0] == 401
    assert http("GET", f"{locked.url}/status?token=read-token")[0] == 401  # a header, not a URL
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert http("GET", f"{locked.url}{path}")[0] == 200, path


def test_without_a_read_token_status_and_records_stay_open(service: ServiceHandle) -> None:
    for path in ("/status", "/"):
        assert http("GET", f"{service.url}{path}")[0] == 200
    assert http("GET", f"{service.url}/v1/alerts/unknown")[0] == 404


@pytest.mark.parametrize(
    ("host", "warned"),
    [("0.0.0.0", True), ("127.0.0.1", False)],  # noqa: S104 - not bound: logged
)
def test_an_open_status_off_loopback_is_warned_about(
    make_service: Callable[..., ServiceHandle],
    caplog: pytest.LogCaptureFixture,
    host: str,
    warned: bool,
) -> None:
    with caplog.at_level(logging.WARNING, logger="tripline.edge.http_api"):
        make_service(TRIPLINE__HTTP__HOST=host).start()
    assert any("without a read token" in r.message for r in caplog.records) is warned


# --- Headers on every answer ----------------------------------------------------------------


def csp(answer: Answer) -> dict[str, list[str]]:
    directives = {}
    for directive in answer.header("Content-Security-Policy").split(";"):
        name, *values = directive.split()
        directives[name] = values
    return directives


def inline_hash(html: bytes, tag: str) -> str:
    (content,) = re.findall(rb"<%s>(.*?)</%s>" % (tag.encode(), tag.encode()), html, re.DOTALL)
    return "'sha256-" + base64.b64encode(hashlib.sha256(content).digest()).decode() + "'"


def test_every_answer_carries_nosniff_and_a_content_security_policy(locked: ServiceHandle) -> None:
    read = (b"Authorization", b"Bearer read-token")
    for method, path, headers in (
        ("GET", "/healthz", []),
        ("GET", "/readyz", []),
        ("GET", "/metrics", []),
        ("GET", "/openapi.json", []),
        ("GET", "/status", [read]),
        ("GET", "/status", []),
        ("GET", "/v1/alerts/unknown", [read]),
        ("GET", "/nowhere", []),
        ("DELETE", "/healthz", []),
        ("POST", "/v1/alerts", [(b"Content-Type", b"text/plain")]),
        ("POST", "/v1/alerts", [(b"Origin", b"https://evil.example")]),
        ("GET", "/v1/context/unknown", []),
        ("GET", "/v1/admin/dnc", []),
    ):
        answer = raw(locked.url, method, path, headers)
        assert answer.header("X-Content-Type-Options") == "nosniff", (method, path)
        policy = csp(answer)
        assert policy["default-src"] == ["'none'"], (method, path)
        assert policy["frame-ancestors"] == ["'none'"] or path.startswith("/v1/context")

    page = raw(locked.url, "GET", "/", [read])
    assert page.status == 200
    policy = csp(page)
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == [inline_hash(page.body, "script")]
    assert policy["style-src"] == [inline_hash(page.body, "style")]
    assert policy["connect-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert b"style=" not in page.body  # an inline style attribute would need 'unsafe-inline'
    assert page.header("Referrer-Policy") == "no-referrer"  # the URL may carry ?token=
    assert page.header("X-Content-Type-Options") == "nosniff"


def test_the_agent_page_may_be_framed_by_the_configured_desktops_only(
    locked: ServiceHandle,
) -> None:
    doc = alert()
    status, accepted = http(
        "POST", f"{locked.url}/v1/alerts", doc, {"Authorization": "Bearer hook-token"}
    )
    assert status == 202
    ref = accepted["referenceId"]
    path = f"/v1/context/{ref}?token=ctx-token"
    wait_for(lambda: raw(locked.url, "GET", path, [(b"Accept", b"text/html")]).status == 200)
    page = raw(locked.url, "GET", path, [(b"Accept", b"text/html")])
    policy = csp(page)
    assert policy["frame-ancestors"] == [DESK, "https://*.agents.example.com"]
    assert policy["default-src"] == ["'none'"]
    assert policy["style-src"] == [inline_hash(page.body, "style")]
    assert "script-src" not in policy  # the page has no script
    assert page.header("X-Content-Type-Options") == "nosniff"
    # Its JSON form and its refusals keep the desktop's frame-ancestors too (they show inside
    # the same iframe), with the strict policy otherwise.
    for headers in ([], [(b"Authorization", b"Bearer nope")]):
        answer = raw(locked.url, "GET", path.partition("?")[0], headers)
        assert csp(answer)["frame-ancestors"] == [DESK, "https://*.agents.example.com"]


def test_without_frame_ancestors_any_desktop_may_frame_the_agent_page(
    service: ServiceHandle,
) -> None:
    doc = alert()
    status, accepted = http("POST", f"{service.url}/v1/alerts", doc)
    assert status == 202
    path = f"/v1/context/{accepted['referenceId']}?token=ctx-token"
    wait_for(lambda: raw(service.url, "GET", path, [(b"Accept", b"text/html")]).status == 200)
    policy = csp(raw(service.url, "GET", path, [(b"Accept", b"text/html")]))
    assert "frame-ancestors" not in policy
    assert policy["default-src"] == ["'none'"]


# --- Attacks on what was built ----------------------------------------------------------------


def test_oversized_malformed_and_many_headers_get_a_4xx_and_the_service_stays_up(
    locked: ServiceHandle,
) -> None:
    body = orjson.dumps(alert())
    for headers in (
        [(b"Authorization", b"Bearer " + b"a" * 8100)],
        [(b"Origin", b"https://" + b"e" * 8100)],
        [(b"X-Long", b"x" * 9000)],
        [(b"Authorization", b"Bearer hook\x00token")],
        [(b"X-H%d" % n, b"v") for n in range(2000)],
        [(b"Origin", b"https://evil.example")] * 50,
        [(b"Content-Type", b"application/json; charset=" + b"u" * 4000)],
    ):
        answer = raw(locked.url, "POST", "/v1/alerts", [JSON, *headers], body)
        assert answer.status is not None
        assert 400 <= answer.status < 500, (answer.status, headers[0][0], answer.body[:200])
    assert http("GET", f"{locked.url}/healthz")[0] == 200
