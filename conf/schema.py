"""Configuration: one frozen dataclass per section, loaded from TOML with every problem at once."""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, get_type_hints

from tripline.conf.redis_topology import Topology, topology
from tripline.conf.redis_topology import problems as topology_problems
from tripline.pipeline.caps import parse_cap

PRIORITY_NAMES = ("critical", "high", "normal", "low")
BACKENDS = ("genesys", "genesys_campaign", "cxone", "twilio", "log")
ENV_PREFIX = "TRIPLINE__"


def _f(default: Any, *, doc: str = "", secret: bool = False, **rules: Any) -> Any:  # noqa: ANN401
    """Declare a field with its constraints next to it (min, max, choices) and a doc line."""
    meta = {"doc": doc, "secret": secret, **rules}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttConfig:
    """The broker tripline subscribes to."""

    host: str = _f("127.0.0.1", doc="Broker host.")
    port: int = _f(1883, min=1, max=65535, doc="Broker port.")
    client_id: str = _f("tripline-1", doc="Unique per instance: keys the persistent session.")
    topic: str = _f("sensors/+/alerts", doc="Topic filter for alerts.")
    shared_group: str = _f("", doc="MQTT 5 shared-subscription group; empty for none.")
    critical_topic: str = _f(
        "",
        doc="A topic filter for critical alerts, read through a session of its own (client id "
        "+ '-critical'): a backlog in the main session's queue does not hold them back; empty: "
        "none. It must not overlap `topic`.",
    )
    qos: int = _f(1, choices=(1, 2), doc="Subscription QoS.")
    session_expiry_seconds: int = _f(86400, min=0, doc="Persistent session lifetime.")
    keepalive_seconds: int = _f(30, min=5, max=3600, doc="MQTT keepalive.")
    receive_maximum: int = _f(1000, min=1, max=65535, doc="Unacked alerts in flight to us.")
    batch_linger_ms: float = _f(
        25.0,
        min=0,
        max=1000,
        doc="Under load, alerts are recorded together at most this often (0: never wait).",
    )
    rejected_topic: str = _f("tripline/rejected", doc="Where rejected payloads are reported.")
    events_topic: str = _f("tripline/events", doc="Where service events are published.")
    username: str = _f("", doc="Broker username; empty for anonymous.")
    password: str = _f("", secret=True, doc="Broker password (environment only).")
    tls: bool = _f(default=False, doc="Connect with TLS.")
    ca_file: str = _f("", doc="CA bundle for TLS; empty for the system store.")
    cert_file: str = _f("", doc="Client certificate (PEM) for brokers that require one.")
    key_file: str = _f("", doc="The client certificate's private key (PEM).")


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisConfig:
    """The Redis that holds records, claims and snapshots."""

    url: str = _f(
        "redis://127.0.0.1:6379/0",
        doc="Redis URL: redis://, rediss:// (TLS), unix://; a cluster's as "
        "redis+cluster://host:port,host:port. With sentinels: only its scheme, credentials and "
        "database are used (docs/deployment.md, 'Redis topologies').",
    )
    cluster: bool = _f(
        default=False,
        doc="The url names a node of a Redis Cluster (a redis+cluster:// url says so by itself).",
    )
    sentinels: list[str] = _f(
        [],
        doc="Sentinels (host:port each) to ask for the primary of master_name; empty: no Sentinel.",
    )
    master_name: str = _f("", doc="The name the sentinels monitor (required with sentinels).")
    sentinel_password: str = _f(
        "", secret=True, doc="Password of the sentinels themselves, if they require one."
    )
    wait_replicas: int = _f(
        0,
        min=0,
        max=16,
        doc="Replicas that must have each batch of writes (Redis WAIT) before tripline acts on "
        "it, an alert's acknowledgement included: a failover then loses nothing acknowledged. "
        "0: the primary's word is enough (asynchronous replication).",
    )
    wait_timeout_ms: int = _f(
        1000,
        min=10,
        max=4000,  # under the 5 s tripline gives a reply
        doc="How long a batch waits for wait_replicas; short of them it counts as Redis "
        "unavailable (retried; nothing acknowledged).",
    )
    key_prefix: str = _f("tl", doc="Prefix of every key (isolates deployments and tests).")
    record_ttl_seconds: int = _f(
        86400,
        min=3600,
        doc="How long records and context live past their last obligation (a task's due time, "
        "the re-attempts' end); a record is the key's claim.",
    )

    def topology(self) -> Topology:
        """Where the Redis is (one server, Sentinel, a cluster); load() checked it can be read."""
        return topology(
            self.url, cluster=self.cluster, sentinels=self.sentinels, master_name=self.master_name
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpConfig:
    """The supervisor's HTTP server: webhook, records, status."""

    host: str = _f("127.0.0.1", doc="Bind address.")
    port: int = _f(8080, min=0, max=65535, doc="Bind port (0 picks a free one).")
    max_body_bytes: int = _f(65536, min=1024, max=1048576, doc="Largest accepted body.")
    webhook_token: str = _f("", secret=True, doc="Bearer token for POST /v1/alerts.")
    webhook_hmac_secret: str = _f(
        "", secret=True, doc="HMAC-SHA256 secret for signed webhooks (X-Tripline-Signature)."
    )
    webhook_max_skew_seconds: int = _f(
        300, min=1, max=3600, doc="Replay window: a signed webhook's timestamp must be this fresh."
    )
    route_linger_ms: float = _f(
        50.0,
        min=0,
        max=1000,
        doc="Under load, accepted webhook alerts are handed on together at most this often "
        "(0: each at once); a critical alert never waits.",
    )
    handoff: bool = _f(
        default=True,
        doc="A busy webhook door hands the non-critical alerts it accepted to whichever worker "
        "or instance has an idle door (a Redis list), which decides them; critical alerts are "
        "always decided where they were accepted.",
    )
    handoff_max_wait_ms: float = _f(
        250.0,
        min=1,
        max=10000,
        doc="A handed-off alert waits at most about this long for an idle door: then a busy "
        "one takes it too.",
    )
    context_token: str = _f("", secret=True, doc="Bearer token for GET /v1/context.")
    admin_token: str = _f("", secret=True, doc="Bearer token for /v1/admin (unset: closed).")
    admin_tokens: dict[str, str] = _f(
        {},
        secret=True,
        doc="Named admin tokens (name -> token), each as good as admin_token: the ledger "
        "records the name as who acted (admin_token acts as 'admin').",
    )
    read_token: str = _f(
        "",
        secret=True,
        doc="Bearer token for /status, GET /v1/alerts/{key} and the dashboard (unset: open; "
        "set it unless the service is bound to loopback).",
    )
    allowed_origins: list[str] = _f(
        [],
        doc="Browser origins (scheme://host[:port]) besides the service's own that may send "
        "POST, PUT and DELETE requests; any other Origin is refused.",
    )
    frame_ancestors: list[str] = _f(
        [],
        doc="Who may frame the agent page: origins (https://desk.example.com, "
        "https://*.example.com), 'self' or 'none'; empty: any page (the page is read-only).",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidateConfig:
    """Payload validation limits."""

    max_future_skew_seconds: int = _f(300, min=0, doc="Largest accepted clock skew ahead.")
    max_string_length: int = _f(128, min=8, max=255, doc="Longest identifier accepted.")
    max_age_seconds: int = _f(
        86400, min=60, max=30 * 86400, doc="Oldest accepted alert timestamp (older: invalid)."
    )
    max_depth: int = _f(
        32, min=4, max=200, doc="Deepest nesting of arrays and objects accepted in a payload."
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SensorConfig:
    """Sensor entities and their shards."""

    shards: int = _f(
        1,
        min=1,
        max=16,
        doc="Shard actors hosting sensor entities; 2-4 with Redis across a network.",
    )
    cooldown_seconds: int = _f(3600, min=0, doc="At most one call per sensor per window.")
    snapshot_interval_seconds: float = _f(
        5.0,
        min=0.1,
        doc="How often state changed between alerts (flapping sensors' silent samples) is saved; "
        "an alert batch saves what it changed in its own round trip.",
    )
    passivate_after_seconds: float = _f(900, min=1, doc="Idle entities leave memory after it.")
    max_entities: int = _f(200000, min=100, doc="Entities held in memory, all shards.")
    flap_high_percent: float = _f(
        30.0, min=0.1, max=100.0, doc="Flapping starts at this weighted state change (Nagios)."
    )
    flap_low_percent: float = _f(
        20.0, min=0.0, max=100.0, doc="Flapping stops at or below it; must be below the high one."
    )
    flap_sample_seconds: float = _f(
        60.0, min=1.0, doc="Silence this long counts as one unchanged flap sample."
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class CrmConfig:
    """The CRM that knows customers' phones and time zones."""

    base_url: str = _f("http://127.0.0.1:8090", doc="CRM base URL.")
    timeout_seconds: float = _f(2.0, min=0.05, max=30, doc="Per-request timeout.")
    cache_ttl_seconds: int = _f(86400, min=60, doc="How long a profile stays cached.")
    breaker_threshold: int = _f(5, min=1, doc="Failures in a row that open the CRM breaker.")
    breaker_cool_off_seconds: float = _f(30.0, min=0.1, doc="Open breaker: wait before a probe.")
    sync_interval_seconds: float = _f(3600.0, min=0, doc="Cache prefetch period; 0 turns it off.")
    max_profile_age_seconds: float = _f(
        300.0,
        min=0.0,
        doc="The do-not-call, do-not-disturb and consent flags a call is placed on are at most "
        "this old: an older profile is read from the CRM at the moment of dialing (0: always).",
    )
    token: str = _f("", secret=True, doc="Bearer token for the CRM.")


@dataclass(frozen=True, slots=True, kw_only=True)
class PrioritiesConfig:
    """How an alert's type and severity map to a dial priority."""

    default: str = _f("normal", choices=PRIORITY_NAMES, doc="Priority of unmapped alerts.")
    alert_types: dict[str, str] = _f({}, values=PRIORITY_NAMES, doc="alertType -> priority.")
    severities: dict[str, str] = _f({}, values=PRIORITY_NAMES, doc="severity -> priority.")
    routing: dict[str, int] = _f({}, keys=PRIORITY_NAMES, doc="priority -> routing priority.")


@dataclass(frozen=True, slots=True, kw_only=True)
class DialerConfig:
    """The one rate-governed dialer."""

    backend: str = _f("genesys", choices=BACKENDS, doc="Where calls go (every priority).")
    backends: dict[str, str] = _f(
        {}, keys=PRIORITY_NAMES, values=BACKENDS, doc="Per-priority override of backend."
    )
    occupancy_source: str = _f(
        "auto",
        choices=("auto", "genesys", "cxone", "none"),
        doc="Where queue occupancy is polled; auto follows the critical backend.",
    )
    occupancy_poll_seconds: float = _f(5.0, min=0.5, doc="How often occupancy is polled.")
    occupancy_threshold: float = _f(0.8, min=0.0, max=1.0, doc="Above it normal/low work waits.")
    saturation_threshold: float = _f(0.95, min=0.0, max=1.0, doc="Above it low work -> tasks.")
    aging_seconds: float = _f(300.0, min=1.0, doc="Waiting this long lifts work one level.")
    max_age_seconds: dict[str, int] = _f(
        {}, keys=PRIORITY_NAMES, doc="Work older than this becomes a task (deferred/stale)."
    )
    max_alert_age_seconds: dict[str, int] = _f(
        {},
        keys=PRIORITY_NAMES,
        min=60,
        doc="An alert older than this by its sensor's timestamp rings nobody: it becomes a task "
        "(deferred/stale); a priority left out: no limit.",
    )
    breaker_threshold: int = _f(5, min=1, doc="Failed sends in a row that open the breaker.")
    breaker_cool_off_seconds: float = _f(30.0, min=0.1, doc="Open breaker: wait before a probe.")
    campaign_batch_size: int = _f(50, min=1, max=1000, doc="Contacts per campaign append.")
    campaign_batch_seconds: float = _f(2.0, min=0.01, doc="Longest a contact waits for a batch.")
    rate_per_minute: int = _f(240, min=1, max=1_000_000, doc="Contact-center requests per minute.")
    burst: int = _f(10, min=1, doc="Requests allowed back to back.")
    critical_reserve: int = _f(
        2,
        min=0,
        doc="Requests of the burst only critical calls may take (at most burst - 1): in a "
        "storm the rest of the work leaves them that much room (the rate stays rate_per_minute).",
    )
    max_concurrency: int = _f(4, min=1, max=256, doc="Calls in flight.")
    critical_concurrency: int = _f(
        2, min=1, max=256, doc="Critical calls in flight: their own cap, beside max_concurrency."
    )
    connect_timeout_seconds: float = _f(2.0, min=0.05, doc="TCP connect timeout.")
    request_timeout_seconds: float = _f(10.0, min=0.1, doc="Whole-request timeout.")
    max_retries: int = _f(5, min=0, max=50, doc="Retries of provably unsent requests.")
    backoff_base_seconds: float = _f(0.5, min=0.0, doc="First retry delay.")
    backoff_max_seconds: float = _f(30.0, min=0.0, doc="Longest retry delay.")
    pending_seconds: dict[str, float] = _f(
        {},
        keys=PRIORITY_NAMES,
        doc="Wait before dialing, per priority: a resolve inside it cancels (critical never).",
    )
    group_window_seconds: float = _f(
        60.0, min=0.0, doc="Alerts of one customer inside it share one call; 0 turns it off."
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TasksConfig:
    """Where deferred alerts become tasks for a person."""

    backend: str = _f("genesys", choices=("genesys", "log"), doc="Task backend.")
    due_hour: int = _f(9, min=0, max=23, doc="Local hour a next-business-day task is due.")


@dataclass(frozen=True, slots=True, kw_only=True)
class GenesysConfig:
    """Genesys Cloud: OAuth client credentials, queue, script and task targets."""

    base_url: str = _f("http://127.0.0.1:8090", doc="API host, e.g. https://api.mypurecloud.com.")
    login_url: str = _f("http://127.0.0.1:8090", doc="Login host for /oauth/token.")
    client_id: str = _f("tripline-demo", doc="OAuth client id.")
    client_secret: str = _f("", secret=True, doc="OAuth client secret (environment only).")
    queue_id: str = _f("", doc="Queue the callbacks are routed to.")
    script_id: str = _f("", doc="Agent script shown with the callback.")
    caller_id: str = _f("", doc="E.164 number the customer sees.")
    caller_id_name: str = _f("", doc="Name the customer sees.")
    workitem_type_id: str = _f("", doc="Task Management worktype for deferred alerts.")
    workbin_id: str = _f("", doc="Workbin for deferred alerts.")
    contact_list_id: str = _f("", doc="Contact list of the always-running Power campaign.")


@dataclass(frozen=True, slots=True, kw_only=True)
class CxoneConfig:
    """NICE CXone: access-key OAuth with API discovery, Studio script spawn, skill activity."""

    discovery_url: str = _f("https://cxone.niceincontact.com", doc="Discovery host.")
    access_key_id: str = _f("", doc="Access key id (the OAuth username).")
    access_key_secret: str = _f("", secret=True, doc="Access key secret (environment only).")
    client_id: str = _f("", doc="Registered application's client id.")
    client_secret: str = _f("", secret=True, doc="Application client secret (environment only).")
    api_version: str = _f("v26.0", doc="Admin API version in the path.")
    script_id: str = _f("", doc="Studio script that places the call.")
    skill_id: str = _f("", doc="Skill the call is queued to (and occupancy is read from).")


@dataclass(frozen=True, slots=True, kw_only=True)
class TwilioConfig:
    """Twilio Programmable Voice, the generic fallback."""

    base_url: str = _f("https://api.twilio.com", doc="API host.")
    account_sid: str = _f("", doc="Account SID.")
    auth_token: str = _f("", secret=True, doc="Auth token (environment only).")
    from_number: str = _f("", doc="Twilio or verified number, E.164.")
    twiml_url: str = _f("", doc="TwiML that bridges the call; ?referenceId= is appended.")


@dataclass(frozen=True, slots=True, kw_only=True)
class ComplyConfig:
    """Compliance: calling windows, safety overrides, caps."""

    rules_file: str = _f(
        "", doc="Calling-rules TOML; empty for the shipped conf/calling-rules.toml."
    )
    safety_override_alert_types: list[str] = _f(
        [], doc="Alert types that may call outside the calling window (never past DNC/DND)."
    )
    number_caps: list[str] = _f(
        ["3/24h"], pattern="caps", doc="Calls per phone number, e.g. 3/24h."
    )
    customer_caps: list[str] = _f(
        ["5/24h"], pattern="caps", doc="Calls per customer over windows, e.g. 2/1h."
    )
    blocked_action: dict[str, str] = _f(
        {"critical": "task", "high": "task", "normal": "task", "low": "task"},
        keys=PRIORITY_NAMES,
        values=("task", "scheduled_callback"),
        doc="Outside the calling window: a task, or a Genesys callback scheduled at the next"
        " allowed local time (re-checked before it is due).",
    )
    scheduled_recheck_seconds: float = _f(
        600.0, min=0.0, doc="How long before a scheduled callback is due it is checked again."
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class OutcomesConfig:
    """Learning what became of each placed call (docs/operations.md "Results and the ladder")."""

    result_timeout_seconds: float = _f(
        1800.0, min=1.0, doc="No result this long after a call was placed: unknown, with a task."
    )
    poll_seconds: float = _f(
        60.0, min=0.1, doc="How often pending calls' results are asked for (batched)."
    )
    wrapup_reached: list[str] = _f([], doc="Wrap-up codes meaning the customer was reached.")
    wrapup_not_reached: list[str] = _f([], doc="Wrap-up codes meaning they were not.")
    wrapup_wrong_number: list[str] = _f([], doc="Wrap-up codes meaning a wrong number.")
    wrapup_do_not_call: list[str] = _f(
        [], doc="Wrap-up codes meaning 'do not call': the number joins the do-not-call list."
    )
    twilio_status_url: str = _f(
        "",
        doc="Public URL of POST /v1/providers/twilio/status as Twilio calls it (signed over it);"
        " empty: Twilio results are polled.",
    )
    twilio_machine_detection: str = _f(
        "Enable",
        choices=("", "Enable", "DetectMessageEnd"),
        doc="Twilio answering-machine detection (a machine is not a reached customer).",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ReachConfig:
    """The re-attempt ladder: per priority, across the customer's contacts."""

    max_attempts: dict[str, int] = _f(
        {"critical": 4, "high": 3, "normal": 1, "low": 1},
        keys=PRIORITY_NAMES,
        min=1,
        max=20,
        doc="Calls per alert at most, first one included.",
    )
    retry_after_seconds: dict[str, float] = _f(
        {"critical": 300.0, "high": 600.0, "normal": 900.0, "low": 900.0},
        keys=PRIORITY_NAMES,
        min=0,
        doc="Wait after a call that did not reach anyone before the next attempt.",
    )
    attempts_per_contact: dict[str, int] = _f(
        {"critical": 2, "high": 1, "normal": 1, "low": 1},
        keys=PRIORITY_NAMES,
        min=1,
        max=20,
        doc="Attempts each contact gets before the ladder moves to the next one.",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetConfig:
    """Mass failure: many distinct sensors alerting at once is one fleet incident."""

    incident_sensors: int = _f(
        1000, min=1, doc="More distinct firing sensors than this inside the window: an incident."
    )
    window_seconds: float = _f(60.0, min=1.0, doc="The window the distinct sensors are counted in.")
    clear_ratio: float = _f(
        0.5, min=0.0, max=1.0, doc="The incident ends at incident_sensors x clear_ratio or fewer."
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusConfig:
    """Supervision and status."""

    restart_budget: int = _f(5, min=0, doc="Restarts per actor per window.")
    restart_window_seconds: float = _f(300, min=1, doc="The restart budget's window.")
    sweep_interval_seconds: float = _f(10.0, min=0.5, doc="How often unfinished work is swept.")
    sweep_accepted_grace_seconds: float = _f(
        30.0, min=1.0, doc="An alert still 'accepted' after this is re-routed by the sweep."
    )
    quarantine_after_attempts: int = _f(
        3, min=1, max=100, doc="A message or record failing this often goes to the dead-letter."
    )
    dead_letter_max_entries: int = _f(
        10000, min=100, max=10_000_000, doc="Entries the dead-letter stream keeps (newest)."
    )
    takeover_after_seconds: float = _f(
        30.0,
        min=3.0,
        max=86400.0,
        doc="An instance whose lease was not renewed for this long is presumed dead: one "
        "survivor adopts its broker sessions, queued calls and unfinished alerts.",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceConfig:
    """The processes of one `tripline run`."""

    workers: int = _f(
        0,
        min=0,
        max=256,
        doc="Worker processes, each a whole service sharing the MQTT group and the HTTP port "
        "(0: one per usable core; `tripline run --workers N` overrides it).",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerConfig:
    """The compliance ledger: every decision, attempt and operator action, kept for years."""

    enabled: bool = _f(
        default=True,
        doc="Append every decision, call attempt, task and operator action to the ledger.",
    )
    url: str = _f(
        "",
        secret=True,
        doc="PostgreSQL URL (postgresql://user@host/db) of the ledger; empty: NDJSON files "
        "under `path` (an edge gateway).",
    )
    path: str = _f(
        "/var/lib/tripline/ledger",
        doc="The NDJSON ledger's directory (when `url` is empty): one file per UTC day.",
    )
    retention_days: int = _f(
        1825, min=1, max=36500, doc="How long entries are kept (TCPA claims: four years)."
    )
    phone_hash_key: str = _f(
        "",
        secret=True,
        doc="HMAC-SHA256 key of the phone numbers' lookup hashes (environment only; unset: "
        "a key derived from the key prefix, which anyone can recompute).",
    )
    batch_size: int = _f(500, min=1, max=10000, doc="Entries written to the store at once.")
    lag_alarm_seconds: float = _f(
        300.0,
        min=1.0,
        doc="/healthz reports the ledger degraded when its oldest unwritten entry is older.",
    )
    file_max_bytes: int = _f(
        256 * 1024 * 1024,
        min=4096,
        doc="An NDJSON file past this size is closed and the day continues in the next one.",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole configuration; each actor receives only its own section."""

    mqtt: MqttConfig
    redis: RedisConfig
    http: HttpConfig
    validate: ValidateConfig
    sensor: SensorConfig
    crm: CrmConfig
    priorities: PrioritiesConfig
    dialer: DialerConfig
    tasks: TasksConfig
    comply: ComplyConfig
    fleet: FleetConfig
    genesys: GenesysConfig
    cxone: CxoneConfig
    twilio: TwilioConfig
    status: StatusConfig
    outcomes: OutcomesConfig
    reach: ReachConfig
    service: ServiceConfig
    ledger: LedgerConfig


class ConfigError(Exception):
    """The configuration has problems; `problems` lists every one of them."""

    def __init__(self, problems: list[str]) -> None:
        """Keep every problem so they can be printed at once."""
        super().__init__("\n".join(problems))
        self.problems = problems


_SECTIONS: dict[str, type[Any]] = {
    f.name: get_type_hints(Config)[f.name] for f in dataclasses.fields(Config)
}


def load(path: str | Path | None = None, env: dict[str, str] | None = None) -> Config:
    """Load the defaults, then `path`, then environment overrides; validate everything.

    Args:
        path: an optional TOML file overriding the defaults.
        env: the environment to read TRIPLINE__SECTION__KEY from (os.environ by default).

    Returns:
        The validated configuration.

    Raises:
        ConfigError: listing every problem found, unknown keys included.
    """
    problems: list[str] = []
    raw = tomllib.loads(
        resources.files("tripline.conf").joinpath("default.toml").read_text("utf-8")
    )
    if path is not None:
        try:
            user = tomllib.loads(Path(path).read_text("utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError([f"{path}: {exc}"]) from exc
        _merge(raw, user, problems, secrets_forbidden=True, origin=str(path))
    _merge(
        raw,
        _from_env(os.environ if env is None else env, problems),
        problems,
        secrets_forbidden=False,
        origin="environment",
    )
    sections = {
        name: _build(name, cls, raw.get(name, {}), problems) for name, cls in _SECTIONS.items()
    }
    if not problems:
        problems += _cross_checks(sections)
    if problems:
        raise ConfigError(problems)
    return Config(**sections)


def _cross_checks(sections: dict[str, Any]) -> list[str]:
    """Rules that tie two fields together."""
    problems = []
    sensor, dialer = sections["sensor"], sections["dialer"]
    if sensor.flap_low_percent >= sensor.flap_high_percent:
        problems.append(
            "sensor.flap_low_percent must be below sensor.flap_high_percent "
            f"(got {sensor.flap_low_percent:g} >= {sensor.flap_high_percent:g}): "
            "the dead band between them is what stops a sensor flapping in and out"
        )
    mqtt = sections["mqtt"]
    if (mqtt.cert_file or mqtt.key_file or mqtt.ca_file) and not mqtt.tls:
        problems.append("mqtt.ca_file, cert_file and key_file need mqtt.tls = true")
    if bool(mqtt.cert_file) != bool(mqtt.key_file):
        problems.append("mqtt.cert_file and mqtt.key_file go together: set both or neither")
    if dialer.saturation_threshold < dialer.occupancy_threshold:
        problems.append(
            "dialer.saturation_threshold must not be below dialer.occupancy_threshold "
            f"(got {dialer.saturation_threshold:g} < {dialer.occupancy_threshold:g})"
        )
    return problems


def masked(config: Config) -> dict[str, dict[str, Any]]:
    """Return the configuration as plain data with every secret replaced by '********'."""
    out: dict[str, dict[str, Any]] = {}
    for name in _SECTIONS:
        section = getattr(config, name)
        out[name] = {
            f.name: (
                "********"
                if f.metadata.get("secret") and getattr(section, f.name)
                else getattr(section, f.name)
            )
            for f in dataclasses.fields(section)
        }
    return out


def _from_env(env: dict[str, str] | os._Environ[str], problems: list[str]) -> dict[str, Any]:
    """Read TRIPLINE__SECTION__KEY variables; values parse as TOML literals, else as strings."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) != 2:
            problems.append(f"{name}: expected {ENV_PREFIX}SECTION__KEY")
            continue
        try:
            parsed: Any = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = value
        out.setdefault(parts[0], {})[parts[1]] = parsed
    return out


def _merge(
    base: dict[str, Any],
    over: dict[str, Any],
    problems: list[str],
    *,
    secrets_forbidden: bool,
    origin: str,
) -> None:
    for section, values in over.items():
        if section not in _SECTIONS:
            problems.append(f"{origin}: unknown section [{section}]{_hint(section, _SECTIONS)}")
            continue
        if not isinstance(values, dict):
            problems.append(f"{origin}: [{section}] must be a table")
            continue
        fields = {f.name: f for f in dataclasses.fields(_SECTIONS[section])}
        for key, value in values.items():
            if key not in fields:
                problems.append(f"{origin}: {section}.{key}: unknown key{_hint(key, fields)}")
                continue
            if secrets_forbidden and fields[key].metadata.get("secret"):
                env_name = f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
                problems.append(f"{origin}: {section}.{key} is a secret: set {env_name} instead")
                continue
            base.setdefault(section, {})[key] = value


def _hint(word: str, choices: Any) -> str:  # noqa: ANN401
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _build(name: str, cls: type[Any], values: dict[str, Any], problems: list[str]) -> Any:  # noqa: ANN401
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        value = values[f.name]
        error = _check(hints[f.name], value, f.metadata)
        if error:
            problems.append(f"{name}.{f.name}: {error} (got {value!r})")
        else:
            kwargs[f.name] = float(value) if hints[f.name] is float else value
    for check in _CROSS_CHECKS.get(name, ()):
        problems.extend(f"{name}.{p}" for p in check(kwargs))
    try:
        return cls(**kwargs)
    except TypeError as exc:  # only reachable with problems already recorded
        problems.append(f"{name}: {exc}")
        return None


def _check(kind: Any, value: Any, meta: Any) -> str | None:  # noqa: ANN401, PLR0911
    if kind in (dict[str, str], dict[str, int], dict[str, float]):
        return _check_mapping(kind, value, meta)
    if kind == list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return "must be a list of strings"
        if meta.get("pattern") == "caps" and any(parse_cap(v) is None for v in value):
            return "every cap must read like 3/24h (calls/window in s, m, h or d)"
        return None
    type_error = _check_type(kind, value)
    if type_error:
        return type_error
    if "min" in meta and value < meta["min"]:
        return f"must be at least {meta['min']}"
    if "max" in meta and value > meta["max"]:
        return f"must be at most {meta['max']}"
    if "choices" in meta and value not in meta["choices"]:
        return f"must be one of {', '.join(map(str, meta['choices']))}"
    return None


def _check_type(kind: Any, value: Any) -> str | None:  # noqa: ANN401
    numeric = not isinstance(value, bool) and isinstance(value, int | float)
    if kind is bool and not isinstance(value, bool):
        return "must be true or false"
    if kind is int and not (numeric and isinstance(value, int)):
        return "must be an integer"
    if kind is float and not (numeric and math.isfinite(value)):
        return "must be a number"
    if kind is str and not isinstance(value, str):
        return "must be a string"
    return None


def _check_mapping(kind: Any, value: Any, meta: Any) -> str | None:  # noqa: ANN401
    if not isinstance(value, dict):
        return "must be a table"
    want: tuple[type, ...] = {
        dict[str, str]: (str,),
        dict[str, int]: (int,),
        dict[str, float]: (int, float),
    }[kind]
    for key, item in value.items():
        if "keys" in meta and key not in meta["keys"]:
            return f"key '{key}' must be one of {', '.join(meta['keys'])}"
        problem = _check_item(want, item, meta)
        if problem:
            return f"value of '{key}' {problem}"
    return None


def _check_item(want: tuple[type, ...], item: Any, meta: Any) -> str | None:  # noqa: ANN401
    if not isinstance(item, want) or isinstance(item, bool):
        return f"must be a {'number' if float in want else want[0].__name__}"
    if isinstance(item, float) and not math.isfinite(item):
        return "must be a finite number"
    if "values" in meta and item not in meta["values"]:
        return f"must be one of {', '.join(meta['values'])}"
    if "min" in meta and item < meta["min"]:
        return f"must be at least {meta['min']}"
    if "max" in meta and item > meta["max"]:
        return f"must be at most {meta['max']}"
    return None


def _check_comply(values: dict[str, Any]) -> list[str]:
    path = values.get("rules_file", "")
    if path and not Path(path).is_file():
        return [f"rules_file: {path} is not a readable file"]
    return []


def _check_priorities(values: dict[str, Any]) -> list[str]:
    missing = [p for p in PRIORITY_NAMES if p not in values.get("routing", {})]
    return [f"routing: missing {', '.join(missing)}"] if missing else []


def _check_dialer(values: dict[str, Any]) -> list[str]:
    if values.get("backoff_base_seconds", 0.5) > values.get("backoff_max_seconds", 30.0):
        return ["backoff_base_seconds: must not exceed backoff_max_seconds"]
    return []


# An origin as a browser sends it: scheme, host, optional port; no path, no trailing slash.
_HOST = r"([a-z0-9.-]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?"  # a name or an address, [IPv6] too
_ORIGIN = re.compile(rf"https?://{_HOST}", re.IGNORECASE)
# A CSP host-source for frame-ancestors; a leading *. allows the subdomains. Nothing here can
# end the directive (no ';' or ',' or space), so a value cannot inject another one.
_FRAME_SOURCE = re.compile(rf"https?://(\*\.)?{_HOST}", re.IGNORECASE)
# Tokens travel in an Authorization header (and a browser refuses other characters there).
_TOKEN = re.compile(r"[!-~]+")


def _quoted(values: list[str]) -> str:
    return ", ".join(f'"{v}"' for v in values)


def _check_http(values: dict[str, Any]) -> list[str]:
    problems = [
        f"{name}: must be printable ASCII without spaces"
        for name in ("webhook_token", "context_token", "admin_token", "read_token")
        if values.get(name) and not _TOKEN.fullmatch(values[name])
    ]
    bad = [o for o in values.get("allowed_origins", []) if not _ORIGIN.fullmatch(o)]
    if bad:
        problems.append(
            f"allowed_origins: {_quoted(bad)} not an origin like "
            "https://desk.example.com or http://10.0.0.5:8080 (no path, no trailing slash)"
        )
    ancestors = values.get("frame_ancestors", [])
    bad = [a for a in ancestors if a not in ("'self'", "'none'") and not _FRAME_SOURCE.fullmatch(a)]
    if bad:
        problems.append(
            f"frame_ancestors: {_quoted(bad)} not 'self', 'none' (with the single quotes) or "
            "an origin like https://desk.example.com or https://*.example.com"
        )
    if "'none'" in ancestors and len(ancestors) > 1:
        problems.append("frame_ancestors: 'none' stands alone")
    return problems


def _check_mqtt(values: dict[str, Any]) -> list[str]:
    critical, topic = values.get("critical_topic", ""), values.get("topic", "sensors/+/alerts")
    if not critical:
        return []
    if not _topic_filter(critical):
        return [f"critical_topic: {critical!r} is not an MQTT topic filter"]
    if _filters_overlap(critical, topic):
        # An alert published on both would be read twice (a duplicate, but the backlog's wait
        # too): the lane must be a topic of its own.
        return [f"critical_topic: {critical!r} overlaps topic {topic!r}: no topic may match both"]
    return []


def _topic_filter(text: str) -> bool:
    levels = text.split("/")
    return (
        not text.startswith("$")
        and all(("+" not in lv and "#" not in lv) or lv in ("+", "#") for lv in levels)
        and "#" not in levels[:-1]
    )


def _filters_overlap(a: str, b: str) -> bool:
    """Whether some topic matches both filters."""
    left, right = a.split("/"), b.split("/")
    for x, y in zip(left, right, strict=False):
        if "#" in (x, y):
            return True
        if x != y and "+" not in (x, y):
            return False
    if len(left) == len(right):
        return True
    longer = left if len(left) > len(right) else right
    return longer[min(len(left), len(right))] == "#"  # "a/#" matches "a" too


def _check_redis(values: dict[str, Any]) -> list[str]:
    problems = topology_problems(
        values.get("url", "redis://127.0.0.1:6379/0"),
        cluster=values.get("cluster", False),
        sentinels=values.get("sentinels", []),
        master_name=values.get("master_name", ""),
    )
    prefix = values.get("key_prefix", "tl")
    if not prefix or any(c in prefix for c in "{}: "):
        problems.append("key_prefix: must be non-empty, without braces, colons or spaces")
    return problems


_CROSS_CHECKS = {
    "mqtt": (_check_mqtt,),
    "dialer": (_check_dialer,),
    "redis": (_check_redis,),
    "http": (_check_http,),
    "comply": (_check_comply,),
    "priorities": (_check_priorities,),
}
