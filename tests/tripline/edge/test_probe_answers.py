"""What an answer to a probe request means, as tables: bodies of any shape, refusals, reports."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.edge.probe_answers import (
    BODY_LIMIT,
    Finding,
    Hints,
    NotJson,
    Problem,
    Reply,
    Status,
    Unreachable,
    decode,
    evaluate,
    judge,
    printable,
    summary,
    vendor_message,
)

HINTS = Hints(
    unauthorized="the token was refused",
    forbidden="missing permission routing:queue:view",
    not_found="[genesys] queue_id 'q' is no queue",
    bad_request="the grant was refused",
)


def reply(
    status: int, body: bytes | Any, content_type: str = "application/json", **kw: Any
) -> Reply:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return Reply(status=status, content_type=content_type, raw=raw, **kw)


def name_of(body: Any) -> str | Problem:
    """A reader as the probe's are: a summary, or a Problem."""
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        return Problem("no object with a name")
    return f"named {body['name']!r}"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(reply(200, {"name": "Q"}), "named 'Q'", id="ok-read"),
        pytest.param(
            reply(200, []), "HTTP 200 but no object with a name", id="ok-but-unexpected-body"
        ),
        pytest.param(
            reply(200, {"name": 5}), "HTTP 200 but no object with a name", id="wrong-type"
        ),
        pytest.param(
            reply(
                200, b"<!DOCTYPE html><html><head><title>Sign in</title></head></html>", "text/html"
            ),
            "HTTP 200 but an HTML page ('Sign in') (is the base URL the API host, not a web page?)",
            id="html-login-page",
        ),
        pytest.param(
            reply(200, b"<html><body>hi</body></html>", "text/plain"),
            "HTTP 200 but an HTML page (is the base URL the API host, not a web page?)",
            id="html-without-title-or-type",
        ),
        pytest.param(
            reply(200, b'{"name": "Q"', "application/json"),
            'HTTP 200 but not JSON: \'{"name": "Q"\'',
            id="invalid-json",
        ),
        pytest.param(
            reply(200, b"[" * 5000 + b"]" * 5000),
            "HTTP 200 but not JSON: '" + "[" * 59 + "…'",
            id="nested-past-the-parser-limit",
        ),
        pytest.param(
            reply(200, b"{}", truncated=True),
            f"HTTP 200 but a body over {BODY_LIMIT // 1024} KiB",
            id="too-large",
        ),
        pytest.param(reply(200, b""), "HTTP 200 but no object with a name", id="empty-body"),
        pytest.param(
            reply(401, {"message": "bad token", "code": "bad.credentials"}),
            "HTTP 401 'bad token; bad.credentials': the token was refused",
            id="401-genesys-body",
        ),
        pytest.param(
            reply(403, {"message": "You are missing permissions", "code": "missing.permissions"}),
            "HTTP 403 'You are missing permissions; missing.permissions': missing permission "
            "routing:queue:view",
            id="403-names-the-permission",
        ),
        pytest.param(
            reply(404, {"message": "not found", "code": "not.found"}),
            "HTTP 404 'not found; not.found': [genesys] queue_id 'q' is no queue",
            id="404-blames-the-id",
        ),
        pytest.param(
            reply(400, {"error": "invalid_grant", "error_description": "Bad key"}),
            "HTTP 400 'Bad key; invalid_grant': the grant was refused",
            id="400-oauth-error",
        ),
        pytest.param(
            reply(401, {"code": 20003, "message": "Authenticate", "status": 401}),
            "HTTP 401 'Authenticate; 20003': the token was refused",
            id="401-twilio-body",
        ),
        pytest.param(
            reply(429, {"message": "slow down"}, retry_after="42"),
            "HTTP 429 'slow down': rate limited (Retry-After 42 s): the budget is spent, try "
            "again later",
            id="429-with-its-wait",
        ),
        pytest.param(
            reply(502, b"<html><title>502 Bad Gateway</title></html>", "text/html"),
            "HTTP 502 \"an HTML page ('502 Bad Gateway')\": the service failed on its side; try "
            "again later",
            id="proxy-html-error-page",
        ),
        pytest.param(
            reply(302, b"", location="https://login.example/sso"),
            "HTTP 302: redirected to https://login.example/sso: configure the URL it points to",
            id="redirect-is-reported-not-followed",
        ),
        pytest.param(reply(418, {"detail": "teapot"}), "HTTP 418 'teapot'", id="other-status"),
        pytest.param(reply(409, 12), "HTTP 409", id="error-body-without-message"),
        pytest.param(
            Unreachable("cannot connect to 127.0.0.1:1: Connection refused"),
            "no answer: cannot connect to 127.0.0.1:1: Connection refused",
            id="unreachable",
        ),
    ],
)
def test_evaluate(answer: Reply | Unreachable, expected: str) -> None:
    found = evaluate(answer, HINTS, name_of)
    text = found.text if isinstance(found, Problem) else found
    assert text == expected
    assert isinstance(found, Problem) is (expected != "named 'Q'")


