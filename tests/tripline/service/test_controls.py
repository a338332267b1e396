"""Maintenance windows in Redis, and an instance's copy of them."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from tests.pipeline.test_maintenance import NOW, an_alert
from tripline.adapters.store import Keys
from tripline.pipeline.maintenance import RETENTION_SECONDS, Window, WindowState
from tripline.service import controls as maintenance
from tripline.service.controls import OperatorControls, Pause

pytestmark = pytest.mark.integration


def request(**fields: Any) -> dict[str, Any]:
    return {
        "sensorId": "S1",
        "durationSeconds": 3600,
        "comment": "pump",
        "createdBy": "ana",
    } | fields


def added(client: redis.Redis, keys: Keys, now: float = NOW, **fields: Any) -> Window:
    window = maintenance.add(client, keys, request(**fields), now=now)
    assert isinstance(window, Window), window
    return window


class CountingRedis:
    """The real client, counting the full reads."""

    def __init__(self, client: redis.Redis) -> None:
        self.client, self.full_reads = client, 0

    def hgetall(self, key: str) -> Any:
        self.full_reads += 1
        return self.client.hgetall(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_a_window_is_stored_listed_and_kept_past_its_end_for_the_retention(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    window = added(redis_client, keys)
    assert maintenance.read_all(redis_client, keys) == [window]
    # The key outlives the last window's end by the retention (every key has a TTL).
    assert (
        3600 + RETENTION_SECONDS - 2
        <= redis_client.ttl(keys.maintenance())
        <= 3600 + RETENTION_SECONDS
    )


def test_a_bad_request_stores_nothing(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    problems = maintenance.add(redis_client, keys, request(comment=None), now=NOW)
    assert isinstance(problems, list)
    assert not redis_client.exists(keys.maintenance())


def test_an_instance_reloads_only_when_the_windows_changed(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    counting = CountingRedis(redis_client)
    held = OperatorControls()
    held.refresh(counting, keys)  # type: ignore[arg-type]
    assert not held.windows
    held.refresh(counting, keys)  # type: ignore[arg-type]
    assert counting.full_reads == 1  # one HGET of the version, no second full read
    window = added(redis_client, keys)  # as another instance or the CLI would
    held.refresh(counting, keys)  # type: ignore[arg-type]
    assert held.windows == (window,)
    assert counting.full_reads == 2
    assert held.covering(an_alert(sensor="S1"), NOW + 1) == window
    assert held.covering(an_alert(sensor="S2"), NOW + 1) is None
    assert held.open_at(NOW + 1) == [window]
    assert held.open_at(NOW + 3600) == []


def test_ending_a_window_ends_it_now_and_keeps_it_listed(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    window = added(redis_client, keys)
    ended = maintenance.end(redis_client, keys, window.window_id, now=NOW + 60)
    assert ended is not None
    assert (ended.starts_at, ended.ends_at) == (NOW, NOW + 60)
    assert maintenance.read_all(redis_client, keys) == [ended]
    assert ended.state(NOW + 60) == WindowState.ENDED
    assert maintenance.end(redis_client, keys, "nope", now=NOW) is None


def test_a_pending_window_that_is_ended_never_opens(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    later = added(redis_client, keys, startsAt="2026-05-29T08:00:00Z")
    ended = maintenance.end(redis_client, keys, later.window_id, now=NOW)
    assert ended is not None
    assert ended.starts_at == ended.ends_at == NOW
    assert not ended.covers(an_alert(sensor="S1"), NOW)
    assert not ended.is_open(later.starts_at)


def test_windows_ended_longer_than_the_retention_are_forgotten_at_the_next_change(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    old = added(redis_client, keys)
    recent = added(redis_client, keys, now=NOW + RETENTION_SECONDS, sensorId="S2")
    assert {w.window_id for w in maintenance.read_all(redis_client, keys)} == {
        old.window_id,
        recent.window_id,
    }  # the old one ended only 23 hours ago
    newest = added(redis_client, keys, now=NOW + RETENTION_SECONDS + 3601, sensorId="S3")
    assert {w.window_id for w in maintenance.read_all(redis_client, keys)} == {
        recent.window_id,
        newest.window_id,
    }


def test_an_unreadable_entry_is_skipped_not_fatal(
    redis_client: redis.Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys = Keys(prefix)
    window = added(redis_client, keys)
    redis_client.hset(keys.maintenance(), "broken", b"{not json")
    redis_client.hset(keys.maintenance(), "odd", b'{"id": "odd"}')
    assert maintenance.read_all(redis_client, keys) == [window]
    assert "maintenance window broken is unreadable" in caplog.text
    assert "maintenance window odd is unreadable" in caplog.text


def test_a_pause_never_expires_and_resuming_gives_the_key_its_lifetime_back(
    redis_client: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    held = OperatorControls()
    maintenance.set_paused(redis_client, keys, by="ana", now=NOW)
    assert held.refresh(redis_client, keys) is True  # the pause changed: the dialer is told
    assert held.dialing_paused == Pause("ana", NOW)
    assert redis_client.ttl(keys.maintenance()) == -1  # as an opt-out, it never ends by itself
    added(redis_client, keys)  # a window written while paused keeps it so
    assert redis_client.ttl(keys.maintenance()) == -1
    assert held.refresh(redis_client, keys) is False  # windows changed, the pause did not
    assert len(held.windows) == 1
    maintenance.set_paused(redis_client, keys, by=None, now=NOW)
    assert held.refresh(redis_client, keys) is True
    assert held.dialing_paused is None
    assert redis_client.ttl(keys.maintenance()) >= 3600 + RETENTION_SECONDS - 2
    assert maintenance.read_all(redis_client, keys) == list(held.windows)


def test_an_unreadable_pause_still_pauses(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    redis_client.hset(keys.maintenance(), mapping={"_paused": b"garbage", "_version": 1})
    held = OperatorControls()
    held.refresh(redis_client, keys)
    assert held.dialing_paused == Pause("unknown", 0.0)
