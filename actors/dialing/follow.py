"""Following a placed call to its result, and the re-attempt ladder (promise 7).

Runs on the dialer's loop beside the placer. Every call whose backend can report results is
followed: its result is asked for in batches (Genesys analytics, CXone completed contacts,
Twilio's Call resource) or arrives pushed (Twilio's signed status callback, kept on the record
by the HTTP edge). A result moves the record's ladder (tripline/adapters/attempts.py): reached
ends it; a miss schedules the next attempt (pipeline/reach.py decides when and to whom); an
exhausted ladder or an unknown result raises one task for a person with the attempt history.

A re-attempt is a full new decision: the sensor's resolve, maintenance, the customer's profile
read again, each contact's calling window, do-not-call, DND and consent (pipeline/comply.py);
then the dialer's last checks at the moment of dialing (window, caps per number and customer,
the pause) and its rate budget, like any call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import aiohttp
import orjson
import redis

from tripline.actors._loop import ride_out
from tripline.actors.dialing.records import Records
from tripline.adapters import crm
from tripline.adapters.attempts import (
    FIELDS,
    REACH_LUA,
    Ladder,
    attempt_entry,
    dnc_sources_key,
    evidence_from_pushed,
    follow_key,
    reach_args,
    resolved_key,
)
from tripline.adapters.backends import Backends, Follows, ResultsUnavailableError
from tripline.adapters.ledger.actions import wrapup_message
from tripline.adapters.redis_io import replies
from tripline.adapters.store import LEDGER_MAX_ENTRIES, alert_from_dict, iso, text
from tripline.conf.schema import CrmConfig, OutcomesConfig, ReachConfig
from tripline.messages import (
    Alert,
    Contact,
    Customer,
    DialIntent,
    Outcome,
    Priority,
    Reason,
    TaskIntent,
)
from tripline.pipeline.comply import Allowed, Blocked, ComplyRules, comply, normalise_phone
from tripline.pipeline.reach import (
    CallResult,
    Evidence,
    LadderRules,
    Next,
    ResultReason,
    Stop,
    WrapupCodes,
    after_result,
    mask_phone,
)
from tripline.service.controls import OperatorControls
from tripline.service.stats import Stats

log = logging.getLogger("tripline.reach")

_PAGE = 200  # ladders looked at per step
_BATCH = 100  # calls per results request (Genesys' and CXone's practical maximum)
_TICK = 1.0  # how often the index is looked at (pushed results are taken within it)
_HANDOFF_GRACE = 120.0  # a re-attempt handed to the dialer and not seen since: look again
_RESOLVE_KEPT = 7 * 86400  # how long a sensor's resolve is remembered for its ladders
_INDEX_TTL_EVERY = 60.0  # how often the follow index's TTL is renewed past its farthest entry


def ladder_rules(conf: ReachConfig) -> LadderRules:
    """[reach] as the pure ladder's rules; a priority a table leaves out gets the default's."""
    shipped = ReachConfig()

    def table(mine: dict[str, Any], default: dict[str, Any]) -> dict[Priority, Any]:
        return {p: mine.get(p.label, default[p.label]) for p in Priority}

    return LadderRules(
        max_attempts=table(conf.max_attempts, shipped.max_attempts),
        retry_after={
            p: float(v)
            for p, v in table(conf.retry_after_seconds, shipped.retry_after_seconds).items()
        },
        attempts_per_contact=table(conf.attempts_per_contact, shipped.attempts_per_contact),
    )


def wrapup_codes(conf: OutcomesConfig) -> WrapupCodes:
    """[outcomes] wrap-up code lists as WrapupCodes."""
    return WrapupCodes(
        reached=frozenset(conf.wrapup_reached),
        not_reached=frozenset(conf.wrapup_not_reached),
        wrong_number=frozenset(conf.wrapup_wrong_number),
        do_not_call=frozenset(conf.wrapup_do_not_call),
    )


def contacts_of(customer: Customer) -> list[Contact]:
    """Whom the ladder may call, in order: the customer's own phone first, then the CRM's list."""
    own = Contact(
        name=customer.name,
        phone=customer.phone,
        role="customer",
        order=0,
        call_consent=customer.call_consent,
        timezone=customer.timezone,
    )
    ladder, seen = [], set()
    for contact in [own, *sorted(customer.contacts, key=lambda c: c.order)]:
        number = normalise_phone(contact.phone) or contact.phone
        if number not in seen:  # one line is one contact, however the CRM formats it
            seen.add(number)
            ladder.append(contact)
    return ladder


def as_customer(customer: Customer, contact: Contact) -> Customer:
    """The customer as seen through one contact: that number, that zone, that consent.

    A revoked consent or a do-not-call flag of the customer holds for every contact (the
    account holder spoke for the account); the contact's own consent is added to it.
    """
    return replace(
        customer,
        name=contact.name or customer.name,
        phone=contact.phone,
        timezone=contact.timezone or customer.timezone,
        call_consent=customer.call_consent and contact.call_consent,
        contacts=(),
    )


class Follower:
    """Follows placed calls to their results and runs the ladder (see the module doc)."""

    def __init__(
        self,
        *,
        records: Records,
        backends: Backends,
        instance: str,
        rules: ComplyRules,
        reach: ReachConfig,
        outcomes: OutcomesConfig,
        crm_conf: CrmConfig,
        controls: OperatorControls,
        record_ttl: int,
        stats: Stats,
        clock: Callable[[], float],
        tell: Callable[[object], None],
    ) -> None:
        """Keep collaborators (on the dialer's loop)."""
        self._records, self._backends, self._rules = records, backends, rules
        self._ladder, self._wrapups = ladder_rules(reach), wrapup_codes(outcomes)
        self._conf, self._crm, self._controls = outcomes, crm_conf, controls
        self._ttl, self._stats, self._clock, self._tell = record_ttl, stats, clock, tell
        self.index = follow_key(records.keys, instance)
        self.instance = instance
        self._sha = {"reach": records.auto.script(REACH_LUA)}
        self._follows_by_type: dict[type, bool] = {}
        self._live: set[str] = set()  # re-attempts handed to the dialer by this process
        self._by_sensor: dict[str, set[str]] = {}  # open ladders of each sensor (this process)
        self._held: dict[str, float] = {}  # by backend: no results request before (a 429)
        self._index_kept_at = float("-inf")
        self._http: aiohttp.ClientSession | None = None

    # --- what the placer asks ----------------------------------------------------------------

    def follows(self, intent: DialIntent) -> bool:
        """Whether this call's backend reports results (the log backend does not)."""
        backend = self._backends.by_priority[intent.priority]
        kind = type(backend)
        follows = self._follows_by_type.get(kind)
        if follows is None:
            # A runtime protocol's isinstance walks its members every time (3.11): asked
            # once per backend class, not for every call placed.
            follows = self._follows_by_type[kind] = isinstance(backend, Follows)
        return follows

    async def watch(self, intent: DialIntent, at: float) -> None:
        """Index the alert before its call leaves: a crash after the call still finds it."""
        key = intent.intent_id
        self._by_sensor.setdefault(intent.alert.sensor_id, set()).add(key)
        await ride_out(lambda: self._records.auto.execute("ZADD", self.index, at, key))

    def first_fields(self, intent: DialIntent, call_id: str, now: float) -> dict[str, str]:
        """The ladder's fields written with the first call's `called` outcome."""
        fields = self._placed_fields(intent, call_id, now, [])
        fields["attempts"] = orjson.dumps(fields["attempts"]).decode()
        scheduled = {"scheduledEpoch": repr(intent.scheduled_for)} if intent.scheduled_for else {}
        return {**scheduled, **fields, "attempt": "1"}

    def _placed_fields(
        self, intent: DialIntent, call_id: str, now: float, earlier: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Attempt `intent.attempt` is out as `call_id`: the ladder's fields, its entry added."""
        phone = normalise_phone(intent.customer.phone) or intent.customer.phone
        backend = self._backends.name(intent.priority)
        entry = attempt_entry(
            n=intent.attempt,
            now=now,
            contact=intent.contact or intent.customer.name,
            phone=mask_phone(phone),
            backend=backend,
            call_id=call_id,
        )
        return {
            "result": CallResult.PENDING.value,
            "attemptState": "placed",
            "attemptCallId": call_id,
            "attemptBackend": backend,
            "attemptEpoch": repr(now),
            "attemptPhone": phone,
            "attempts": [a for a in earlier if a.get("n") != intent.attempt] + [entry],
        }

    async def placed_first(self, intent: DialIntent) -> None:
        """The first call is out (its fields went with the outcome): ask for its result soon.

        A scheduled callback is looked at again shortly before it is due (its re-check).
        """
        now = self._clock()
        at = now + self._conf.poll_seconds
        # The record, its history and the agent's context outlive the ladder that starts here
        # (each later step keeps them again): a Friday evening callback is worked on Monday.
        self._records.keep(intent.alert, until=max(now, intent.scheduled_for))
        if intent.scheduled_for:
            at = max(at, intent.scheduled_for - self._rules.recheck_before)
        await self._schedule(intent.intent_id, at)
        if not intent.scheduled_for:
            await self._overtaken(intent.intent_id, now)

    async def to_dialing(self, intent: DialIntent) -> bool:
        """A re-attempt moves queued -> dialing: only one path ever can."""
        return await self._move(
            intent.intent_id,
            n=intent.attempt,
            states="queued",
            event="attempt_dialing",
            attemptState="dialing",
            attemptEpoch=repr(self._clock()),
        )

    async def requeued(self, intent: DialIntent) -> None:
        """A re-attempt the backend did not take (429, unsent): back to queued."""
        await self._move(
            intent.intent_id,
            n=intent.attempt,
            states="dialing",
            event="attempt_requeued",
            attemptState="queued",
        )

    async def placed(self, intent: DialIntent, call_id: str) -> None:
        """A re-attempt's call is out: follow it."""
        now = self._clock()
        key = intent.intent_id
        self._live.discard(key)
        ladder = await self._read(key)
        fields = self._placed_fields(intent, call_id, now, ladder.attempts)
        moved = await self._move(
            key, n=intent.attempt, states="dialing", event="attempt_placed", **fields
        )
        if moved:
            self._records.keep(intent.alert, until=now)
            phone = mask_phone(fields["attemptPhone"])
            log.info("attempt %d of %s placed to %s", intent.attempt, key, phone)
            await self._schedule(key, now + self._conf.poll_seconds)
            stop = await self._overtaken(key, now)
            if stop:  # e.g. the sensor resolved while this call was being placed
                await self._cancel_placed(await self._read(key), text(stop))

    async def _overtaken(self, key: str, now: float) -> Any:  # noqa: ANN401 - a Redis reply
        """Once its entry is scheduled: a result pushed before that is taken now; `stopAfter`.

        A result that overtook the dial's answer is not left for a poll a minute later. Looked
        for after the entry was written, not before: a push landing after the look adds its own
        entry, due now (edge/providers.py), after this one — looked for first, the push's entry
        could land between the look and the write and be overwritten by the later poll's.
        """
        record = self._records.keys.record(key)
        stop, pushed = await self._records.auto.execute("HMGET", record, "stopAfter", "pushed")
        if pushed:
            await self._schedule(key, now)
        return stop

    async def not_placed(self, intent: DialIntent, evidence: Evidence, detail: str) -> None:
        """A re-attempt that ended before or at the backend: failed, uncertain, or blocked."""
        self._live.discard(intent.intent_id)
        ladder = await self._read(intent.intent_id)
        if ladder.n != intent.attempt or ladder.state not in ("queued", "dialing"):
            return
        entry = {
            "n": intent.attempt,
            "at": iso(self._clock()),
            "contact": intent.contact or intent.customer.name,
            "phone": mask_phone(intent.customer.phone),
            "backend": self._backends.name(intent.priority),
            "callId": None,
            "detail": detail[:200],
        }
        ladder.attempts = [a for a in ladder.attempts if a.get("n") != intent.attempt] + [entry]
        await self._settle(ladder, evidence, states=ladder.state)

    async def ended_before_dialing(self, intent: DialIntent, why: str, *, task: bool) -> None:
        """A queued re-attempt that will not be placed (resolved, maintenance, an incident)."""
        self._live.discard(intent.intent_id)
        ladder = await self._read(intent.intent_id)
        if ladder.n != intent.attempt or ladder.state not in ("queued", "dialing", "waiting"):
            return
        await self._end(ladder, why, task=task, states=ladder.state)

    # --- the resolve ---------------------------------------------------------------------------

    async def sensor_resolved(self, customer_id: str, sensor_id: str, at: float) -> None:
        """Remember the resolve for every instance; end this process's ladders of the sensor.

        A call still waiting for an agent is cancelled at the contact center.
        """
        if customer_id:
            key = resolved_key(self._records.keys, customer_id, sensor_id)
            # Kept past the record TTL: a scheduled callback days away is re-checked against it.
            keep = max(self._ttl, _RESOLVE_KEPT)
            await ride_out(lambda: self._records.auto.execute("SET", key, repr(at), "EX", keep))
        for key in list(self._by_sensor.get(sensor_id, ())):
            ladder = await self._read(key)
            if not ladder.exists or ladder.state == "ended":
                self._forget(key, ladder)
                continue
            if ladder.state == "":  # a first call on its way: its ladder ends before a second
                continue
            if ladder.alert is None or float(ladder.alert.get("timestamp", 0)) > at:
                continue
            if ladder.state == "placed":
                await self._cancel_placed(ladder, "the sensor resolved")
            elif ladder.state == "waiting":
                await self._end(ladder, "the sensor resolved", task=False, states="waiting")
            elif ladder.state in ("queued", "dialing"):
                # A queued one is withdrawn by the dialer; one already dialing may still create
                # a call: it is cancelled as soon as it is placed (placed()).
                await self._move(
                    key,
                    n=ladder.n,
                    states="queued,dialing",
                    event="ladder_stop_after",
                    stopAfter="the sensor resolved",
                )

    async def _cancel_placed(self, ladder: Ladder, why: str, *, task: bool = False) -> None:
        follows = self._follows(ladder.backend)
        cancelled = False
        if follows is not None and ladder.call_id:
            try:
                cancelled = await follows.cancel(ladder.call_id)
            except Exception:  # the contact center refused or failed: the call goes on
                log.exception("cancelling call %s of %s failed", ladder.call_id, ladder.key)
        if cancelled:
            evidence = Evidence(CallResult.NOT_REACHED, ResultReason.CANCELED)
            await self._settle(ladder, evidence, states="placed", stop=why, task=task)
        else:  # the call goes on; its result is still learned, but no attempt follows it
            moved = await self._move(
                ladder.key,
                n=ladder.n,
                states="placed",
                event="ladder_stop_after",
                stopAfter=why,
                rechecked="1",  # a scheduled callback's re-check is done: not tried every tick
                detail=f"{why}; the call could not be cancelled",
            )
            if moved and task:  # the person must know now, not when the call's result comes
                self._raise_task(
                    ladder,
                    ladder.attempts,
                    f"{why}, and the call could not be cancelled at the contact center",
                    self._clock(),
                )

    # --- the loop ------------------------------------------------------------------------------

    async def run_forever(self) -> None:
        """Look at due ladders every tick; one failure never stops the loop."""
        while True:
            try:
                await self.step()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("results: Redis unavailable (%r); trying again", exc)
            except Exception:
                log.exception("results: one step failed; trying again")
            await asyncio.sleep(min(_TICK, self._conf.poll_seconds))

    async def close(self) -> None:
        """Close the CRM session."""
        if self._http is not None:
            await self._http.close()

    async def step(self) -> int:
        """Act on every ladder due now; returns how many were looked at."""
        now = self._clock()
        auto = self._records.auto
        await self._keep_index(now)
        keys = [
            text(k)
            for k in await auto.execute(
                "ZRANGEBYSCORE", self.index, "-inf", repr(now), "LIMIT", 0, _PAGE
            )
        ]
        if not keys:
            return 0
        record = self._records.keys.record
        rows = await replies([auto.send("HMGET", record(k), *FIELDS) for k in keys])
        to_poll: dict[str, list[Ladder]] = {}
        for key, row in zip(keys, rows, strict=True):
            ladder = Ladder.read(key, list(row))
            try:
                await self._look(ladder, now, to_poll)
            except (redis.ConnectionError, redis.TimeoutError):
                raise
            except Exception:
                # One unreadable ladder must not hold up the others: look again later.
                log.exception("results: ladder of %s failed; looking again later", key)
                await self._schedule(key, now + self._conf.poll_seconds)
        for backend, ladders in to_poll.items():
            await self._poll(backend, ladders, now)
        return len(keys)

    async def _look(self, ladder: Ladder, now: float, to_poll: dict[str, list[Ladder]]) -> None:
        key = ladder.key
        if ladder.alert is not None:
            self._by_sensor.setdefault(str(ladder.alert.get("sensor_id", "")), set()).add(key)
        if not ladder.exists or ladder.state == "ended":
            self._forget(key, ladder)
        elif ladder.state == "":
            # Indexed before its first call: still on its way, or it never became a call.
            if ladder.outcome and not ladder.record_state.startswith(("queued", "dialing")):
                self._forget(key, ladder)
            else:
                await self._schedule(key, now + self._soon(ladder))
        elif ladder.state == "placed":
            await self._placed(ladder, now, to_poll)
        elif ladder.state == "waiting":
            if ladder.next_at <= now:
                await self._reattempt(ladder, now)
            else:
                await self._schedule(key, ladder.next_at)
        else:  # queued / dialing: with the dialer
            await self._handed_off(ladder, now)

    async def _placed(self, ladder: Ladder, now: float, to_poll: dict[str, list[Ladder]]) -> None:
        """A call is out: its re-check if scheduled, its pushed result, or a poll."""
        if ladder.scheduled_at > now:
            await self._before_scheduled(ladder, now)
            return
        pushed = evidence_from_pushed(ladder.pushed) if ladder.pushed else None
        if pushed is not None and ladder.pushed and ladder.pushed.get("callId") == ladder.call_id:
            await self._settle(ladder, pushed, states="placed")
        else:
            to_poll.setdefault(ladder.backend, []).append(ladder)

    def _soon(self, ladder: Ladder) -> float:
        """When to look again at a call being placed: soon when its result was pushed early."""
        return min(_TICK, self._conf.poll_seconds) if ladder.pushed else self._conf.poll_seconds

    async def _handed_off(self, ladder: Ladder, now: float) -> None:
        """A re-attempt with the dialer: in this process, or left by a previous life."""
        key = ladder.key
        if key in self._live:
            await self._schedule(key, now + min(_HANDOFF_GRACE, self._soon(ladder) * 2))
            return
        if ladder.state == "queued":
            queued = await self._records.auto.execute(
                "HEXISTS", self._records.queue_key, f"dial:{key}"
            )
            if queued:  # restored by the dialer from its persisted queue: it will dial it
                await self._schedule(key, now + _HANDOFF_GRACE)
                return
            # Handed over, never persisted (a crash in between): decide it again.
            await self._move(
                key,
                n=ladder.n,
                states="queued",
                event="attempt_lost",
                attemptState="waiting",
                nextEpoch=repr(now),
                attempt=str(ladder.n - 1),
            )
            await self._schedule(key, now)
            return
        # 'dialing' in no live process: the request may have left. Never resend blindly.
        evidence = Evidence(CallResult.UNKNOWN, Reason.DIAL_UNCERTAIN.value)
        await self._settle(ladder, evidence, states="dialing")

    # --- scheduled callbacks ------------------------------------------------------------------

    async def _before_scheduled(self, ladder: Ladder, now: float) -> None:
        """A scheduled callback not due yet: re-checked once shortly before, then waited for."""
        recheck_at = ladder.scheduled_at - self._rules.recheck_before
        if ladder.rechecked or now < recheck_at:
            later = ladder.scheduled_at + self._conf.poll_seconds
            await self._schedule(ladder.key, later if ladder.rechecked else recheck_at)
            return
        why, task = await self._recheck(ladder)
        if why:
            log.warning("scheduled callback of %s cancelled: %s", ladder.key, why)
            await self._cancel_placed(ladder, why, task=task)
            return
        if await self._move(
            ladder.key, n=ladder.n, states="placed", event="rechecked", rechecked="1"
        ):
            await self._schedule(ladder.key, ladder.scheduled_at + self._conf.poll_seconds)

    async def _recheck(self, ladder: Ladder) -> tuple[str, bool]:
        """What changed since the callback was scheduled: ('', _) when nothing did.

        The sensor (resolved), maintenance, and the customer as the CRM has them now: the
        do-not-call list and flag, consent, do-not-disturb. Returns why it must not ring and
        whether a person should hear of it.
        """
        if ladder.alert is None:
            return "", False
        alert = alert_from_dict(ladder.alert)
        if over := await self._over(alert, ladder.scheduled_at):
            return over, False
        customer = await self._customer_now(ladder.key, alert.customer_id)
        if isinstance(customer, tuple):
            return customer
        phone = ladder.phone
        listed = await self._records.auto.execute("SISMEMBER", self._records.keys.dnc(), phone)
        verdict = comply(
            replace(customer, phone=phone or customer.phone),
            now=ladder.scheduled_at,  # judged as at the time it will ring
            rules=self._rules,
            alert_type=alert.alert_type,
            on_dnc_list=bool(listed),
        )
        if isinstance(verdict, Blocked):
            return f"{verdict.reason.value}: {verdict.detail}", True
        return "", False

    # --- results -------------------------------------------------------------------------------

    def _follows(self, backend: str) -> Follows | None:
        candidate = self._backends.by_name.get(backend)
        return candidate if isinstance(candidate, Follows) else None

    async def _poll(self, backend: str, ladders: list[Ladder], now: float) -> None:
        """Ask the backend for these calls' results, a batch per request."""
        follows = self._follows(backend)
        for start in range(0, len(ladders), _BATCH):
            part = ladders[start : start + _BATCH]
            found: dict[str, Evidence] = {}
            held = self._held.get(backend, 0.0)
            if follows is not None and now >= held:
                try:
                    found = await follows.results([(lad.call_id, lad.placed_at) for lad in part])
                except ResultsUnavailableError as exc:
                    if exc.retry_after is not None:  # a 429: no results request before it
                        held = self._held[backend] = now + exc.retry_after
                    log.warning("results from %s failed: %s", backend, exc)
                except Exception as exc:  # a failed poll is asked again; the timeout still runs
                    log.warning("results from %s failed: %r", backend, exc)
            later = max(now + self._conf.poll_seconds, held)
            for ladder in part:
                evidence = found.get(ladder.call_id)
                if evidence is not None:
                    await self._settle(ladder, evidence, states="placed")
                elif now - ladder.works_from >= self._conf.result_timeout_seconds:
                    await self._timed_out(ladder, follows)
                else:
                    await self._schedule(ladder.key, later)

    async def _timed_out(self, ladder: Ladder, follows: Follows | None) -> None:
        """No result in time: cancel what may still be waiting, then unknown and a task."""
        if follows is not None and ladder.call_id:
            try:
                await follows.cancel(ladder.call_id)
            except Exception as exc:
                log.warning("cancelling timed-out call %s failed: %r", ladder.call_id, exc)
        evidence = Evidence(CallResult.UNKNOWN, ResultReason.TIMEOUT)
        await self._settle(ladder, evidence, states="placed")

    async def _settle(
        self,
        ladder: Ladder,
        evidence: Evidence,
        *,
        states: str,
        stop: str = "",
        task: bool = False,
    ) -> None:
        """Record attempt n's result and decide what follows it."""
        now = self._clock()
        evidence = self._wrapups.apply(evidence)
        step: Next | Stop
        if stop or ladder.stop_after:
            step = Stop(stop or ladder.stop_after, task=task)
            if evidence.result == CallResult.REACHED:
                step = Stop("reached", task=False)
        else:
            # How many contacts there are matters only when another attempt may follow.
            customer = (
                await self._cached_customer(ladder)
                if evidence.result == CallResult.NOT_REACHED
                else None
            )
            step = after_result(
                evidence,
                n=ladder.n,
                priority=_priority(ladder.priority),
                contacts=len(contacts_of(customer)) if customer is not None else 1,
                now=now,
                rules=self._ladder,
            )
        attempts = ladder.with_result(evidence, now)
        if evidence.do_not_call:
            await self._add_to_dnc(ladder)
        if isinstance(step, Next):
            # The keys are kept in the move's own round trip (queued first, sent together): a
            # keep one round trip later left a window where the ladder waited days for a
            # record due to expire tomorrow (a crash there, or a reader in between, saw it).
            # A move refused (another path moved the ladder) keeps them that much longer.
            self._keep(ladder, until=step.at)  # the next attempt may be days away
            moved = await self._move(
                ladder.key,
                n=ladder.n,
                states=states,
                event="attempt_result",
                result=CallResult.PENDING.value,
                resultReason=evidence.reason,
                attempts=attempts,
                attemptState="waiting",
                nextEpoch=repr(step.at),
                nextAt=iso(step.at),
                nextContact=str(step.contact),
                detail=f"attempt {ladder.n}: {evidence.result.value} {evidence.reason}".strip(),
            )
            if moved:  # counted once: only the path that moved the ladder counts its result
                self._stats.call_result(evidence.result.value, evidence.reason)
                await self._schedule(ladder.key, step.at)
            return
        final = evidence.result if evidence.result != CallResult.PENDING else CallResult.UNKNOWN
        if await self._close(
            ladder,
            step.why,
            final,
            attempts,
            task=step.task,
            states=states,
            resultReason=evidence.reason,
        ):
            self._stats.call_result(evidence.result.value, evidence.reason)

    async def _end(self, ladder: Ladder, why: str, *, task: bool, states: str) -> None:
        """End a ladder between attempts (nothing placed is pending)."""
        result = (
            CallResult(ladder.result) if ladder.result in set(CallResult) else CallResult.UNKNOWN
        )
        final = CallResult.NOT_REACHED if result == CallResult.PENDING else result
        await self._close(ladder, why, final, ladder.attempts, task=task, states=states)

    async def _close(
        self,
        ladder: Ladder,
        why: str,
        final: CallResult,
        attempts: list[dict[str, Any]],
        *,
        task: bool,
        states: str,
        **fields: Any,  # noqa: ANN401
    ) -> bool:
        """End the ladder with `final` (one path only); a task for a person when `task`."""
        moved = await self._move(
            ladder.key,
            n=ladder.n,
            states=states,
            event="ladder_ended",
            result=final.value,
            attempts=attempts,
            attemptState="ended",
            ladderEnd=why,
            detail=why,
            **fields,
        )
        if not moved:
            return False
        now = self._clock()
        self._keep(ladder, until=now)  # the record TTL runs from the ladder's end
        self._forget(ladder.key, ladder)
        placed = [a for a in attempts if a.get("callId")]
        self._stats.attempts_per_alert.observe(len(placed))
        if final == CallResult.REACHED and ladder.alert is not None:
            accepted = float(ladder.alert.get("accepted_at", now))
            self._stats.time_to_reach.observe(max(0.0, now - accepted))
        log.info("ladder of %s ended: %s after %d calls", ladder.key, final.value, len(placed))
        if task:
            self._raise_task(ladder, attempts, why, now)
        return True

    def _raise_task(
        self, ladder: Ladder, attempts: list[dict[str, Any]], why: str, now: float
    ) -> None:
        """One task 'could not reach' with the history (Tasks raises at most one per alert)."""
        if ladder.alert is None:
            log.error(
                "ladder of %s ended (%s) but its alert is unreadable: no task", ladder.key, why
            )
            return
        alert = alert_from_dict(ladder.alert)
        history = "; ".join(
            f"#{a.get('n')} {a.get('contact')} {a.get('phone')}: "
            f"{a.get('result') or 'not placed'}"
            f"{' ' + str(a.get('resultReason')) if a.get('resultReason') else ''}"
            for a in attempts
        )
        self._tell(
            TaskIntent(
                alert=alert,
                reason=Reason.NONE,
                due=now,
                detail=f"Could not reach the customer: {why}. Attempts: {history}"[:400],
                outcome=Outcome.CALLED,
            )
        )

    async def _add_to_dnc(self, ladder: Ladder) -> None:
        """A do-not-call wrap-up: the number joins the internal list, with that source."""
        phone = ladder.phone
        if not phone:
            return
        await self._records.auto.execute("SADD", self._records.keys.dnc(), phone)
        source = orjson.dumps(
            {
                "source": "wrapup",
                "by": "contact-center",
                "at": iso(self._clock()),
                "alert": ladder.key,
            }
        )
        await self._records.auto.execute("HSET", dnc_sources_key(self._records.keys), phone, source)
        if self._records.keys.ledger:  # an opt-out is an operator action: the ledger keeps it
            entry = wrapup_message(phone=phone, alert=ladder.key, now=self._clock())
            await self._records.auto.execute(
                "XADD",
                self._records.keys.ledger_entries(),
                "MAXLEN",
                "~",
                LEDGER_MAX_ENTRIES,
                "*",
                "operator",
                entry,
            )
        log.warning("%s joined the do-not-call list (wrap-up of %s)", mask_phone(phone), ladder.key)

    # --- the next attempt ------------------------------------------------------------------

    async def _reattempt(self, ladder: Ladder, now: float) -> None:
        """Decide the next attempt afresh; hand it to the dialer, or end the ladder."""
        if ladder.alert is None:
            await self._end(ladder, "the alert is unreadable", task=False, states="waiting")
            return
        alert = alert_from_dict(ladder.alert)
        over = await self._over(alert, now)
        if over:
            await self._end(ladder, over, task=False, states="waiting")
            return
        unreadable = "the customer's contacts cannot be read"
        try:
            customer = await self._fresh_customer(alert.customer_id)
        except crm.UnusableRecordError as exc:  # the CRM answered: waiting will not mend it
            customer, unreadable = None, f"{unreadable}: {exc}"
        except crm.CrmUnavailableError as exc:
            if now - ladder.next_at < self._conf.result_timeout_seconds:
                log.warning("re-attempt of %s waits for the CRM: %s", ladder.key, exc)
                await self._schedule(ladder.key, now + self._conf.poll_seconds)
                return
            customer = None
        chosen = (
            await self._choose(alert, customer, ladder, now) if customer is not None else unreadable
        )
        if isinstance(chosen, str) or customer is None:
            await self._end(ladder, str(chosen), task=True, states="waiting")
            return
        contact, allowed, skipped = chosen
        n = ladder.n + 1
        if not await self._move(
            ladder.key,
            n=ladder.n,
            states="waiting",
            event="attempt_queued",
            attempt=str(n),
            attemptState="queued",
            attemptContact=contact.name,
            detail=f"attempt {n} to {contact.name}"
            + (f" (skipped: {'; '.join(skipped)})" if skipped else ""),
        ):
            return
        self._live.add(ladder.key)
        await self._schedule(ladder.key, now + _HANDOFF_GRACE)
        self._tell(
            DialIntent(
                intent_id=ladder.key,
                alert=alert,
                customer=replace(as_customer(customer, contact), phone=allowed.phone),
                priority=alert.priority,
                enqueued_at=now,
                facts=tuple(allowed.facts.items()),
                not_before=now,
                attempt=n,
                contact=contact.name,
            )
        )

    async def _over(self, alert: Alert, now: float) -> str:
        """Why the ladder ends without a person being told ('' when it goes on)."""
        resolved = text(
            await self._records.auto.execute(
                "GET", resolved_key(self._records.keys, alert.customer_id, alert.sensor_id)
            )
        )
        if resolved and _seconds(resolved) >= alert.timestamp:
            return "the sensor resolved"
        if (window := self._controls.covering(alert, now)) is not None:
            return f"maintenance: {window.detail()}"
        return ""

    async def _choose(
        self, alert: Alert, customer: Customer, ladder: Ladder, now: float
    ) -> tuple[Contact, Allowed, list[str]] | str:
        """The contact whose turn it is, or the next one allowed now; a sentence when none is."""
        contacts = contacts_of(customer)
        start = ladder.next_contact % len(contacts)
        order = contacts[start:] + contacts[:start]
        phones = [normalise_phone(c.phone) or c.phone for c in order]
        listed = await self._records.auto.execute("SMISMEMBER", self._records.keys.dnc(), *phones)
        skipped: list[str] = []
        for contact, on_dnc in zip(order, listed, strict=True):
            verdict = comply(
                as_customer(customer, contact),
                now=now,
                rules=self._rules,
                alert_type=alert.alert_type,
                on_dnc_list=bool(on_dnc),
            )
            if isinstance(verdict, Allowed):
                return contact, verdict, skipped
            skipped.append(f"{contact.name}: {_blocked(verdict)}")
        return "no contact may be called now (" + "; ".join(skipped) + ")"

    async def _customer_now(self, key: str, customer_id: str) -> Customer | tuple[str, bool]:
        """The customer for a re-check, or (why not, tell a person?) when there is none."""
        try:
            customer = await self._fresh_customer(customer_id)
        except crm.UnusableRecordError as exc:
            return str(exc), True
        except crm.CrmUnavailableError as exc:
            log.warning("re-check of %s: CRM unavailable (%s); the callback stays", key, exc)
            return "", False
        if customer is None:
            return "the customer is no longer known to the CRM", True
        return customer

    async def _cached_customer(self, ladder: Ladder) -> Customer | None:
        if ladder.alert is None:
            return None
        cid = str(ladder.alert.get("customer_id", ""))
        blob = await self._records.auto.execute("GET", self._records.keys.customer(cid))
        return crm.from_cache(cid, blob)

    async def _fresh_customer(self, customer_id: str) -> Customer | None:
        """The profile as the CRM has it now (consent and contacts may have changed)."""
        if self._http is None:
            self._http = crm.session(self._crm)
        customer = await crm.fetch_customer(self._http, self._crm.base_url, customer_id)
        if customer is not None:
            await crm.cache_customer(
                self._records.redis,
                self._records.keys,
                customer,
                self._crm.cache_ttl_seconds,
                fetched_at=self._clock(),
            )
        return customer

    # --- Redis -----------------------------------------------------------------------------

    async def _read(self, key: str) -> Ladder:
        row = await ride_out(
            lambda: self._records.auto.execute("HMGET", self._records.keys.record(key), *FIELDS)
        )
        return Ladder.read(key, list(row))

    async def _move(self, key: str, *, n: int, states: str, event: str, **fields: Any) -> bool:  # noqa: ANN401
        keys, args = reach_args(
            self._records.keys, key, n=n, states=states, event=event, now=self._clock(), **fields
        )
        applied = await ride_out(lambda: self._records.auto.evalsha(self._sha["reach"], keys, args))
        if applied != 1:
            log.info("ladder of %s moved elsewhere (%s refused: %s)", key, event, applied)
        return bool(applied == 1)

    async def _schedule(self, key: str, at: float) -> None:
        await ride_out(lambda: self._records.auto.execute("ZADD", self.index, repr(at), key))

    async def _keep_index(self, now: float) -> None:
        """Every key has a TTL: the index's outlives its farthest entry by the record TTL.

        Renewed from the loop (not only when something is scheduled), so a quiet instance's
        index of callbacks due days later does not expire under them.
        """
        if now - self._index_kept_at < _INDEX_TTL_EVERY:
            return
        self._index_kept_at = now
        last = await self._records.auto.execute("ZRANGE", self.index, -1, -1, "WITHSCORES")
        score = last_score(last)
        if score is not None:
            farthest = max(0.0, score - now)
            await self._records.auto.execute("EXPIRE", self.index, int(farthest) + self._ttl)

    def _keep(self, ladder: Ladder, *, until: float) -> None:
        """Keep the ladder's record, history and context `record_ttl` past `until`."""
        if ladder.alert is not None:
            try:
                alert = alert_from_dict(ladder.alert)
            except (TypeError, ValueError):  # unreadable: its record keeps the TTL it has
                return
            self._records.keep(alert, until=until)

    def _forget(self, key: str, ladder: Ladder) -> None:
        self._records.auto.send("ZREM", self.index, key).add_done_callback(_quiet)
        if ladder.alert is not None:
            self._by_sensor.get(str(ladder.alert.get("sensor_id", "")), set()).discard(key)


def _quiet(future: asyncio.Future[Any]) -> None:
    """A housekeeping command not waited for: a failure is retried by the next look."""
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.info("follow index housekeeping failed: %r", exc)


def _seconds(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return float("-inf")


def _priority(label: str) -> Priority:
    try:
        return Priority.from_label(label)
    except KeyError:
        return Priority.NORMAL


def _blocked(verdict: Blocked) -> str:
    return f"{verdict.reason.value}" + (f" ({verdict.detail})" if verdict.detail else "")


def last_score(reply: Any) -> float | None:  # noqa: ANN401 - a raw Redis reply
    """The score in a raw `ZRANGE … WITHSCORES` reply of one entry; None when empty.

    RESP3 (redis-py 8's default protocol) answers [[member, score]], RESP2 [member, score].
    """
    if not reply:
        return None
    entry = reply[0] if isinstance(reply[0], list) else reply
    return float(entry[1])
