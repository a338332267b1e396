"""Takeover: a survivor adopts the work of an instance whose lease lapsed (see lease.py).

The dead instance's work is in four places, adopted in this order:

1. Its broker sessions (its client id, and `<id>-critical`): connected to as that client id,
   unsubscribed at once (the broker stops routing the group's new alerts to it), drained of
   what the broker had queued and in flight for it (recorded and routed here, acknowledged
   after the record, as any alert), then ended with a session expiry of 0.
2. Its dial queue: moved into this instance's dialer.
3. Its follow index (calls awaiting their result): moved into ours.
4. Its pending index: swept at once with no grace (the dead process holds nothing in flight):
   'accepted' alerts are routed here, 'dialing' ones of unknown fate follow the uncertain rule
   (never dialled again: a task), then what is left moves into our index.

Each step is safe to repeat, so an adopter that dies half-way leaves the rest to the next one
(its claim lapses with its lease): the records' state machine lets no alert be called twice or
end twice, whoever routes it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence

from tripline.adapters.attempts import follow_key
from tripline.adapters.redis_clients import SyncRedis
from tripline.adapters.store import Keys

log = logging.getLogger("tripline.takeover")

_PAGE = 500


def adopt(
    dead: str,
    *,
    client: SyncRedis,
    keys: Keys,
    me: str,
    sessions: Sequence[tuple[str, str]],
    drain_session: Callable[[str, str], bool],
    adopt_queue: Callable[[str], int],
    sweep_dead: Callable[[str], Counter[str]],
) -> Counter[str] | None:
    """Adopt `dead`'s work into instance `me`; None when a broker session could not be drained.

    Args:
        dead: the lapsed instance's id (its client id).
        client: Redis.
        keys: the key layout.
        me: this instance's id.
        sessions: (client id, topic) of each broker session `dead` held.
        drain_session: connects as a session, drains and ends it; False if it could not (the
            broker away, say): the adoption stops there, to be tried again.
        adopt_queue: moves a dial queue (by key) into this instance's dialer; how many.
        sweep_dead: sweeps `dead`'s pending index with no grace (see resume.sweep).

    Returns:
        What was adopted: 'sessions', 'queued', 'followed', and the sweep's counts, with the
        entries moved into our pending index as 'pending'.
    """
    counts: Counter[str] = Counter()
    for client_id, topic in sessions:
        if not drain_session(client_id, topic):
            log.warning("takeover of %s: broker session %s not drained; later", dead, client_id)
            return None
        counts["sessions"] += 1
    counts["queued"] = adopt_queue(keys.dial_queue(dead))
    counts["followed"] = move_index(client, follow_key(keys, dead), follow_key(keys, me), "LT")
    counts.update(sweep_dead(dead))
    counts["pending"] = move_index(client, keys.pending(dead), keys.pending(me), "NX")
    return counts


def move_index(client: SyncRedis, source: str, target: str, keep: str) -> int:
    """Move a sorted set's members into another, a page at a time; how many moved.

    `keep`: ZADD's flag for a member both hold (NX: the target's score, LT: the lower). Added
    before removed, so a crash between leaves a member in both, never in neither.
    """
    moved = 0
    while True:
        page = client.zrange(source, 0, _PAGE - 1, withscores=True)
        if not page:
            return moved
        scored = {member: float(score) for member, score in (tuple(entry) for entry in page)}
        pipe = client.pipeline(transaction=False)
        pipe.zadd(target, scored, nx=keep == "NX", lt=keep == "LT")
        pipe.zrem(source, *scored)
        pipe.execute()
        moved += len(scored)
