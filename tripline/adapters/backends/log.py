"""The log backend: a dry run that writes what it would have done and succeeds."""

from __future__ import annotations

import logging
import uuid

from tripline.adapters.backends import Result
from tripline.messages import DialIntent, TaskIntent
from tripline.pipeline.dial import Answer

log = logging.getLogger("tripline.backend.log")


class LogBackend:
    """Places no call: logs the intent and answers with a made-up id."""

    async def dial(self, intent: DialIntent, routing_priority: int) -> Result:
        """Log the call that would be placed."""
        ref = f"log-{uuid.uuid4()}"
        log.info(
            "dry-run call %s sensor=%s priority=%s routing=%d",
            ref,
            intent.alert.sensor_id,
            intent.priority.label,
            routing_priority,
        )
        return Result(Answer.DONE, ref=ref)

    async def create_task(self, task: TaskIntent) -> Result:
        """Log the task that would be raised."""
        ref = f"log-task-{uuid.uuid4()}"
        log.info(
            "dry-run task %s sensor=%s reason=%s",
            ref,
            task.alert.sensor_id,
            "not_reached" if task.outcome == "called" else task.reason.value,
        )
        return Result(Answer.DONE, ref=ref)

    async def close(self) -> None:
        """Nothing to release."""
