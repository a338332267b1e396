"""Ids the backends put into URLs (from configuration, or from a sign-in answer) go out as one
percent-encoded path segment or query value: none can reach another path or add a parameter."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from tests.actors.helpers import intent
from tests.conftest import EmulatorHandle, alert
from tripline.adapters.backends import Reply
from tripline.adapters.backends.cxone import CxoneBackend
from tripline.adapters.backends.genesys import GenesysBackend
from tripline.adapters.backends.twilio import TwilioBackend
from tripline.conf.schema import CxoneConfig, DialerConfig, GenesysConfig, TwilioConfig
from tripline.devtools import emulator as emulator_app
from tripline.messages import Alert
from tripline.pipeline.dial import Answer
from tripline.pipeline.validate import Limits, validate

T = TypeVar("T")
ODD = "L 1/../x?y=1&z#f%2F"
# As the request line carries it: aiohttp (yarl) leaves "=" and "&" literal, which a path segment
# may hold (RFC 3986 sub-delims); "/", "?", "#", "%" and the space stay encoded.
ODD_SEGMENT = "L%201%2F..%2Fx%3Fy=1&z%23f%252F"


def run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(make())


def an_alert() -> Alert:
    result = validate(orjson.dumps(alert()), now=time.time(), limits=Limits())
    assert isinstance(result, tuple), result
    return result[0]


def test_genesys_contact_list_id_is_one_segment(emulator: EmulatorHandle) -> None:
    conf = GenesysConfig(
        base_url=emulator.url,
        login_url=emulator.url,
        client_secret=emulator_app.CLIENT_SECRET,
        contact_list_id=ODD,
    )

    async def post() -> Reply | object:
        backend = GenesysBackend(conf=conf, dialer=DialerConfig())
        try:
            return await backend.post_contacts([{"id": "c-1", "data": {"a": "b"}}], urgent=True)
        finally:
            await backend.close()

    reply = run(post)
    assert isinstance(reply, Reply), reply
    assert reply.body[0]["contactListId"] == ODD
    (posted,) = [r for r in emulator.requests() if r["path"].endswith("/contacts")]
    assert posted["rawPath"] == f"/api/v2/outbound/contactlists/{ODD_SEGMENT}/contacts"
    assert posted["query"] == {"priority": "true"}


def test_cxone_ids_and_tenant_are_one_segment_and_one_value(
    emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tenant comes from the sign-in's id_token: the CXone side decides what it holds.
    monkeypatch.setattr(emulator_app, "CXONE_TENANT", "T 1&area=x#y")
    conf = CxoneConfig(
        discovery_url=emulator.url,
        access_key_id=emulator_app.CXONE_KEY,
        access_key_secret=emulator_app.CXONE_KEY_SECRET,
        client_id=emulator_app.CXONE_APP,
        client_secret=emulator_app.CXONE_APP_SECRET,
        script_id=ODD,
        skill_id=ODD,
    )

    async def poll_and_dial() -> tuple[object, object]:
        backend = CxoneBackend(conf=conf, dialer=DialerConfig())
        try:
            return await backend.occupancy(now=time.time()), await backend.dial(
                intent(an_alert()), 1
            )
        finally:
            await backend.close()

    occupancy, result = run(poll_and_dial)
    assert getattr(occupancy, "ok", None) is True, occupancy
    assert getattr(result, "answer", None) == Answer.DONE, result
    raw = [r["rawPath"] for r in emulator.requests() if r["path"].startswith("/incontactapi")]
    assert raw == [
        f"/incontactapi/services/v26.0/skills/{ODD_SEGMENT}/activity",
        f"/incontactapi/services/v26.0/scripts/{ODD_SEGMENT}/start",
    ]


def test_twilio_account_sid_is_one_segment_and_the_reference_one_parameter(
    emulator: EmulatorHandle,
) -> None:
    conf = TwilioConfig(
        base_url=emulator.url,
        account_sid=ODD,
        auth_token=emulator_app.TWILIO_TOKEN,
        from_number="+12015550100",
        twiml_url="https://twiml.example/bridge?lang=en",
    )
    alerted = an_alert()

    async def dial() -> object:
        backend = TwilioBackend(conf=conf, dialer=DialerConfig())
        try:
            return await backend.dial(intent(alerted), 1)
        finally:
            await backend.close()

    result = run(dial)
    assert getattr(result, "answer", None) == Answer.DONE, result
    (call,) = emulator.requests()
    assert call["rawPath"] == f"/2010-04-01/Accounts/{ODD_SEGMENT}/Calls.json"
    twiml = urlsplit(call["body"]["Url"])
    assert (twiml.netloc, twiml.path) == ("twiml.example", "/bridge")
    assert parse_qs(twiml.query) == {"lang": ["en"], "referenceId": [alerted.reference_id]}
