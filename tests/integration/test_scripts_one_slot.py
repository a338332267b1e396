"""Every Lua script the service runs is called with keys of one cluster slot, hostile ids too.

Every command any client of this process sends is read off the wire (redis-py's connections,
sync and asyncio, and the raw pipelines all end in send_packed_command). The service then
lives through what calls each script: accept, cooldown, readings, transitions, grouping, caps,
the rate budget, a deferral's task, a resolve cancelling a waiting call, a call's result, a
Twilio status callback, its lease and the takeover of a lapsed instance — with ids made of
braces, colons and percent signs. Each script call
must name keys of one slot, and every script of the package (tests/tripline/adapters/
test_lua_scripts.py finds them) must have been seen: a new script fails here until a scenario
calls it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import hiredis
import pytest
import redis
import redis.asyncio.connection
import redis.connection
import yarl
from redis.crc import key_slot

from tests.conftest import (
    EmulatorHandle,
    ServiceHandle,
    alert,
    free_port,
    http,
    wait_for,
    zone_outside_window,
)
from tests.integration.test_fleet_behaviour import stamped
from tests.integration.test_reach import results
from tests.tripline.adapters.test_lua_scripts import scripts
from tripline.adapters import redis_io
from tripline.adapters.redis_io import script_sha
from tripline.adapters.store import Keys
from tripline.conf.redis_topology import Kind
from tripline.edge import twilio_signature
from tripline.messages import Reason
from tripline.service.lease import Lease, registry_keys

pytestmark = pytest.mark.integration

TOKEN = "twilio-token"


class Wire:
    """The script calls sent by this process: (script name, its KEYS)."""

    def __init__(self) -> None:
        found = scripts()
        self.by_sha = {script_sha(source): name for name, source in found.items()}
        self.by_source = {source: name for name, source in found.items()}
        self.calls: list[tuple[str, list[bytes]]] = []

    def sent(self, packed: Any) -> None:
        if isinstance(packed, str):
            data = packed.encode()
        elif isinstance(packed, bytes | bytearray | memoryview):
            data = bytes(packed)
        else:
            data = b"".join(bytes(p) if not isinstance(p, str) else p.encode() for p in packed)
        reader = hiredis.Reader()  # a request is a RESP array of bulk strings: a reply's form
        reader.feed(data)
        while (command := reader.gets()) is not False:
            if not isinstance(command, list) or command[0].upper() not in (b"EVALSHA", b"EVAL"):
                continue
            body = command[1].decode()
            name = (self.by_sha if command[0].upper() == b"EVALSHA" else self.by_source).get(
                body, f"unknown script {body[:40]!r}"
            )
            self.calls.append((name, list(command[3 : 3 + int(command[2])])))


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Wire:
    found = Wire()
    sync_send = redis.connection.AbstractConnection.send_packed_command
    async_send = redis.asyncio.connection.AbstractConnection.send_packed_command

    def send(self: Any, command: Any, check_health: bool = True) -> None:
        found.sent(command)
        sync_send(self, command, check_health)  # type: ignore[no-untyped-call]

    async def asend(self: Any, command: Any, check_health: bool = True) -> None:
        found.sent(command)
        await async_send(self, command, check_health)

    async def awrite(conn: Any, data: bytes) -> None:  # the AutoPipeline's batches
        found.sent(data)
        await async_write(conn, data)

    async_write = redis_io._write
    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", send)
    monkeypatch.setattr(redis.asyncio.connection.AbstractConnection, "send_packed_command", asend)
    monkeypatch.setattr(redis_io, "_write", awrite)
    return found


OUTBOX = re.compile(rb":\{o[0-9]+\}:ledger$")
"""A slot's ledger outbox (Keys.outbox)."""

GHOST = "gh{o}:st%"
"""A lapsed instance, named with what shapes keys."""


