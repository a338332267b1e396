"""The supervisor's sweep: what it takes for in flight, and what it routes again."""

from __future__ import annotations

import orjson
import pytest
import redis

from tests.conftest import REDIS_URL, alert
from tests.tripline.service.test_accept import ReplyLost
from tripline.conf import schema
from tripline.messages import Alert
from tripline.service.resume import SweepRules
from tripline.supervisor import Service

pytestmark = pytest.mark.integration


def test_the_sweep_routes_what_a_failed_accept_recorded_and_leaves_what_is_in_flight(
    redis_client: redis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch whose replies were lost was recorded and routed by no one.

    If its retry goes to another instance (a webhook sender retrying elsewhere, the broker
    redelivering to another member of the shared subscription), only this instance's sweep
    can route it: the sweep must not take it for in flight, as it does an alert routed in
    this life.
    """
    config = schema.load(
        env={"TRIPLINE__REDIS__URL": REDIS_URL, "TRIPLINE__REDIS__KEY_PREFIX": prefix}
    )
    service = Service(config)
    routed: list[Alert] = []
    monkeypatch.setattr(service, "route", lambda alerts, *_: routed.extend(alerts))
    doubtful, moving = alert(sensor="S-LOST"), alert(sensor="S-MOVING")
    with monkeypatch.context() as patch:
        patch.setattr("tripline.service.accept.execute", ReplyLost())
        with pytest.raises(redis.ConnectionError):
            service.acceptor.accept([(orjson.dumps(doubtful), False)])
    service.acceptor.accept([(orjson.dumps(moving), False)])  # routed by its caller
    try:
        service.resume(SweepRules(accepted_grace=0.0))
    finally:
        service.redis.close()
    assert [a.idempotency_key for a in routed] == [doubtful["idempotencyKey"]]
