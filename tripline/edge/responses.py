"""What every HTTP handler answers with: JSON, problem documents, bearer checks, the service."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from tripline.messages import Reason
from tripline.pipeline import signature

if TYPE_CHECKING:
    from tripline.supervisor import Service

SERVICE: web.AppKey[Service] = web.AppKey("service")
"""The Service an application serves (build_app sets it)."""
RETRY_AFTER = "5"
"""Seconds a 503 asks a client to wait."""


def json_response(
    data: Any,  # noqa: ANN401
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """`data` as a JSON answer."""
    return web.Response(
        body=orjson.dumps(data), status=status, headers=headers, content_type="application/json"
    )


def problem_response(
    status: int, error: str, problems: list[dict[str, str]], headers: dict[str, str] | None = None
) -> web.Response:
    """A problem document: {"error": ..., "problems": [{"field", "reason", "message"}]}."""
    return json_response({"error": error, "problems": problems}, status, headers)


def authorized(request: web.Request, token: str) -> bool:
    """Whether the request carries `Authorization: Bearer <token>` (once, any case of Bearer)."""
    return signature.bearer_matches(request.headers.getall("Authorization", []), token)


def unauthorized(message: str) -> web.Response:
    """A 401 problem about the Authorization header."""
    return problem_response(
        401,
        "unauthorized",
        [{"field": "Authorization", "reason": Reason.UNAUTHORIZED.value, "message": message}],
    )
