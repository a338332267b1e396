"""Frozen messages that cross actor boundaries; facts are past tense, commands name the request."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any


class Outcome(StrEnum):
    """Terminal outcomes (docs/architecture.md, "Outcomes and reasons")."""

    CALLED = "called"
    SUPPRESSED = "suppressed"
    DEFERRED = "deferred"
    REJECTED = "rejected"


class State(StrEnum):
    """In-flight states before the terminal outcome."""

    ACCEPTED = "accepted"
    QUEUED = "queued"
    DIALING = "dialing"


class Reason(StrEnum):
    """Why an alert ended where it did: one vocabulary for records, logs, metrics and status."""

    NONE = ""
    DUPLICATE = "duplicate"
    COOLDOWN = "cooldown"
    FLAPPING = "flapping"
    GROUPED = "grouped"
    RESOLVED = "resolved"
    CUSTOMER_CAP = "customer_cap"
    NUMBER_CAP = "number_cap"
    OUTSIDE_CALLING_WINDOW = "outside_calling_window"
    HOLIDAY = "holiday"
    DO_NOT_DISTURB = "do_not_disturb"
    DO_NOT_CALL = "do_not_call"
    NO_CONTACT = "no_contact"
    INVALID_PHONE = "invalid_phone"
    CRM_UNAVAILABLE = "crm_unavailable"
    QUEUE_SATURATED = "queue_saturated"
    STALE = "stale"
    DIAL_FAILED = "dial_failed"
    DIAL_UNCERTAIN = "dial_uncertain"
    FLEET_INCIDENT = "fleet_incident"
    INTERNAL_ERROR = "internal_error"
    MAINTENANCE = "maintenance"
    INVALID_JSON = "invalid_json"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    TOO_LARGE = "too_large"
    UNAUTHORIZED = "unauthorized"
    CONFLICT = "conflict"


OUTCOME_REASONS: dict[Outcome, tuple[Reason, ...]] = {
    Outcome.CALLED: (Reason.NONE,),
    Outcome.SUPPRESSED: (
        Reason.DUPLICATE,
        Reason.COOLDOWN,
        Reason.FLAPPING,
        Reason.GROUPED,
        Reason.RESOLVED,
        Reason.CUSTOMER_CAP,
        Reason.NUMBER_CAP,
        Reason.MAINTENANCE,
    ),
    Outcome.DEFERRED: (
        Reason.OUTSIDE_CALLING_WINDOW,
        Reason.HOLIDAY,
        Reason.DO_NOT_DISTURB,
        Reason.DO_NOT_CALL,
        Reason.NO_CONTACT,
        Reason.INVALID_PHONE,
        Reason.CRM_UNAVAILABLE,
        Reason.QUEUE_SATURATED,
        Reason.STALE,
        Reason.DIAL_FAILED,
        Reason.DIAL_UNCERTAIN,
        Reason.FLEET_INCIDENT,
        Reason.INTERNAL_ERROR,
    ),
    Outcome.REJECTED: (
        Reason.INVALID_JSON,
        Reason.MISSING_FIELD,
        Reason.INVALID_FIELD,
        Reason.TOO_LARGE,
        Reason.UNAUTHORIZED,
        Reason.CONFLICT,
    ),
}
"""Which reasons each outcome is given for: each reason under one outcome.

