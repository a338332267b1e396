"""Raising tasks: at most one per alert, however often its deferral is replayed."""

from __future__ import annotations

import logging
from collections.abc import Callable

from tripline.actors.dialing.place import finished_with, send
from tripline.actors.dialing.records import Records
from tripline.adapters.backends import Backends
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
        """Raise one task and tell the dialer how it went.

        Three round trips from its record as deferred: the claim with the body's read, the
        request, the task id noted with the queue entry's removal.
        """
        stored = isinstance(queued, StoredTask)
        key = queued.key if isinstance(queued, StoredTask) else queued.alert.idempotency_key
        finished = DialFinished(intent_id=key, priority=queued.priority, slot=slot)
        await self._records.after_marks([key])
        # At most one task per alert, even if the same deferral is replayed; and none for a
        # record decided otherwise (e.g. a late uncertainty after a call).
        body, claimed = await self._records.claim_task(key, queued.outcome, stored=stored)
        work = body if isinstance(queued, StoredTask) else queued
        if work is None or work.outcome != queued.outcome:
            # Done already (replayed, or by a previous life), or its body is another's now.
            if claimed == 1:
                await self._records.release_task(key)
            if work is not None:
                await self._records.forget(work)
            self._tell(finished)
            return
        forgotten = False  # its queue entry went with the task's id
        try:
            if claimed == 1:
                finished, forgotten = await self._raise(work, finished)
        except Exception:
            log.exception("dialer: %s failed", key)
        finally:
            if finished.requeue is None and not forgotten:
                await self._records.forget(work)
            self._tell(finished)

    async def _raise(self, task: TaskIntent, done: DialFinished) -> tuple[DialFinished, bool]:
        """Send the claimed task; whether its queue entry went with the record of it."""
        key = task.alert.idempotency_key
        records = self._records
        result = await send(lambda: self._backends.tasks.create_task(task), self._conf)
        if result.answer in (Answer.RATE_LIMITED, Answer.UNSENT):
            await records.release_task(key)
            wait = result.pause()
            requeued = finished_with(
                done,
                requeue=task,
                retry_after=wait,
                backend_ok=result.answer == Answer.RATE_LIMITED,
            )
            return requeued, False
        if result.answer == Answer.DONE:
            await records.note(key, "task_raised", forget=task, taskId=result.ref)
        else:
            log.error("task for %s not raised (%s): %s", key, result.answer, result.detail)
            error = f"{result.answer}: {result.detail}"
            await records.note(key, "task_failed", forget=task, taskError=error)
        return finished_with(done, backend_ok=True), True
