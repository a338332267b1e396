"""The CXone backend's discovery and sign-in take nothing on trust: each malformed answer is a
clear, classified failure (retried later, or not at all), never an exception or a call to a
made-up host."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.actors.helpers import intent
from tests.conftest import alert
from tripline.adapters.backends.cxone import CxoneBackend
from tripline.conf.schema import CxoneConfig, DialerConfig
from tripline.messages import Alert
from tripline.pipeline.dial import Answer
from tripline.pipeline.govern import Occupancy
from tripline.pipeline.validate import Limits, validate

T = TypeVar("T")


def id_token(claims: object) -> str:
    return f"e30.{base64.urlsafe_b64encode(orjson.dumps(claims)).decode().rstrip('=')}.sig"


GOOD_TOKEN = {"access_token": "tok", "expires_in": 3600, "id_token": id_token({"tenantId": "T1"})}
ACTIVITY = {
    "skillActivity": [{"agentsLoggedIn": 4, "agentsAvailable": 1, "queueCount": 2, "skillId": "9"}]
}


def against(
    answers: dict[str, tuple[int, Any]], call: Callable[[CxoneBackend], Awaitable[T]]
) -> tuple[T, list[str]]:
    """`call` on a backend whose CXone answers each step as `answers` says, and the steps asked.

    "HERE" as the token or API endpoint stands for the test server itself.
    """
    seen: list[str] = []

    def step(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def answer(request: web.Request) -> web.Response:
            seen.append(name)
            status, body = answers[name]
            here = str(request.url.origin())
            if isinstance(body, dict) and body.get("token_endpoint") == "HERE":
                body = {**body, "token_endpoint": f"{here}/auth/token"}
            if isinstance(body, dict) and body.get("api_endpoint") == "HERE":
                body = {**body, "api_endpoint": here}
            raw = body if isinstance(body, bytes) else orjson.dumps(body)
            return web.Response(status=status, body=raw, content_type="application/json")

        return answer

    api = "/incontactapi/services/v26.0"
    app = web.Application()
    app.add_routes(
        [
            web.get("/.well-known/openid-configuration", step("openid")),
            web.post("/auth/token", step("token")),
            web.get("/.well-known/cxone-configuration", step("configuration")),
            web.get(f"{api}/skills/9/activity", step("activity")),
            web.post(f"{api}/scripts/7/start", step("start")),
        ]
    )

    async def go() -> T:
        async with TestServer(app, host="127.0.0.1") as server:
            url = str(server.make_url("")).rstrip("/")
            conf = CxoneConfig(discovery_url=url, skill_id="9", script_id="7")
            backend = CxoneBackend(conf=conf, dialer=DialerConfig())
            try:
                return await call(backend)
            finally:
                await backend.close()

    return asyncio.run(go()), seen


def occupancy_with(answers: dict[str, tuple[int, Any]]) -> tuple[Occupancy, list[str]]:
    return against(answers, lambda backend: backend.occupancy(now=100.0))


def an_alert() -> Alert:
    result = validate(orjson.dumps(alert()), now=time.time(), limits=Limits())
    assert isinstance(result, tuple), result
    return result[0]


HEALTHY: dict[str, tuple[int, Any]] = {
    "openid": (200, {"token_endpoint": "HERE"}),
    "token": (200, GOOD_TOKEN),
    "configuration": (200, {"api_endpoint": "HERE"}),
    "activity": (200, ACTIVITY),
    "start": (202, {"contactId": 42}),
}


def test_a_healthy_discovery_signs_in_and_reads_the_skill() -> None:
    occupancy, seen = occupancy_with(HEALTHY)
    assert seen == ["openid", "token", "configuration", "activity"]
    assert (occupancy.ok, occupancy.occupancy, occupancy.waiting) == (True, 0.75, 2)


@pytest.mark.parametrize(
    ("step", "answer", "detail", "reached"),
    [
        ("openid", (200, {}), "cxone discovery: no token_endpoint", "openid"),
        ("openid", (200, {"token_endpoint": 7}), "cxone discovery: no token_endpoint", "openid"),
        ("openid", (200, [1, 2]), "cxone discovery: no token_endpoint", "openid"),
        ("openid", (200, b"<html>"), "cxone discovery: no token_endpoint", "openid"),
        (
            "openid",
            (503, {"token_endpoint": "HERE"}),
            "cxone discovery: no token_endpoint",
            "openid",
        ),
        ("token", (401, {"error": "invalid_grant"}), "cxone token refused", "token"),
        ("token", (429, {}), "cxone token refused", "token"),
        ("token", (200, "tok"), "cxone token refused", "token"),
        (
            "token",
            (200, {**GOOD_TOKEN, "access_token": None}),
            "cxone token without access_token/tenant",
            "token",
        ),
        (
            "token",
            (200, {**GOOD_TOKEN, "expires_in": "3600"}),
            "cxone token without access_token/tenant",
            "token",
        ),
        (
            "token",
            (200, {**GOOD_TOKEN, "id_token": "not-a-jwt"}),
            "cxone token without access_token/tenant",
            "token",
        ),
        (
            "token",
            (200, {**GOOD_TOKEN, "id_token": id_token(["T1"])}),
            "cxone token without access_token/tenant",
            "token",
        ),
        ("configuration", (200, {}), "cxone discovery: no api_endpoint", "configuration"),
        (
            "configuration",
            (404, {"error": "unknown tenant"}),
            "cxone discovery: no api_endpoint",
            "configuration",
        ),
        (
            "configuration",
            (200, {"api_endpoint": ["x"]}),
            "cxone discovery: no api_endpoint",
            "configuration",
        ),
    ],
)
def test_a_malformed_discovery_step_is_a_clear_failure_and_stops_there(
    step: str, answer: tuple[int, Any], detail: str, reached: str
) -> None:
    occupancy, seen = occupancy_with({**HEALTHY, step: answer})
    assert (occupancy.ok, occupancy.occupancy, occupancy.detail) == (False, 1.0, detail)
    assert seen[-1] == reached  # nothing asked of a host the discovery did not give
    assert "activity" not in seen


def test_a_call_through_a_healthy_discovery_is_placed() -> None:
    result, seen = against(HEALTHY, lambda backend: backend.dial(intent(an_alert()), 1))
    assert (result.answer, result.ref) == (Answer.DONE, "42")
    assert seen == ["openid", "token", "configuration", "start"]


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        (400, Answer.FAILED),
        (401, Answer.FAILED),
        (403, Answer.FAILED),
        (429, Answer.UNSENT),
        (500, Answer.UNSENT),
        (503, Answer.UNSENT),
    ],
)
def test_only_a_client_error_on_sign_in_fails_the_call_for_good(
    status: int, answer: Answer
) -> None:
    """A refused key will not work on retry; a throttled or failing token endpoint may."""
    answers = {**HEALTHY, "token": (status, {})}
    result, seen = against(answers, lambda backend: backend.dial(intent(an_alert()), 1))
    assert (result.answer, result.detail) == (answer, "cxone token refused")
    assert "start" not in seen