def test_a_reader_that_trips_on_an_odd_body_is_a_failure_not_a_crash() -> None:
    def fragile(body: Any) -> str:
        return str(body["name"].upper())

    found = evaluate(reply(200, {"other": 1}), HINTS, fragile)
    assert found == Problem("HTTP 200 but an unexpected body (KeyError)")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({"message": "m", "code": "c", "status": 4}, "m; c", id="genesys"),
        pytest.param(
            {"error": "invalid_grant", "error_description": "d"}, "d; invalid_grant", id="oauth"
        ),
        pytest.param({"message": "same", "error": "same"}, "same", id="no-repeats"),
        pytest.param({"message": {"nested": "x"}}, "", id="non-text-values-ignored"),
        pytest.param({"message": True}, "", id="booleans-ignored"),
        pytest.param("plain text", "plain text", id="text"),
        pytest.param(NotJson("an HTML page"), "an HTML page", id="not-json"),
        pytest.param(None, "", id="none"),
        pytest.param([1, 2], "", id="list"),
        pytest.param(
            {"message": "\x1b[31mred\x1b[0m\nnext"}, "[31mred [0m next", id="escapes-flattened"
        ),
    ],
)
def test_vendor_message(body: Any, expected: str) -> None:
    assert vendor_message(body) == expected


@given(st.binary(max_size=300), st.sampled_from(["", "text/html", "application/json"]))
def test_any_body_gives_one_printable_line(raw: bytes, content_type: str) -> None:
    for status in (200, 401, 500):
        found = evaluate(Reply(status=status, content_type=content_type, raw=raw), HINTS, name_of)
        text = found.text if isinstance(found, Problem) else found
        assert text.isprintable()
        assert len(text) < 700


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=30,
    )
)
def test_any_json_body_gives_a_line(body: Any) -> None:
    found = evaluate(reply(403, body), HINTS, name_of)
    assert isinstance(found, Problem)
    assert found.text.startswith("HTTP 403")
    assert found.text.isprintable()


def test_decode_empty_is_none_and_text_is_described() -> None:
    assert decode(reply(204, b"  ")) is None
    assert decode(reply(200, b"OK", "text/plain")) == NotJson("not JSON: 'OK'", text="OK")
    assert vendor_message(decode(reply(502, b"Bad\ngateway", "text/plain"))) == "Bad gateway"


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        pytest.param("a\tb\r\nc", 20, "a b c", id="controls-to-spaces"),
        pytest.param("x" * 30, 10, "x" * 9 + "…", id="cut"),
        pytest.param("\x00\x07", 10, "", id="only-controls"),
        pytest.param("\u202eevil", 10, "evil", id="bidi-override-dropped"),
    ],
)
def test_printable(text: str, limit: int, expected: str) -> None:
    assert printable(text, limit) == expected


def test_judge_names_the_request() -> None:
    ok = judge("genesys queue", "GET https://api/q", reply(200, {"name": "Q"}), HINTS, name_of)
    assert ok == Finding(
        check="genesys queue", status=Status.OK, detail="GET https://api/q: named 'Q'"
    )
    bad = judge("genesys queue", "GET https://api/q", reply(404, {}), HINTS, name_of)
    assert bad.status == Status.FAILED
    assert bad.detail == "GET https://api/q: HTTP 404: [genesys] queue_id 'q' is no queue"


@pytest.mark.parametrize(
    ("statuses", "code", "last"),
    [
        pytest.param([Status.OK, Status.OK], 0, "all 2 checks passed", id="all-ok"),
        pytest.param(
            [Status.OK, Status.NOT_CONFIGURED], 0, "all 1 checks passed", id="unused-is-no-failure"
        ),
        pytest.param(
            [Status.FAILED, Status.SKIPPED, Status.OK],
            1,
            "1 of 2 checks failed: c0",
            id="a-failure-fails-skips-are-not-counted-twice",
        ),
        pytest.param([Status.NOT_CONFIGURED], 0, "nothing to check", id="nothing-run"),
    ],
)
def test_summary(statuses: list[Status], code: int, last: str) -> None:
    findings = [Finding(check=f"c{i}", status=s, detail="d") for i, s in enumerate(statuses)]
    lines, exit_code = summary(findings)
    assert exit_code == code
    assert lines[-1] == last
    assert len(lines) == len(findings) + 1
    assert all(line.startswith(f"c{i}") for i, line in enumerate(lines[:-1]))


def test_the_report_flattens_what_config_values_bring() -> None:
    detail = "[genesys] queue_id '\x1b[2J' is no queue\nall checks passed"
    lines, code = summary([Finding(check="genesys queue", status=Status.FAILED, detail=detail)])
    assert code == 1
    assert (
        lines[0] == "genesys queue  FAILED  [genesys] queue_id ' [2J' is no queue all checks passed"
    )
    assert all(line.isprintable() for line in lines)
