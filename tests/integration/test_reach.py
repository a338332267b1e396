"""Reaching the customer (promise 7) on real Redis and Mosquitto, the emulator playing results."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import redis

from tests.conftest import (
    EmulatorHandle,
    ServiceHandle,
    alert,
    free_port,
    http,
    publish,
    service_env,
    wait_for,
    zone_outside_window,
)
from tripline.adapters.store import Keys

pytestmark = [pytest.mark.integration, pytest.mark.long(40)]

# Seconds, not minutes: every priority may re-attempt, a second apart; results asked often.
FAST = {
    "TRIPLINE__REACH__RETRY_AFTER_SECONDS": "{ critical = 1, high = 1, normal = 1, low = 1 }",
    "TRIPLINE__REACH__MAX_ATTEMPTS": "{ critical = 4, high = 2, normal = 1, low = 1 }",
    "TRIPLINE__REACH__ATTEMPTS_PER_CONTACT": "{ critical = 2, high = 1, normal = 1, low = 1 }",
    "TRIPLINE__OUTCOMES__POLL_SECONDS": "0.2",
    # The caps would stop the third call to one customer: not what these tests are about.
    "TRIPLINE__COMPLY__NUMBER_CAPS": '["20/24h"]',
    "TRIPLINE__COMPLY__CUSTOMER_CAPS": '["20/24h"]',
}
SECOND = "+12015550142"
THIRD = "+12015550143"


@pytest.fixture
def reach(make_service: Callable[..., ServiceHandle]) -> Callable[..., ServiceHandle]:
    def make(**env: str) -> ServiceHandle:
        return make_service(**{**FAST, **env}).start()

    return make


def results(emulator: EmulatorHandle, *plan: Any, delay: float = 0.3) -> None:
    status, body = http(
        "PUT",
        f"{emulator.url}/_emulator/settings",
        {"call_results": list(plan), "call_result_delay_seconds": delay},
    )
    assert status == 200, body


def called_numbers(emulator: EmulatorHandle) -> list[str]:
    return [c["body"]["callbackNumbers"][0] for c in emulator.callbacks()]


def ended(service: ServiceHandle, key: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        rec = service.record(key)
        return rec if rec and rec.get("result") not in (None, "pending") else None

    found: dict[str, Any] = wait_for(done, timeout=30, interval=0.1)
    return found


def test_no_answer_then_a_second_attempt_reaches_the_customer(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    customer = emulator.add_customer("CUST-9981")
    results(emulator, "no_answer")
    service = reach()
    doc = alert()
    service.publish(doc, sensor=doc["sensorId"])

    record = ended(service, doc["idempotencyKey"])
    assert record["outcome"] == "called"
    assert record["result"] == "reached"
    attempts = record["attempts"]
    assert [(a["n"], a["result"]) for a in attempts] == [(1, "not_reached"), (2, "reached")]
    assert attempts[0]["resultReason"] == "no_answer"
    assert [a["callId"] for a in attempts] == [c["conversationId"] for c in _calls(emulator)]
    assert called_numbers(emulator) == [customer["phone"]] * 2
    assert "+1201555" not in str(attempts)  # the phone is masked in the record
    assert not emulator.workitems()
    metrics = http("GET", f"{service.url}/metrics")[1]
    assert 'tripline_call_results_total{reason="no_answer",result="not_reached"} 1.0' in metrics
    assert 'tripline_call_results_total{reason="",result="reached"} 1.0' in metrics
    assert 'tripline_call_attempts_per_alert_bucket{le="2.0"} 1.0' in metrics
    status = http("GET", f"{service.url}/status")[1]
    assert status["reach"] == {"results": {"not_reached": 1, "reached": 1}, "reachRate": 0.5}
    # The agent sees the attempts next to the alert.
    code, page = http(
        "GET",
        f"{service.url}/v1/context/{record['referenceId']}",
        headers={"Authorization": "Bearer ctx-token", "Accept": "text/html"},
    )
    assert code == 200
    assert '<span id="result">reached</span>' in page
    assert page.count("<td>Test Customer</td>") == 2
    assert "no_answer" in page


def test_primary_not_reached_twice_then_the_second_contact_is_reached(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    customer = emulator.add_customer(
        "CUST-9981",
        contacts=[{"name": "Site manager", "phone": SECOND, "role": "manager", "order": 1}],
    )
    results(emulator, "no_answer", "busy")
    service = reach()
    doc = alert()
    service.publish(doc, sensor=doc["sensorId"])

    record = ended(service, doc["idempotencyKey"])
    assert record["result"] == "reached"
    assert called_numbers(emulator) == [customer["phone"], customer["phone"], SECOND]
    assert [a["contact"] for a in record["attempts"]] == [
        "Test Customer",
        "Test Customer",
        "Site manager",
    ]
    assert [a["resultReason"] for a in record["attempts"]] == ["no_answer", "busy", None]


def test_a_contact_outside_its_window_is_skipped_for_one_inside_it(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    emulator.add_customer(
        "CUST-9981",
        contacts=[
            {"name": "Night site", "phone": SECOND, "order": 1, "timezone": zone_outside_window()},
            {"name": "Day site", "phone": THIRD, "order": 2},
        ],
    )
    results(emulator, "no_answer")
    # High: one attempt per contact, so the second attempt is the night site's turn.
    service = reach(TRIPLINE__REACH__MAX_ATTEMPTS="{ critical = 4, high = 3, normal = 1, low = 1 }")
    doc = alert(alert_type="flood")
    service.publish(doc, sensor=doc["sensorId"])

    record = ended(service, doc["idempotencyKey"])
    assert record["result"] == "reached"
    assert called_numbers(emulator)[1:] == [THIRD]  # never the contact at 03:00
    skipped = [h for h in record["history"] if h["state"] == "attempt_queued"]
    assert "Night site: outside_calling_window" in skipped[0]["detail"]


def test_a_resolve_mid_ladder_cancels_the_waiting_callback_and_ends_the_ladder(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    emulator.add_customer("CUST-9981")
    results(emulator, "answered", delay=60)  # nobody takes the callback for a minute
    service = reach()
    doc = alert()
    service.publish(doc, sensor=doc["sensorId"])
    wait_for(lambda: service.outcome(doc["idempotencyKey"]) == "called")
    wait_for(lambda: (service.record(doc["idempotencyKey"]) or {}).get("attempts"))

    resolve = alert(sensor=doc["sensorId"], status="resolved")
    service.publish(resolve, sensor=doc["sensorId"])

    record = ended(service, doc["idempotencyKey"])
    assert record["result"] == "not_reached"
    assert record["resultReason"] == "canceled"
    assert record["ladderEnd"] == "the sensor resolved"
    (cancel,) = [r for r in emulator.requests() if r["method"] == "PATCH" and r["status"] == 200]
    assert (
        cancel["path"] == f"/api/v2/conversations/callbacks/{_calls(emulator)[0]['conversationId']}"
    )
    assert cancel["body"] == {"state": "disconnected"}
    assert len(emulator.callbacks()) == 1
    assert not emulator.workitems()  # a resolve needs no person


def test_an_exhausted_ladder_raises_exactly_one_task_with_the_history(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    emulator.add_customer("CUST-9981")
    results(emulator, "no_answer", "voicemail")
    service = reach()
    doc = alert(alert_type="flood")  # high: two attempts
    service.publish(doc, sensor=doc["sensorId"])

    record = ended(service, doc["idempotencyKey"])
    assert record["result"] == "not_reached"
    assert record["ladderEnd"] == "not reached in 2 attempts"
    wait_for(emulator.workitems)
    wait_for(lambda: (service.record(doc["idempotencyKey"]) or {}).get("taskId"))
    (task,) = emulator.workitems()
    description = task["body"]["description"]
    assert "not reached in 2 attempts" in description
    assert "#1 Test Customer" in description
    assert "#2 Test Customer" in description
    assert "not_reached no_answer" in description
    assert "not_reached voicemail" in description
    assert len(emulator.callbacks()) == 2


def test_no_result_in_time_is_unknown_with_a_task(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    emulator.add_customer("CUST-9981")
    results(emulator, "answered", delay=60)
    service = reach(TRIPLINE__OUTCOMES__RESULT_TIMEOUT_SECONDS="1.5")
    doc = alert()
    service.publish(doc, sensor=doc["sensorId"])

    record = ended(service, doc["idempotencyKey"])
    assert (record["result"], record["resultReason"]) == ("unknown", "timeout")
    wait_for(emulator.workitems)
    assert len(emulator.callbacks()) == 1  # never a second call on an unknown one
    assert any(r["method"] == "PATCH" for r in emulator.requests())  # cancelled first


def test_a_do_not_call_wrapup_puts_the_number_on_the_list_and_moves_on(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle, redis_client: redis.Redis
) -> None:
    customer = emulator.add_customer(
        "CUST-9981", contacts=[{"name": "Site manager", "phone": SECOND, "order": 1}]
    )
    results(emulator, {"result": "answered", "wrapupCode": "DNC-REQUEST"})
    service = reach(TRIPLINE__OUTCOMES__WRAPUP_DO_NOT_CALL='["DNC-REQUEST"]')
    doc = alert()
    service.publish(doc, sensor=doc["sensorId"])

    record = ended(service, doc["idempotencyKey"])
    assert record["result"] == "reached"
    assert record["attempts"][0]["resultReason"] == "do_not_call"
    assert record["attempts"][0]["wrapupCode"] == "DNC-REQUEST"
    assert called_numbers(emulator) == [customer["phone"], SECOND]
    keys = Keys(service.prefix)
    assert redis_client.sismember(keys.dnc(), customer["phone"])


def test_cxone_results_drive_the_ladder(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    emulator.add_customer("CUST-9981")
    results(emulator, "busy")
    service = reach(
        TRIPLINE__DIALER__BACKEND="cxone",
        TRIPLINE__CXONE__DISCOVERY_URL=emulator.url,
        TRIPLINE__CXONE__ACCESS_KEY_SECRET="demo-key-secret",
        TRIPLINE__CXONE__CLIENT_SECRET="demo-app-secret",
    )
    doc = alert()
    service.publish(doc, sensor=doc["sensorId"])

    record = ended(service, doc["idempotencyKey"])
    assert record["result"] == "reached"
    assert [a["resultReason"] for a in record["attempts"]] == ["busy", None]
    starts = [r for r in emulator.requests() if r["path"].endswith("/start")]
    assert len(starts) == 2


def test_twilio_status_callbacks_are_verified_and_drive_the_ladder(
    make_service: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    emulator.add_customer("CUST-9981")
    results(emulator, "no_answer")
    port = free_port()
    status_url = f"http://127.0.0.1:{port}/v1/providers/twilio/status"
    service = make_service(
        **{
            **FAST,
            "TRIPLINE__DIALER__BACKEND": "twilio",
            "TRIPLINE__TWILIO__BASE_URL": emulator.url,
            "TRIPLINE__TWILIO__AUTH_TOKEN": "demo-twilio-token",
            "TRIPLINE__OUTCOMES__TWILIO_STATUS_URL": status_url,
            # Results from the pushed callbacks alone: the reconciliation poll comes too late.
            "TRIPLINE__OUTCOMES__POLL_SECONDS": "60",
        }
    ).start(port=port)
    # A key with characters the URL escapes: the signature is over the URL as Twilio sent it.
    doc = alert("evt:2026/12{a}%b+c")
    service.publish(doc, sensor=doc["sensorId"])

    record = ended(service, quote(doc["idempotencyKey"], safe=""))
    assert record["result"] == "reached"
    assert [a["resultReason"] for a in record["attempts"]] == ["no_answer", None]
    calls = [r for r in emulator.requests() if r["path"].endswith("/Calls.json")]
    assert len(calls) == 2
    assert calls[0]["body"]["StatusCallback"].startswith(status_url + "?")
    assert calls[0]["body"]["MachineDetection"] == "Enable"

    # A forged callback: well-formed, wrongly signed. 401, and the record does not move.
    query = urlencode({"key": doc["idempotencyKey"], "n": "2", "i": f"tripline-{service.prefix}"})
    form = {"CallSid": record["attempts"][1]["callId"], "CallStatus": "busy"}
    before = service.record(quote(doc["idempotencyKey"], safe=""))
    for signature in ("", "AAAA", _sign(f"{status_url}?{query}", form, "not-the-token")):
        status, _ = http(
            "POST",
            f"{status_url}?{query}",
            urlencode(form).encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
            },
        )
        assert status == 401
    assert service.record(quote(doc["idempotencyKey"], safe="")) == before


def test_kill_9_between_attempts_loses_no_attempt_and_calls_none_twice(
    prefix: str, emulator: EmulatorHandle
) -> None:
    emulator.add_customer("CUST-9981")
    results(emulator, "no_answer", "no_answer")
    env = {
        **os.environ,
        **service_env(prefix, emulator),
        **FAST,
        "TRIPLINE__REACH__RETRY_AFTER_SECONDS": "{ critical = 4, high = 4, normal = 4, low = 4 }",
        "TRIPLINE__HTTP__PORT": str(free_port()),
    }
    url = f"http://127.0.0.1:{env['TRIPLINE__HTTP__PORT']}"
    doc = alert()
    with _tripline_run(env, url) as first:
        publish(f"tt/{prefix}/sensors/{doc['sensorId']}/alerts", doc)

        def waiting() -> bool:
            status, rec = http("GET", f"{url}/v1/alerts/{doc['idempotencyKey']}")
            return status == 200 and "nextAttemptAt" in rec

        wait_for(waiting, timeout=20)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    with _tripline_run(env, url):
        wait_for(
            lambda: (
                http("GET", f"{url}/v1/alerts/{doc['idempotencyKey']}")[1].get("result")
                == "reached"
            ),
            timeout=30,
            interval=0.1,
        )
        rec = http("GET", f"{url}/v1/alerts/{doc['idempotencyKey']}")[1]
    assert [a["n"] for a in rec["attempts"]] == [1, 2, 3]
    assert len(emulator.callbacks()) == 3


def _calls(emulator: EmulatorHandle) -> list[dict[str, Any]]:
    """The callbacks the emulator created, in order (their conversation ids)."""
    return [{"conversationId": c.id} for c in emulator.state.calls["callback"].values()]


def _sign(url: str, form: dict[str, str], token: str) -> str:
    signed = url + "".join(k + form[k] for k in sorted(form))
    return base64.b64encode(
        hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()
    ).decode()


class _tripline_run:  # noqa: N801 - used as a context manager, reads as a verb
    def __init__(self, env: dict[str, str], url: str) -> None:
        self.env, self.url = env, url

    def __enter__(self) -> subprocess.Popen[bytes]:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tripline.edge.cli", "run", "--workers", "1"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def ready() -> bool:
            try:
                return http("GET", f"{self.url}/readyz")[0] == 200
            except OSError:
                return False

        wait_for(ready, timeout=20, interval=0.1)
        return self.proc

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def test_outside_the_window_a_scheduled_callback_is_rechecked_before_it_is_due(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    emulator.add_customer("CUST-9981", timezone=zone_outside_window())
    service = reach(
        TRIPLINE__COMPLY__BLOCKED_ACTION='{ critical = "scheduled_callback" }',
        # Re-checked at once: the callback is due hours from now.
        TRIPLINE__COMPLY__SCHEDULED_RECHECK_SECONDS="86400",
    )
    doc = alert()
    service.publish(doc, sensor=doc["sensorId"])

    def rechecked() -> dict[str, Any] | None:
        rec = service.record(doc["idempotencyKey"])
        return rec if rec and any(h["state"] == "rechecked" for h in rec["history"]) else None

    record = wait_for(rechecked, timeout=20)
    assert record["outcome"] == "called"
    assert record["result"] == "pending"
    (callback,) = emulator.callbacks()
    assert callback["body"]["callbackScheduledTime"] == record["scheduledFor"]
    local = record["facts"]["localTime"]
    assert record["facts"]["rule"].startswith("calling_window")
    assert local  # the decision's evidence: the local time it was blocked at
    assert not emulator.workitems()


def test_a_scheduled_callback_whose_number_joined_the_dnc_list_is_cancelled(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle, redis_client: redis.Redis
) -> None:
    customer = emulator.add_customer("CUST-9981", timezone=zone_outside_window())
    service = reach(
        TRIPLINE__COMPLY__BLOCKED_ACTION='{ critical = "scheduled_callback" }',
        TRIPLINE__COMPLY__SCHEDULED_RECHECK_SECONDS="86400",
        TRIPLINE__OUTCOMES__POLL_SECONDS="1.5",
    )
    doc = alert()
    redis_client.sadd(Keys(service.prefix).dnc(), "+10000000000")  # the list exists
    service.publish(doc, sensor=doc["sensorId"])
    wait_for(lambda: service.outcome(doc["idempotencyKey"]) == "called")
    # Before its re-check, the customer asks not to be called.
    redis_client.sadd(Keys(service.prefix).dnc(), customer["phone"])

    record = ended(service, doc["idempotencyKey"])
    assert (record["result"], record["resultReason"]) == ("not_reached", "canceled")
    assert record["ladderEnd"].startswith("do_not_call")
    assert [r["body"] for r in emulator.requests() if r["method"] == "PATCH"] == [
        {"state": "disconnected"}
    ]
    wait_for(emulator.workitems)  # a person hears of it


def test_campaign_contacts_results_drive_the_ladder_one_contact_per_attempt(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    emulator.add_customer("CUST-9981")
    results(emulator, "no_answer")
    service = reach(
        TRIPLINE__DIALER__BACKEND="genesys_campaign",
        TRIPLINE__DIALER__CAMPAIGN_BATCH_SECONDS="0.05",
    )
    doc = alert()
    service.publish(doc, sensor=doc["sensorId"])

    record = ended(service, doc["idempotencyKey"])
    assert record["result"] == "reached"
    assert [a["resultReason"] for a in record["attempts"]] == ["no_answer", None]
    ids = [a["callId"] for a in record["attempts"]]
    assert ids[1] == ids[0] + "-2"  # a re-post of the first contact would never dial again
    appended = [
        c["id"]
        for r in emulator.requests()
        if r["path"].endswith("/contacts") and r["status"] == 200
        for c in r["body"]
    ]
    assert [f"contact:{i}" for i in appended] == ids


def test_a_resolve_cancels_a_twilio_call_still_ringing(
    reach: Callable[..., ServiceHandle], emulator: EmulatorHandle
) -> None:
    emulator.add_customer("CUST-9981")
    results(emulator, "answered", delay=60)  # rings for a minute
    service = reach(
        TRIPLINE__DIALER__BACKEND="twilio",
        TRIPLINE__TWILIO__BASE_URL=emulator.url,
        TRIPLINE__TWILIO__AUTH_TOKEN="demo-twilio-token",
    )
    doc = alert()
    service.publish(doc, sensor=doc["sensorId"])
    wait_for(lambda: (service.record(doc["idempotencyKey"]) or {}).get("attempts"))
    service.publish(alert(sensor=doc["sensorId"], status="resolved"), sensor=doc["sensorId"])

    record = ended(service, doc["idempotencyKey"])
    assert (record["result"], record["resultReason"]) == ("not_reached", "canceled")
    (call,) = emulator.state.calls["twilio"].values()
    assert call.canceled
