"""The last checks before a call leaves: age, calling window, maintenance, flags, caps.

Compliance is checked again at the moment of dialing (work can wait in the queue past a
window); an alert too old by its sensor's clock rings nobody (pipeline/freshness.py); the
do-not-call re-check and the caps are one Lua call each, sent together with the cached profile;
the customer's flags are judged on a profile no older than [crm] max_profile_age_seconds (read
from the CRM again when older, actors/dialing/profiles.py); then the record moves to
'dialing', which only one path can ever do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis

from tripline.actors._loop import ride_out
from tripline.actors.dialing.profiles import Profiles
from tripline.actors.dialing.records import Records, group_keys
from tripline.adapters.redis_io import replies
from tripline.adapters.store import FROM_PENDING, transition_args
from tripline.messages import DialFinished, DialIntent, Outcome, Priority, Reason, State
from tripline.pipeline.caps import CapRules, cap_args
from tripline.pipeline.comply import Blocked, ComplyRules, check_window
from tripline.pipeline.dial import Gate, gate
from tripline.pipeline.freshness import stale_alert
from tripline.pipeline.maintenance import Window
from tripline.service.controls import OperatorControls
from tripline.service.stats import Stats


def call_member(intent: DialIntent) -> str:
    """The call's member in the caps' sorted sets: every attempt counts as a call of its own."""
    return intent.intent_id if intent.attempt <= 1 else f"{intent.intent_id}#{intent.attempt}"


if TYPE_CHECKING:
    from tripline.actors.dialing.follow import Follower

log = logging.getLogger("tripline.dialer")

Call = tuple[DialIntent, bool]
"""A call and whether it holds a concurrency slot."""


@dataclass
class Checks:
    """A dial round's last checks, sent before its records were confirmed 'queued'."""

    now: float
    blocked: list[tuple[Call, Blocked]] = field(default_factory=list)
    """Outside the calling window by now: they become tasks."""
    withdrawals: dict[int, tuple[Window, asyncio.Future[Any]]] = field(default_factory=dict)
    """By call (its id()): the maintenance window covering it, and its withdrawal in flight."""
    sent: list[tuple[Call, list[asyncio.Future[Any]]]] = field(default_factory=list)
    """The do-not-call re-check and the caps of each other call, in flight."""
    failed: Exception | None = None
    """Sending failed: the calls after `sent` were not checked."""
    ended: list[tuple[Call, str, bool]] = field(default_factory=list)
    """Re-attempts that end here (why, and whether a person gets a task)."""
    cached: dict[str, asyncio.Future[Any]] = field(default_factory=dict)
    """By customer: the cached profile, in flight with the checks (when profiles are read)."""


