"""The critical lane on the broker side: critical alerts on a topic read through a session of
their own are not held back by a backlog waiting in the main session (real Mosquitto)."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import paho.mqtt.client as mqtt
import pytest
import redis
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import BROKER, EmulatorHandle, ServiceHandle, alert, publish, wait_for
from tripline.adapters.mqtt_io import stop_network
from tripline.adapters.store import Keys

BACKLOG = 900
"""Under the 1,000 messages Mosquitto queues for an offline session by default."""


def _publish_many(topic_of: Callable[[int], str], bodies: list[bytes]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.connect(*BROKER)
    client.loop_start()
    try:
        infos = [client.publish(topic_of(n), body, qos=1) for n, body in enumerate(bodies)]
        for info in infos:
            info.wait_for_publish(timeout=60)
    finally:
        client.disconnect()
        stop_network(client)


def test_a_critical_alert_on_its_own_topic_overtakes_a_backlog_in_the_main_session(
    make_service: Callable[..., ServiceHandle],
    emulator: EmulatorHandle,
    redis_client: redis.Redis,
    prefix: str,
) -> None:
    emulator.add_customer("C-CO")
    root = f"tt/{prefix}"
    service = make_service(
        TRIPLINE__MQTT__CRITICAL_TOPIC=f"{root}/critical/+/alerts",
    ).start()
    assert service.service is not None
    assert "mqtt-critical" in service.service.status()["actors"]
    service.stop()  # both sessions stay at the broker, subscribed, and queue what comes
    # Resolves of sensors that never fired: each one is accepted and decided, and cheap.
    docs = [
        {**alert(sensor=f"S-B{n}", customer="C-B"), "status": "resolved"} for n in range(BACKLOG)
    ]
    _publish_many(lambda n: f"{root}/sensors/S-B{n}/alerts", [orjson.dumps(d) for d in docs])
    # Queued while the service is down too: both sessions deliver from the moment it connects.
    co = alert(sensor="S-CO", customer="C-CO", alert_type="co_alarm")
    publish(f"{root}/critical/S-CO/alerts", co)
    service.start()
    keys = Keys(prefix)
    wait_for(lambda: service.stats.total("accepted") == BACKLOG + 1, timeout=40)

    def accepted_at(key: str) -> str:
        first = redis_client.lindex(keys.history(key), 0)
        assert first is not None, key
        return str(orjson.loads(first)["at"])

    critical_at = accepted_at(co["idempotencyKey"])
    before = sum(accepted_at(d["idempotencyKey"]) < critical_at for d in docs)
    # Behind the backlog in one session it would have been the last of 901 to be accepted.
    assert before < BACKLOG, before
    wait_for(lambda: service.outcome(co["idempotencyKey"]) == "called", timeout=30)


def test_a_critical_topic_that_overlaps_the_main_topic_is_refused(
    make_service: Callable[..., ServiceHandle],
) -> None:
    from tripline.conf import schema  # noqa: PLC0415

    with pytest.raises(schema.ConfigError, match="overlaps topic"):
        make_service(TRIPLINE__MQTT__CRITICAL_TOPIC="tt/#")
