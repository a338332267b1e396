"""Leases: each instance proves it is alive; a survivor adopts the work of one that is not.

An instance's work waits in Redis under its client id (its pending index, dial queue and follow
index) and at the broker in its persistent sessions. Without leases, that work waits until an
instance with the same client id starts again, which after an autoscaler's scale-in or a dead
gateway may be never. So each instance holds a lease: renewed every third of
`[status] takeover_after_seconds`, lapsed after it. When one lapses, exactly one live instance
claims it (CLAIM_LUA, atomic), adopts its work (tripline/service/takeover.py) and releases the
claim, which removes the dead instance from the registry.

Fencing: a claim takes the dead instance's token away. An instance whose renewal finds its token
gone was presumed dead and its work adopted: it must stop (the supervisor stops the process,
which its service manager starts again as a new holder). An instance that starts while a live
survivor is adopting its work waits until the survivor is done (ACQUIRE_LUA answers with the
claimer), so the two never drain the same broker session or index at once.

A Redis outage lapses everyone's lease at once. So that the first instance back does not adopt
the others before they could renew, a claimer must itself have held its lease without a gap for
a whole lease period (`since`) before it may claim anyone (claimable()).

Every key of the registry shares the `{lease}` hash tag: each script touches one slot.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from tripline.adapters.redis_clients import SyncRedis
from tripline.adapters.store import Keys, iso, text

# Every script reads the time from the Redis server (ARGV[1] empty): the instances' own clocks
# may disagree by more than a lease, the server's is one. Tests pass a time of their own.
_CLOCK = """
local function now_of(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end
"""

# Taken (and renewed) by an instance: its expiry, token, `since` and description. Answers ''
# when taken; the claimer's id while a live survivor is adopting this instance's work.
ACQUIRE_LUA = (
    _CLOCK
    + """
local now, ttl, me = now_of(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local claimer = redis.call('HGET', KEYS[3], me)
if claimer and claimer ~= me then
  local until_ = tonumber(redis.call('ZSCORE', KEYS[1], claimer) or '0')
  if until_ > now then return claimer end
end
redis.call('HDEL', KEYS[3], me)
redis.call('ZADD', KEYS[1], now + ttl, me)
redis.call('HSET', KEYS[2], me, ARGV[4])
redis.call('HSET', KEYS[4], me, ARGV[5])
redis.call('HSET', KEYS[5], me, now)
for i = 1, 5 do redis.call('EXPIRE', KEYS[i], ARGV[6]) end
return ''
"""
)

# Renews the lease if the token is still ours (1), else 0: fenced. A lease renewed after it had
# lapsed starts a new `since`: its holder must hold it a whole period before it may claim.
RENEW_LUA = (
    _CLOCK
    + """
local now, ttl, me = now_of(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
if redis.call('HGET', KEYS[2], me) ~= ARGV[4] then return 0 end
local until_ = tonumber(redis.call('ZSCORE', KEYS[1], me) or '0')
if until_ <= now then redis.call('HSET', KEYS[5], me, now) end
redis.call('ZADD', KEYS[1], now + ttl, me)
for i = 1, 5 do redis.call('EXPIRE', KEYS[i], ARGV[5]) end
return 1
"""
)

# Claims one lapsed lease for ARGV[2] (holding token ARGV[3]): its id, or false. Only a live
# holder that has held its lease a whole period (ARGV[4] seconds) may claim; a lease claimed by
# a live other is left to it, one claimed by a claimer that died is claimed again.
CLAIM_LUA = (
    _CLOCK
    + """
local now, me, period = now_of(ARGV[1]), ARGV[2], tonumber(ARGV[4])
if redis.call('HGET', KEYS[2], me) ~= ARGV[3] then return false end
local mine = tonumber(redis.call('ZSCORE', KEYS[1], me) or '0')
local since = tonumber(redis.call('HGET', KEYS[5], me) or now)
if mine <= now or now - since < period then return false end
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now, 'LIMIT', 0, 50)
for _, dead in ipairs(lapsed) do
  if dead ~= me then
    local claimer = redis.call('HGET', KEYS[3], dead)
    local free = not claimer or claimer == me
    if not free then
      free = tonumber(redis.call('ZSCORE', KEYS[1], claimer) or '0') <= now
    end
    if free then
      redis.call('HSET', KEYS[3], dead, me)
      redis.call('HDEL', KEYS[2], dead)
      return dead
    end
  end
end
return false
"""
)

# The adoption is over: the dead instance leaves the registry (1), if ARGV[2] still holds it.
RELEASE_LUA = """
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
return 1
"""

_KEEP = 7 * 86400  # the registry's keys outlive any one instance; renewals extend them


def registry_keys(keys: Keys) -> list[str]:
    """The registry, in the scripts' KEYS order: expiries, tokens, claims, descriptions, since."""
    base = f"{keys.prefix}:{{lease}}"
    return [f"{base}:alive", f"{base}:token", f"{base}:claim", f"{base}:info", f"{base}:since"]


@dataclass(frozen=True, slots=True)
class LeaseView:
    """One instance as /status shows it."""

    instance: str
    expires_at: float
    live: bool
    claimed_by: str | None
    info: dict[str, Any]

    def to_doc(self, now: float) -> dict[str, Any]:
        """The /status entry."""
        return {
            "instance": self.instance,
            "state": "live" if self.live else ("adopting" if self.claimed_by else "lapsed"),
            "expiresAt": iso(self.expires_at),
            "expiresInSeconds": round(self.expires_at - now, 1),
            "claimedBy": self.claimed_by,
            "host": self.info.get("host"),
            "pid": self.info.get("pid"),
            "startedAt": self.info.get("startedAt"),
        }


def describe(sessions: Sequence[tuple[str, str]], now: float) -> dict[str, Any]:
    """What an instance tells of itself: where it runs and its broker sessions (id, topic)."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "startedAt": iso(now),
        "sessions": [{"clientId": cid, "topic": topic} for cid, topic in sessions],
    }


def sessions_from(blob: bytes | str | None, dead: str, default_topic: str) -> list[tuple[str, str]]:
    """The sessions a description lists; (dead, default_topic) when it lists none readably."""
    try:
        listed = orjson.loads(blob)["sessions"] if blob else None
    except (orjson.JSONDecodeError, KeyError, TypeError):
        listed = None
    sessions = (
        [
            (s["clientId"], s["topic"])
            for s in listed or ()
            if isinstance(s, dict)
            and isinstance(s.get("clientId"), str)
            and isinstance(s.get("topic"), str)
            and s["clientId"]
            and s["topic"]
        ]
        if isinstance(listed, list)
        else []
    )
    return sessions or [(dead, default_topic)]


class Lease:
    """This instance's lease, and the claims it makes on lapsed ones (sync Redis)."""

    def __init__(
        self,
        client: SyncRedis,
        keys: Keys,
        *,
        instance: str,
        ttl: float,
        sessions: Sequence[tuple[str, str]],
    ) -> None:
        """`ttl`: `[status] takeover_after_seconds`; `sessions`: this instance's client ids."""
        self._client, self._keys = client, registry_keys(keys)
        self.instance, self.ttl, self._sessions = instance, ttl, list(sessions)
        self.token = uuid.uuid4().hex
        self._scripts = {
            name: client.register_script(source)
            for name, source in (
                ("acquire", ACQUIRE_LUA),
                ("renew", RENEW_LUA),
                ("claim", CLAIM_LUA),
                ("release", RELEASE_LUA),
            )
        }

    def acquire(self, now: float | None = None) -> str:
        """Take the lease: '' when taken, else the live survivor adopting our work (wait)."""
        info = orjson.dumps(describe(self._sessions, time.time() if now is None else now)).decode()
        args: list[str | float] = [
            _at(now),
            repr(self.ttl),
            self.instance,
            self.token,
            info,
            _KEEP,
        ]
        return text(self._scripts["acquire"](keys=self._keys, args=args))

    def renew(self, now: float | None = None) -> bool:
        """Renew; False once another instance has claimed us (fenced: stop)."""
        args: list[str | float] = [_at(now), repr(self.ttl), self.instance, self.token, _KEEP]
        return bool(self._scripts["renew"](keys=self._keys, args=args))

    def claim(self, now: float | None = None) -> str | None:
        """Claim one lapsed lease (see CLAIM_LUA): the dead instance's id, or None."""
        args = [_at(now), self.instance, self.token, repr(self.ttl)]
        dead = self._scripts["claim"](keys=self._keys, args=args)
        return text(dead) or None

    def release(self, dead: str) -> bool:
        """The adoption of `dead` is over: it leaves the registry."""
        return bool(self._scripts["release"](keys=self._keys, args=[dead, self.instance]))

    def sessions_of(self, dead: str, default_topic: str) -> list[tuple[str, str]]:
        """The broker sessions `dead` held, (client id, topic) each.

        Its client id on `default_topic` alone if it did not say (or said it unreadably).
        """
        blob = self._client.hget(self._keys[3], dead)
        return sessions_from(blob, dead, default_topic)

    def view(self, now: float | None = None) -> list[LeaseView]:
        """Every registered instance (for /status), at `now` (the Redis server's clock)."""
        return read_registry(self._client, self._keys, now)


def _at(now: float | None) -> str:
    """A script's time argument: empty for the Redis server's clock."""
    return "" if now is None else repr(now)


def read_registry(client: SyncRedis, keys: list[str], now: float | None = None) -> list[LeaseView]:
    """The registry as /status shows it, at `now` (the Redis server's clock by default)."""
    pipe = client.pipeline(transaction=False)
    pipe.zrange(keys[0], 0, -1, withscores=True)
    pipe.hgetall(keys[2])
    pipe.hgetall(keys[3])
    expiries, claims, infos = pipe.execute()
    if now is None:  # on its own: a cluster's pipeline refuses TIME (no key to route it by)
        seconds, micros = client.time()
        now = seconds + micros / 1e6
    return registry_view(expiries, claims, infos, now)


def registry_view(
    expiries: list[Any], claims: dict[Any, Any], infos: dict[Any, Any], now: float
) -> list[LeaseView]:
    """Redis' replies (RESP2 or RESP3 shapes) as lease views, oldest expiry first."""
    claimed = {text(k): text(v) for k, v in claims.items()}
    views = []
    for member, score in (tuple(entry) for entry in expiries):
        instance = text(member)
        try:
            info = orjson.loads(infos.get(member) or infos.get(instance) or b"{}")
        except orjson.JSONDecodeError:
            info = {}
        views.append(
            LeaseView(
                instance=instance,
                expires_at=float(score),
                live=float(score) > now,
                claimed_by=claimed.get(instance),
                info=info if isinstance(info, dict) else {},
            )
        )
    return views