class LastChecks:
    """Decides, at the moment of dialing, which of a round's calls may be placed."""

    def __init__(
        self,
        *,
        records: Records,
        rules: ComplyRules,
        caps: CapRules,
        controls: OperatorControls,
        stats: Stats,
        clock: Callable[[], float],
        tell: Callable[[object], None],
        max_alert_age: Mapping[Priority, float] | None = None,
        profiles: Profiles | None = None,
    ) -> None:
        """Keep collaborators.

        `max_alert_age`: per priority, the oldest alert (by its sensor's clock) still called
        about. `profiles`: where the flags are read at the moment of dialing (None: the
        decision's flags stand — a dialer built without a CRM).
        """
        self._records, self._rules, self._caps, self._controls = records, rules, caps, controls
        self._stats, self._clock, self._tell = stats, clock, tell
        self._max_alert_age = max_alert_age or {}
        self._profiles = profiles
        self.follower: Follower | None = None
        """Re-attempts (of called alerts) are moved by their ladder, not their record's outcome."""

    def send(self, calls: list[Call]) -> Checks:
        """Compliance at the moment of dialing, and the caps' and do-not-call requests sent.

        Not a coroutine: the requests are queued before the loop runs anything else, so they
        join the batch that records the round's calls as queued.
        """
        checks = Checks(now=self._clock())
        for call in calls:
            intent, _ = call
            stale = stale_alert(
                intent.alert.timestamp, intent.priority, now=checks.now, limits=self._max_alert_age
            )
            if stale is not None:  # news about the past: a person looks at it, nobody rings
                if intent.attempt > 1:
                    checks.ended.append((call, f"stale: {stale.detail}", True))
                else:
                    checks.blocked.append((call, stale))
                continue
            blocked = (
                None
                if intent.scheduled_for
                else check_window(
                    intent.customer,
                    now=checks.now,
                    rules=self._rules,
                    alert_type=intent.alert.alert_type,
                )
            )
            if blocked is not None:  # work may have waited in the queue past the window
                if intent.attempt > 1:
                    checks.ended.append((call, f"{blocked.reason.value}: {blocked.detail}", True))
                else:
                    checks.blocked.append((call, blocked))
                continue
            if (
                intent.attempt > 1
                and (window := self._controls.covering(intent.alert, checks.now)) is not None
            ):  # a called alert keeps its cooldown: nothing to withdraw
                checks.ended.append((call, f"maintenance: {window.detail()}", False))
                continue
            try:
                checks.sent.append((call, self._commands(intent, checks.now)))
                customer_id = intent.customer.customer_id
                if self._profiles is not None and customer_id not in checks.cached:
                    checks.cached[customer_id] = self._profiles.send(customer_id)
                # A maintenance window opened while the call waited (its pending delay, a
                # backlog): withdraw it, unless other alerts were grouped into it.
                if (window := self._controls.covering(intent.alert, checks.now)) is not None:
                    checks.withdrawals[id(call)] = (window, self.withdraw(intent))
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                checks.failed = exc  # the calls not checked yet go back to the queue
                break
        return checks

    async def decide(self, checks: Checks, unsettled: dict[int, Call]) -> list[Call]:
        """Decide on the last checks' answers, then move the calls that pass to 'dialing'.

        Returns the calls that may be placed now; every other one is finished here (a task,
        a suppression, or skipped because its record moved on). Each call leaves `unsettled`
        once finished or ready: if Redis fails midway, only the rest go back to the queue.
        """
        for call, blocked in checks.blocked:
            intent, slot = call
            del unsettled[id(call)]
            self._tell(blocked.task(intent.alert))
            await self.finish(intent, slot)
        for call, why, task in checks.ended:
            intent, slot = call
            del unsettled[id(call)]
            await self._end_reattempt(intent, why, task=task)
            await self.finish(intent, slot)
        if checks.failed is not None:
            raise checks.failed
        got = await replies([f for _, futures in checks.sent for f in futures])
        withdrawn = {
            call: window
            for (call, (window, future)) in checks.withdrawals.items()
            if await future == 1
        }
        profiles = await self._profiles.resolve(checks.cached) if self._profiles else {}
        passed: list[Call] = []
        at = 0
        for call, futures in checks.sent:
            answers, at = got[at : at + len(futures)], at + len(futures)
            flags = (
                await self._profiles.flags(call[0], profiles, now=checks.now, rules=self._rules)
                if self._profiles
                else None
            )
            if await self._settled(call, answers, withdrawn.get(id(call)), checks.now, flags):
                del unsettled[id(call)]  # recorded (a Redis failure above requeues it)
                await self.finish(*call)
            else:
                passed.append(call)
        ready = await self._to_dialing(passed)
        for call in passed:  # moved to dialing, or finished as skipped
            del unsettled[id(call)]
        return ready

    async def _settled(
        self,
        call: Call,
        answers: list[Any],
        window: Window | None,
        now: float,
        flags: Blocked | None = None,
    ) -> bool:
        """Whether the checks' answers end this call here (recorded); False: it may dial."""
        intent, _ = call
        if intent.attempt > 1:
            return await self._settled_reattempt(intent, answers, flags)
        if window is not None:
            await self.release_caps(intent)  # whichever counted it
            if await self._records.record(
                intent.intent_id,
                state=Outcome.SUPPRESSED,
                reason=Reason.MAINTENANCE,
                allowed_from=FROM_PENDING,
                detail=window.detail(),
            ):
                self._stats.decided(intent.alert, Outcome.SUPPRESSED, Reason.MAINTENANCE)
            return True
        if flags is not None:  # the CRM changed since the decision: honoured
            await self.release_caps(intent)
            self._tell(flags.task(intent.alert))
            return True
        verdict = await self._verdict(intent, answers)
        if verdict == Gate.DIAL:
            return False
        if verdict == Gate.DO_NOT_CALL:
            listed = Blocked(
                Reason.DO_NOT_CALL,
                now,
                "the number joined the internal do-not-call list while queued",
                {"rule": "internal_dnc_list"},
            )
            self._tell(listed.task(intent.alert))
        else:
            reason = Reason(verdict.value)
            if await self._records.record(
                intent.intent_id,
                state=Outcome.SUPPRESSED,
                reason=reason,
                allowed_from=FROM_PENDING,
            ):
                self._stats.decided(intent.alert, Outcome.SUPPRESSED, reason)
        return True

    async def _settled_reattempt(
        self, intent: DialIntent, answers: list[Any], flags: Blocked | None
    ) -> bool:
        """A re-attempt's flags, do-not-call re-check and caps: any refusal ends its ladder."""
        if flags is not None:
            await self.release_caps(intent)
            why = f"{flags.reason.value} at the moment of dialing: {flags.detail}"
            await self._end_reattempt(intent, why, task=True)
            return True
        verdict = await self._verdict(intent, answers)
        if verdict == Gate.DIAL:
            return False
        await self._end_reattempt(intent, f"{verdict.value} at the moment of dialing", task=True)
        return True

    async def _verdict(self, intent: DialIntent, answers: list[Any]) -> Gate:
        """The do-not-call re-check's and the caps' answers; a refused call's counts released."""
        verdict, release = gate(
            on_dnc_list=bool(answers[0]),
            number_ok=bool(answers[1][0]) if self._caps.number else None,
            customer_ok=bool(answers[-1][0]) if self._caps.customer else None,
        )
        if verdict != Gate.DIAL:
            await self.release_caps(
                intent, number="number" in release, customer="customer" in release
            )
        return verdict

    async def _end_reattempt(self, intent: DialIntent, why: str, *, task: bool) -> None:
        if self.follower is not None:
            await self.follower.ended_before_dialing(intent, why, task=task)

    def withdraw(self, intent: DialIntent) -> asyncio.Future[Any]:
        """Withdraw a waiting call (1), or 0 when other alerts were grouped into it.

        Withdrawn, it gives back its group and the sensor's cooldown window, so the sensor's
        next real episode may call; grouped into, it stays for the alerts that joined it.
        """
        keys = self._records.keys
        customer = intent.alert.customer_id
        script_keys = [
            keys.group_counts(customer),
            group_keys(keys, intent)[0],
            keys.cooldown(customer, intent.alert.sensor_id),
        ]
        auto = self._records.auto
        return auto.send_script(self._records.sha["cancel"], script_keys, [intent.intent_id])

    def _commands(self, intent: DialIntent, now: float) -> list[asyncio.Future[Any]]:
        """The do-not-call re-check, then the number's and the customer's caps (if any)."""
        keys, auto = self._records.keys, self._records.auto
        member = call_member(intent)
        futures = [auto.send("SISMEMBER", keys.dnc(), intent.customer.phone)]
        for caps, key in (
            (self._caps.number, keys.number_calls(intent.customer.phone)),
            (self._caps.customer, keys.customer_calls(intent.customer.customer_id)),
        ):
            if caps:
                args = cap_args(caps, now=now, member=member)
                futures.append(auto.send_script(self._records.sha["cap"], [key], args))
        return futures

    async def _to_dialing(self, calls: list[Call]) -> list[Call]:
        """The record is the arbiter: only one path may move it to dialing, ever."""
        again = [call for call in calls if call[0].attempt > 1]
        if again:
            calls = [call for call in calls if call[0].attempt <= 1]
        ready = await self._first_to_dialing(calls) if calls else []
        for intent, slot in again:  # the ladder is the arbiter of a re-attempt
            if self.follower is not None and await self.follower.to_dialing(intent):
                ready.append((intent, slot))
            else:
                log.info("re-attempt %s skipped: its ladder moved on", intent.intent_id)
                await self.release_caps(intent)
                await self.finish(intent, slot)
        return ready

    async def _first_to_dialing(self, calls: list[Call]) -> list[Call]:
        now = self._clock()
        keys, auto, sha = self._records.keys, self._records.auto, self._records.sha["transition"]
        moves = [
            transition_args(
                keys, i.intent_id, state=State.DIALING, now=now, allowed_from=FROM_PENDING
            )
            for i, _ in calls
        ]

        async def move() -> list[Any]:
            return await replies([auto.send_script(sha, k, a) for k, a in moves])

        applied = await ride_out(move) if calls else []
        ready = []
        for (intent, slot), result in zip(calls, applied, strict=True):
            if result == 1:
                ready.append((intent, slot))
                continue
            log.info("dial %s skipped: its record is already past queued", intent.intent_id)
            await self.release_caps(intent)
            await self.finish(intent, slot)
        return ready

    async def finish(self, intent: DialIntent, slot: bool) -> None:
        """A call that will not be placed: out of the persisted queue, its slot freed."""
        await self._records.forget(intent)
        self._tell(DialFinished(intent_id=intent.intent_id, priority=intent.priority, slot=slot))

    async def release_caps(
        self, intent: DialIntent, *, number: bool = True, customer: bool = True
    ) -> None:
        """Give back the counts of a call that provably did not happen.

        Best effort: a count left behind by a Redis outage errs on the side of fewer calls.
        """
        keys, auto = self._records.keys, self._records.auto
        commands = []
        if number and self._caps.number:
            commands.append(("ZREM", keys.number_calls(intent.customer.phone)))
        if customer and self._caps.customer:
            commands.append(("ZREM", keys.customer_calls(intent.customer.customer_id)))
        try:
            await replies([auto.send(*c, call_member(intent)) for c in commands])
        except (redis.ConnectionError, redis.TimeoutError):
            log.warning("caps of %s not released (Redis unavailable)", intent.intent_id)