The table of docs/architecture.md, "Outcomes and reasons".
"""


class Priority(IntEnum):
    """Dial priority; a lower value is served first."""

    CRITICAL = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3

    @property
    def label(self) -> str:
        """The lower-case name used in config, records and metrics."""
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> Priority:
        """Parse a lower-case priority name."""
        return cls[label.upper()]


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """A validated, accepted alert: what a sensor reported, plus our reference ids."""

    idempotency_key: str
    """The sender's key: one key, at most one call."""
    sensor_id: str
    """The reporting sensor."""
    customer_id: str
    """The customer who owns the sensor."""
    alert_type: str
    """The sender's alert type, e.g. temp_critical."""
    timestamp: float
    """When the sensor raised it, epoch seconds (the payload carried an explicit offset)."""
    firing: bool
    """False when the payload says status=resolved."""
    severity: str
    """The optional severity ('' when absent)."""
    current_value: float
    """The reading that crossed the threshold."""
    threshold: float
    """The threshold it crossed."""
    unit: str
    """Unit of both values."""
    reference_id: str
    """Deterministic id the full telemetry is stored under (GET /v1/context/{id})."""
    telemetry_hash: str
    """Short hash of the telemetry, sent to the contact center as a fingerprint."""
    accepted_at: float
    """When tripline accepted it, epoch seconds."""
    retained: bool = False
    """Arrived as a retained MQTT message: a replay, never news."""
    priority: Priority = Priority.NORMAL
    """Dial priority, decided at accept time from alertType and severity."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertReceived:
    """A message from the broker, checked (decoded once, validated) in the paho thread."""

    payload: bytes
    """The message body as it arrived (quoted in a rejection report)."""
    topic: str
    """The topic it arrived on."""
    mid: int
    """MQTT message id, needed for the manual acknowledgement."""
    qos: int
    """QoS it was delivered with."""
    retain: bool
    """Retained flag: a replay of an old message."""
    checked: Any = None
    """tripline.accept.Checked or Rejected; None when not checked yet."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A sensor's persisted state, read where a critical alert was recorded."""

    blob: bytes
    """As stored; b"" when Redis had none."""
    read_after: float
    """time.monotonic() before the read was sent: a shard that wrote the sensor's snapshot
    since then reads it again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertBatch:
    """Accepted alerts for one shard, in arrival order."""

    alerts: tuple[Alert, ...]
    """The alerts, oldest first."""
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    """By sensor: snapshots read with the alerts' records (critical alerts only)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Customer:
    """The contact data a call needs, as the CRM knows it."""

    customer_id: str
    """The CRM's id."""
    name: str
    """Display name, sent as callbackUserName."""
    phone: str
    """E.164 number ('' when the CRM has none)."""
    timezone: str
    """IANA zone of the service address."""
    do_not_disturb: bool
    """Customer asked not to be disturbed."""
    do_not_call: bool
    """Customer is on a do-not-call list."""
    country: str = ""
    """ISO 3166-1 alpha-2 of the service address ('' when unknown)."""
    region: str = ""
    """ISO 3166-2 subdivision of the service address, e.g. 'US-LA' ('' when unknown)."""
    call_consent: bool = True
    """False when the customer revoked consent to be called."""
    contacts: tuple[Contact, ...] = ()
    """Further people to call when the customer is not reached, in the CRM's order.

    The customer's own phone is always the first contact (order 0); these follow it.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class Contact:
    """One person the re-attempt ladder may call about a customer's alert."""

    name: str
    phone: str
    """As the CRM has it; normalised to E.164 when called."""
    role: str = ""
    order: int = 0
    """Lower first; the customer's own phone is order 0."""
    call_consent: bool = True
    timezone: str = ""
    """IANA zone of this contact ('' : the customer's)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EnrichBatch:
    """Sensor entities of one shard batch decided calls are due: look up customers, comply."""

    alerts: tuple[Alert, ...]
    """The alerts opening episodes (each carries its priority)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DialIntent:
    """A request to place one outbound call for one alert episode."""

    intent_id: str
    """The idempotency key of the alert that opened the episode: one episode, one id."""
    alert: Alert
    """The alert being called about."""
    customer: Customer
    """Who to call."""
    priority: Priority
    """Queue order and routing priority."""
    enqueued_at: float
    """When it entered the dialer's queue, epoch seconds."""
    facts: tuple[tuple[str, Any], ...] = ()
    """The compliance facts the call was allowed on (zone, local time, rule), for the record."""
    not_before: float = 0.0
    """The pending delay: not dialed before this (epoch seconds), so a resolve can cancel it."""
    attempt: int = 1
    """Which call of the alert's re-attempt ladder this is: 1 opens the record's outcome,
    each later one is a new attempt of a `called` record (actors/dialing/follow.py)."""
    contact: str = ""
    """Whom a re-attempt calls (the contact's name), for the record and the agent."""
    scheduled_for: float = 0.0
    """A callback scheduled for this time (epoch seconds), outside the calling window now:
    placed at once, worked by the contact center then ([comply] blocked_action)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskIntent:
    """A call is not allowed (or failed ambiguously): raise a task for a person instead."""

    alert: Alert
    """The alert the task is about."""
    reason: Reason
    """Why no call: the deferred reason."""
    due: float
    """When the task is due, epoch seconds."""
    detail: str = ""
    """Human-readable detail for the task description and record."""
    facts: tuple[tuple[str, Any], ...] = ()
    """Decision facts to keep on the record (key, value)."""
    outcome: Outcome = Outcome.DEFERRED
    """The alert's outcome: deferred (no call, a task instead), or suppressed for the
    maintenance task of a flap episode (suppressed/flapping)."""

    @property
    def priority(self) -> Priority:
        """A task queues at its alert's priority."""
        return self.alert.priority


