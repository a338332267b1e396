"""`tripline check-config --probe` over real HTTP: the emulator, a closed port, odd servers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import AppThread, EmulatorHandle, free_port, tripline_cli
from tripline.devtools.emulator import (
    CLIENT_SECRET,
    CXONE_APP_SECRET,
    CXONE_KEY_SECRET,
    TWILIO_TOKEN,
)
from tripline.edge import cli

EVERY_BACKEND = """
[dialer]
backends = { critical = "genesys", high = "cxone", normal = "genesys_campaign", low = "twilio" }
"""


def env_for(emulator: EmulatorHandle, **overrides: str) -> dict[str, str]:
    url = emulator.url
    return {
        "PATH": "/usr/bin:/bin",
        "TRIPLINE__GENESYS__BASE_URL": url,
        "TRIPLINE__GENESYS__LOGIN_URL": url,
        "TRIPLINE__GENESYS__CLIENT_SECRET": CLIENT_SECRET,
        "TRIPLINE__CXONE__DISCOVERY_URL": url,
        "TRIPLINE__CXONE__ACCESS_KEY_SECRET": CXONE_KEY_SECRET,
        "TRIPLINE__CXONE__CLIENT_SECRET": CXONE_APP_SECRET,
        "TRIPLINE__TWILIO__BASE_URL": url,
        "TRIPLINE__TWILIO__AUTH_TOKEN": TWILIO_TOKEN,
        "TRIPLINE__CRM__BASE_URL": url,
        **overrides,
    }


@pytest.fixture
def every_backend(tmp_path: Path) -> Path:
    path = tmp_path / "probe.toml"
    path.write_text(EVERY_BACKEND)
    return path


def lines_of(stdout: str) -> dict[str, str]:
    """Each report line by its check's name (the first two words, or one)."""
    found: dict[str, str] = {}
    for line in stdout.splitlines():
        for name in (" ".join(line.split()[:2]), line.split()[0] if line.split() else ""):
            found.setdefault(name, line)
    return found


def test_everything_configured_and_working_passes(
    emulator: EmulatorHandle, every_backend: Path
) -> None:
    result = tripline_cli("check-config", "--probe", str(every_backend), env=env_for(emulator))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = lines_of(result.stdout)
    for check in (
        "genesys token",
        "genesys queue",
        "genesys occupancy",
        "genesys results",
        "genesys campaign",
        "genesys tasks",
        "cxone token",
        "cxone skill",
        "cxone results",
        "twilio account",
        "crm",
    ):
        assert lines[check].split()[len(check.split())] == "ok", lines[check]
    assert result.stdout.splitlines()[-1] == "all 11 checks passed"
    assert "queue 'Proactive alerts'" in lines["genesys queue"]
    assert (
        "[used for calls (critical), campaign (normal), tasks, occupancy]" in lines["genesys token"]
    )
    # The Account resource carries the auth token: the report never shows it.
    assert TWILIO_TOKEN not in result.stdout
    # Read-only: tokens, two analytics queries and GETs; nothing placed, raised or appended.
    sent = {(r["method"], r["path"]) for r in emulator.requests()}
    assert {m for m, _ in sent} <= {"GET", "POST"}
    assert {p for m, p in sent if m == "POST"} == {
        "/oauth/token",
        "/auth/token",
        "/api/v2/analytics/queues/observations/query",
        "/api/v2/analytics/conversations/details/query",
    }
    assert not any(calls for calls in emulator.state.calls.values())