def test_every_script_is_called_with_keys_of_one_slot(
    wire: Wire,
    make_service: Callable[..., ServiceHandle],
    emulator: EmulatorHandle,
    redis_client: redis.Redis,
    prefix: str,
) -> None:
    port = free_port()
    status_url = f"http://127.0.0.1:{port}/v1/providers/twilio/status"
    # An instance whose lease lapsed long ago: the service claims it, adopts its (empty) work
    # and releases it, once it has held its own lease for a whole period (3 s here).
    Lease(redis_client, Keys(prefix), instance=GHOST, ttl=3.0, sessions=()).acquire(
        now=time.time() - 600
    )
    service = make_service(
        TRIPLINE__STATUS__TAKEOVER_AFTER_SECONDS="3",
        TRIPLINE__DIALER__GROUP_WINDOW_SECONDS="60",
        TRIPLINE__DIALER__PENDING_SECONDS="{ critical = 0, high = 0, normal = 0, low = 2 }",
        TRIPLINE__OUTCOMES__POLL_SECONDS="0.2",
        TRIPLINE__TWILIO__AUTH_TOKEN=TOKEN,
        TRIPLINE__OUTCOMES__TWILIO_STATUS_URL=status_url,
    ).start(port=port)
    results(emulator, "answered", delay=0.1)
    # Ids built of what shapes keys and hash tags.
    called, night, waiting = "C{a}:1%", "}{:N", "{c:W}"
    emulator.add_customer(called)
    emulator.add_customer(night, timezone=zone_outside_window())
    emulator.add_customer(waiting)
    critical = alert("k{1}:a%", customer=called, sensor="S}{:1")
    deferred = alert("{a:k}2", customer=night, sensor="S{2}")
    now = time.time()
    up = stamped(now, customer=waiting, sensor="B:{3}", alert_type="battery_low")
    down = stamped(
        now + 0.5, customer=waiting, sensor="B:{3}", alert_type="battery_low", status="resolved"
    )
    for doc in (critical, deferred, up):
        service.publish(doc, sensor=str(doc["sensorId"]))
    time.sleep(0.5)
    service.publish(down, sensor=str(down["sensorId"]))

    wait_for(lambda: (service.record(quoted(critical)) or {}).get("result") == "reached", 30)
    wait_for(lambda: service.outcome(quoted(up)) == "suppressed", 30)
    wait_for(lambda: (service.record(quoted(deferred)) or {}).get("taskId"), 30)
    assert (service.record(quoted(up)) or {}).get("reason") == Reason.RESOLVED.value
    twilio_status(status_url, str(critical["idempotencyKey"]), f"tripline-{service.prefix}")
    alive = registry_keys(Keys(prefix))[0]
    wait_for(lambda: redis_client.zscore(alive, GHOST) is None, 30)  # adopted and released

    seen = {name for name, _ in wire.calls}
    assert seen == set(scripts()), f"not called: {set(scripts()) - seen}"
    # The ledger's outbox is KEYS[3] of a record script that appends to it. Off a cluster it
    # is the one stream, of a slot of its own ({ledger}): the one key allowed another slot.
    # On a cluster (tests/integration/test_redis_cluster.py runs this scenario again there)
    # it is the outbox of the record's own slot, and the one stream never appears.
    ledger = Keys(prefix).ledger_entries().encode()
    on_cluster = service.config.redis.topology().kind == Kind.CLUSTER
    appended = 0
    for name, sent in wire.calls:
        assert sent, name
        in_outbox = len(sent) == 3 and (sent[2] == ledger or OUTBOX.search(sent[2]) is not None)
        appended += in_outbox
        own = sent[:2] if in_outbox and sent[2] == ledger else sent
        assert not (on_cluster and own is not sent), (name, sent)
        assert ledger not in own, (name, sent)
        slots = {key_slot(k) for k in own}
        assert len(slots) == 1, (name, sent)
    assert appended  # the ledger is on by default: its outboxes were in play
    ours = [k for _, ks in wire.calls for k in ks if service.prefix.encode() in k]
    assert any(b"%7B" in k and b"%3A" in k for k in ours)  # the hostile ids were in play


def quoted(doc: dict[str, Any]) -> str:
    return quote(str(doc["idempotencyKey"]), safe="")


def twilio_status(status_url: str, key: str, instance: str) -> None:
    """A signed Twilio status callback for the alert's first attempt: PUSH_LUA keeps it."""
    query = urlencode({"key": key, "n": "1", "i": instance})
    form = {"CallSid": "CA0001", "CallStatus": "busy", "SequenceNumber": "3"}
    # Signed as it goes out: aiohttp (yarl) re-encodes some of the query's %-escapes.
    url = str(yarl.URL(f"{status_url}?{query}"))
    signature = twilio_signature.expected(url, form, TOKEN)
    status, _ = http(
        "POST",
        url,
        urlencode(form).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )
    assert status == 204
