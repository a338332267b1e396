"""Raising tasks: at most one per alert, however often its deferral is replayed."""

from __future__ import annotations

import logging
from collections.abc import Callable

from tripline.actors._loop import ride_out
from tripline.actors.dialing.place import finished_with, send
from tripline.actors.dialing.records import Records
from tripline.adapters.backends import Backends
from tripline.adapters.store import iso, text
from tripline.conf.schema import DialerConfig
from tripline.messages import DialFinished, TaskIntent
from tripline.pipeline.dial import Answer
from tripline.pipeline.dial_queue import StoredTask

log = logging.getLogger("tripline.dialer")


class Tasks:
    """Raises the task of a deferred (or flapping, uncertain...) alert at the task backend."""

    def __init__(
        self,
        *,
        conf: DialerConfig,
        backends: Backends,
        records: Records,
        clock: Callable[[], float],
        tell: Callable[[object], None],
    ) -> None:
        """Keep collaborators."""
        self._conf, self._backends, self._records = conf, backends, records
        self._clock, self._tell = clock, tell

    async def raise_task(self, queued: TaskIntent | StoredTask, *, slot: bool) -> None:
        """Raise one task and tell the dialer how it went."""
        key = queued.key if isinstance(queued, StoredTask) else queued.alert.idempotency_key
        finished = DialFinished(intent_id=key, priority=queued.priority, slot=slot)
        await self._records.after_marks([key])
        if isinstance(queued, StoredTask):
            work = await self._records.stored_task(key)
            if work is None:  # done already (replayed, or by a previous life)
                self._tell(finished)
                return
        else:
            work = queued
        try:
            finished = await self._raise(work, finished)
        except Exception:
            log.exception("dialer: %s failed", key)
        finally:
            if finished.requeue is None:
                await self._records.forget(work)
            self._tell(finished)

    async def _raise(self, task: TaskIntent, done: DialFinished) -> DialFinished:
        key = task.alert.idempotency_key
        records = self._records
        record = records.keys.record(key)
        outcome = await ride_out(lambda: records.auto.execute("HGET", record, "outcome"))
        if text(outcome) != task.outcome:  # e.g. a late uncertainty after a call
            return done
        # At most one task per alert, even if the same deferral is replayed.
        claim = iso(self._clock())
        if not await ride_out(lambda: records.auto.execute("HSETNX", record, "taskClaimed", claim)):
            return done
        result = await send(lambda: self._backends.tasks.create_task(task), self._conf)
        if result.answer in (Answer.RATE_LIMITED, Answer.UNSENT):
            await records.redis.hdel(record, "taskClaimed")
            wait = result.pause()
            return finished_with(
                done,
                requeue=task,
                retry_after=wait,
                backend_ok=result.answer == Answer.RATE_LIMITED,
            )
        if result.answer == Answer.DONE:
            await records.note(key, "task_raised", taskId=result.ref)
        else:
            log.error("task for %s not raised (%s): %s", key, result.answer, result.detail)
            await records.note(key, "task_failed", taskError=f"{result.answer}: {result.detail}")
        return finished_with(done, backend_ok=True)