def test_refused_credentials_and_closed_ports_are_named_failures(
    emulator: EmulatorHandle, every_backend: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    env = env_for(
        emulator,
        TRIPLINE__GENESYS__CLIENT_SECRET="not-the-secret",
        TRIPLINE__CRM__BASE_URL=closed,
        TRIPLINE__CXONE__ACCESS_KEY_SECRET="not-the-key",
    )
    result = tripline_cli("check-config", "--probe", str(every_backend), env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr == ""
    lines = lines_of(result.stdout)
    assert "FAILED" in lines["genesys token"]
    assert "HTTP 401 'invalid client credentials; bad.credentials'" in lines["genesys token"]
    assert "TRIPLINE__GENESYS__CLIENT_SECRET refused" in lines["genesys token"]
    assert lines["genesys queue"].split()[2:] == ["skipped", "no", "token"]
    assert "HTTP 401 'invalid access key or client; invalid_grant'" in lines["cxone token"]
    assert (
        "the access key (access_key_id, TRIPLINE__CXONE__ACCESS_KEY_SECRET)" in lines["cxone token"]
    )
    assert lines["cxone skill"].split()[2:] == ["skipped", "no", "token"]
    assert lines["twilio account"].split()[2] == "ok"
    assert f"cannot connect to 127.0.0.1:{closed.rsplit(':', 1)[1]}" in lines["crm"]
    assert "Connection refused" in lines["crm"]
    assert result.stdout.splitlines()[-1] == (
        "3 of 4 checks failed: genesys token, cxone token, crm"
    )
    # Nothing asked with refused credentials.
    asked = {r["path"] for r in emulator.requests()}
    assert not any(p.startswith(("/api/v2/routing", "/incontactapi")) for p in asked)


def test_unset_secrets_are_named_and_nothing_is_asked(
    emulator: EmulatorHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "cxone.toml"
    path.write_text('[dialer]\nbackend = "cxone"\n[tasks]\nbackend = "log"\n')
    env = env_for(
        emulator, TRIPLINE__CXONE__ACCESS_KEY_SECRET="", TRIPLINE__CXONE__CLIENT_SECRET=""
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["check-config", "--probe", str(path)]) == 1
    lines = lines_of(capsys.readouterr().out)
    assert lines["cxone credentials"].split()[2:4] == ["FAILED", "[used"]
    assert (
        "TRIPLINE__CXONE__ACCESS_KEY_SECRET, TRIPLINE__CXONE__CLIENT_SECRET not set"
        in lines["cxone credentials"]
    )
    for check in ("cxone skill", "cxone occupancy", "cxone results"):
        assert lines[check].split()[2:] == ["skipped", "no", "credentials"]
    assert [r["path"] for r in emulator.requests()] == ["/api/v1/customers"]  # the CRM only


def test_a_missing_object_blames_its_configured_id(
    emulator: EmulatorHandle,
    every_backend: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emulator.state.objects["queues"].clear()
    contact_list = next(iter(emulator.state.objects["contactlists"].values()))
    contact_list["columnNames"] = ["phone", "name"]
    emulator.state.objects["skills"]["2002"]["isActive"] = False
    for name, value in env_for(emulator).items():
        monkeypatch.setenv(name, value)
    assert cli.main(["check-config", "--probe", str(every_backend)]) == 1
    lines = lines_of(capsys.readouterr().out)
    assert "HTTP 404 'queue not found; not.found': [genesys] queue_id" in lines["genesys queue"]
    assert (
        "lacks the columns sensorId, alertType, referenceId, telemetryHash"
        in lines["genesys campaign"]
    )
    assert "skill 'Proactive alerts (outbound)' is inactive" in lines["cxone skill"]


async def _odd(request: web.Request) -> web.StreamResponse:  # noqa: PLR0911 - one per oddity
    mode = request.match_info["mode"]
    if mode == "html":
        page = "<!doctype html><html><head><title>Internal Error</title></head><body>x</body>"
        return web.Response(status=500, text=page, content_type="text/html")
    if mode == "badjson":
        return web.Response(text='{"items": [', content_type="application/json")
    if mode == "unexpected":
        return web.json_response({"unexpected": True})
    if mode == "slow":
        await asyncio.sleep(1)  # beyond the test's 0.3 s timeout
        return web.json_response({"items": []})
    if mode == "deep":
        return web.Response(text="[" * 200_000, content_type="application/json")
    if mode == "escapes":
        message = "\x1b[2J\x1b[31mGOT YOU\x1b[0m\r\nfake line: all checks passed"
        return web.json_response({"message": message, "code": "x"}, status=403)
    if mode == "huge":
        return web.Response(body=b"[" + b"0," * (1 << 20) + b"0]", content_type="application/json")
    if mode == "redirect":
        raise web.HTTPFound("https://login.example/sso")
    if mode == "forbidden":
        body = {"message": "Missing permission", "code": "missing.any.permissions", "status": 403}
        return web.json_response(body, status=403)
    return web.Response(status=200)  # "empty": 200 without a body


@pytest.fixture
def odd() -> Iterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{mode}/{tail:.*}", _odd)
    thread = AppThread(app)
    yield thread.url
    thread.stop()


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        pytest.param(
            "html",
            "HTTP 500 \"an HTML page ('Internal Error')\": the service failed on its side",
            id="html-error-page",
        ),
        pytest.param("badjson", "HTTP 200 but not JSON: '{\"items\": ['", id="invalid-json"),
        pytest.param(
            "unexpected", "HTTP 200 but no customer list (no items array)", id="unexpected-200"
        ),
        pytest.param("slow", "no answer: no answer within 0.3 s", id="slower-than-the-timeout"),
        pytest.param("deep", "HTTP 200 but not JSON: '[[[[", id="nested-past-any-parser"),
        pytest.param(
            "escapes",
            "HTTP 403 '[2J [31mGOT YOU [0m fake line: all checks passed; x'",
            id="terminal-escapes-flattened",
        ),
        pytest.param("huge", "HTTP 200 but a body over 1024 KiB", id="huge-body"),
        pytest.param(
            "redirect",
            "HTTP 302 '302: Found': redirected to https://login.example/sso: configure the URL "
            "it points to",
            id="redirect-not-followed",
        ),
        pytest.param("empty", "HTTP 200 but no customer list (no items array)", id="empty-200"),
    ],
)
def test_odd_answers_are_one_clear_line(
    *,
    odd: str,
    mode: str,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "crm-only.toml"
    path.write_text('[dialer]\nbackend = "log"\n[tasks]\nbackend = "log"\n')
    monkeypatch.setenv("TRIPLINE__CRM__BASE_URL", f"{odd}/{mode}")
    assert cli.main(["check-config", "--probe", "--timeout", "0.3", str(path)]) == 1
    out = capsys.readouterr()
    report = out.out.splitlines()
    assert len(report) == 5  # genesys, cxone, twilio not configured; crm; the summary
    (crm,) = [line for line in report if line.startswith("crm")]
    assert crm.split()[1] == "FAILED"
    assert expected in crm
    assert all(line.isprintable() for line in report)
    assert report[-1] == "1 of 1 checks failed: crm"
    assert "Traceback" not in out.err


def test_a_forbidden_read_names_the_permission_and_odd_discovery_is_refused(
    emulator: EmulatorHandle,
    odd: str,
    every_backend: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = env_for(
        emulator,
        TRIPLINE__GENESYS__BASE_URL=f"{odd}/forbidden",
        TRIPLINE__CXONE__DISCOVERY_URL=f"{odd}/html",
        TRIPLINE__TWILIO__BASE_URL="ftp://127.0.0.1",
        TRIPLINE__CRM__BASE_URL="not a url",
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["check-config", "--probe", str(every_backend)]) == 1
    lines = lines_of(capsys.readouterr().out)
    assert lines["genesys token"].split()[2] == "ok"  # the emulator's login
    assert "missing permission routing:queue:view" in lines["genesys queue"]
    assert "missing permission analytics:queueObservation:view" in lines["genesys occupancy"]
    assert "missing permission analytics:conversationDetail:view" in lines["genesys results"]
    assert "missing permission outbound:contactList:view" in lines["genesys campaign"]
    assert "missing permission workitems:worktype:view" in lines["genesys tasks"]
    assert "HTML page ('Internal Error')" in lines["cxone token"]
    assert lines["cxone skill"].split()[2] == "skipped"
    assert "not an http(s) URL" in lines["twilio account"]
    assert "no answer: not a valid URL: not a url/api/v1/customers" in lines["crm"]


def test_timeout_must_be_sensible(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("0", "-1", "61", "nan", "soon"):
        with pytest.raises(SystemExit) as exited:
            cli.main(["check-config", "--probe", "--timeout", bad, "x.toml"])
        assert exited.value.code == 2
    assert "--timeout" in capsys.readouterr().err