@dataclass(frozen=True, slots=True, kw_only=True)
class SensorResolved:
    """A sensor reported resolved: its waiting non-critical calls are cancelled (to the dialer)."""

    sensor_id: str
    """The sensor that resolved."""
    idempotency_key: str
    """The resolved alert's key (named on the cancelled records)."""
    timestamp: float
    """The sensor's time of the resolve: alerts raised before it are cleared by it."""
    customer_id: str = ""
    """The sensor's customer (the resolve is remembered under the customer's hash tag)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetIncident:
    """A shard saw the fleet incident start or end (to the dialer)."""

    active: bool
    """Whether an incident is open."""
    since: float
    """When it started (epoch seconds; 0 when none is open)."""
    sensors: int
    """Distinct sensors that fired inside the window at the last count."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishEvent:
    """A service event for the events topic (to the MQTT subscriber, which owns the client)."""

    payload: bytes
    """The event document, JSON."""


@dataclass(frozen=True, slots=True)
class ControlsChanged:
    """What operators set changed (the dialing pause): the dialer looks again at once.

    The pause itself is read from the shared controls (tripline/service/controls.py), so that it
    holds on every instance and across a restart of the dialer or the process.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkBatch:
    """The enricher's verdicts for one batch: dial intents and tasks, in alert order."""

    works: tuple[DialIntent | TaskIntent, ...]
    """One per alert."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    """Asked by the supervisor: every actor answers True, once on_start has succeeded.

    It waits in the inbox like any message, so its answer also means that what was told before
    it has been handled (the supervisor's drain at shutdown).
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionQuery:
    """Asked by /readyz and the gauges: the subscriber answers whether the broker is connected."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EntityCountQuery:
    """Asked by /status: a shard answers how many sensor entities it holds in memory."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotTick:
    """Periodic: snapshot dirty entities and passivate idle ones."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PumpTick:
    """Dialer: budget refilled or pause over; try to dispatch."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DialFinished:
    """A dial or task attempt came back from the backend (told by the dialer's loop)."""

    intent_id: str
    """Which intent finished."""
    priority: Priority
    """Its priority (frees its concurrency slot)."""
    retry_after: float | None = None
    """Set when the backend answered 429: pause for this many seconds and requeue."""
    requeue: DialIntent | TaskIntent | None = None
    """Work to put back in the queue (429 or an unsent request)."""
    backend_ok: bool | None = None
    """For the breaker: True when the backend answered, False when it could not be reached."""
    slot: bool = True
    """Whether the work held a concurrency slot (batched campaign work does not)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Withdrawn:
    """Queued calls that joined another alert's call (told by the dialer's loop): drop them."""

    keys: tuple[str, ...]
    """Idempotency keys of the withdrawn work."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AdoptQueue:
    """Take over a lapsed instance's queued work (asked by the takeover): answers how much."""

    queue_key: str
    """The dead instance's persisted dial queue."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EndSession:
    """End a taken-over broker session once quiet (asked by the takeover): True when ended."""

    quiet: float
    """Seconds without a message that mean the session holds nothing more."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OccupancyObserved:
    """The dialer's loop polled the contact center's queue occupancy."""

    occupancy: Any
    """A pipeline.govern.Occupancy (typed Any to keep messages free of pipeline imports)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusQuery:
    """Asked by the status endpoint: answer with a JSON-ready dict."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Drain:
    """Asked at shutdown: answer when no work is queued or in flight."""
