"""The internal do-not-call list in Redis: add, remove, list (numbers kept in E.164)."""

from __future__ import annotations

from tripline.adapters.redis_clients import SyncRedis
from tripline.adapters.redis_io import batch, execute
from tripline.adapters.store import Keys
from tripline.pipeline.comply import normalise_phone


class InvalidNumberError(ValueError):
    """The text is not a valid phone number."""


def _e164(raw: str) -> str:
    number = normalise_phone(raw)
    if number is None:
        raise InvalidNumberError(f"{raw!r} is not a valid phone number (use +<country><number>)")
    return number


def add(client: SyncRedis, keys: Keys, raw: str) -> str:
    """Put a number on the list; returns it in E.164."""
    number = _e164(raw)
    opt_out = batch(client)  # through redis_io: it waits for [redis] wait_replicas
    opt_out.sadd(keys.dnc(), number)
    execute(opt_out)
    return number


def remove(client: SyncRedis, keys: Keys, raw: str) -> bool:
    """Take a number off the list; False when it was not on it."""
    number = _e164(raw)
    taken = batch(client)
    taken.hdel(f"{keys.dnc()}:meta", number)  # its source goes with it (adapters/attempts.py)
    taken.srem(keys.dnc(), number)
    return bool(execute(taken)[1])


def numbers(client: SyncRedis, keys: Keys) -> list[str]:
    """Every number on the list, sorted."""
    return sorted(
        n.decode() if isinstance(n, bytes) else str(n) for n in client.smembers(keys.dnc())
    )
