"""Builds the backends the config asks for: per priority, for tasks, and for occupancy."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tripline.adapters.backends import Backend, Backends, Observer
from tripline.adapters.backends.campaign import GenesysCampaignBackend
from tripline.adapters.backends.cxone import CxoneBackend
from tripline.adapters.backends.genesys import GenesysBackend
from tripline.adapters.backends.log import LogBackend
from tripline.adapters.backends.twilio import TwilioBackend
from tripline.conf.schema import Config
from tripline.messages import Priority


def build_backends(config: Config, take_budget: Callable[[], Awaitable[None]]) -> Backends:
    """One instance per kind in use; the campaign shares the Genesys client and its token."""
    made: dict[str, Backend] = {}
    d = config.dialer

    def get(kind: str) -> Backend:
        if kind not in made:
            made[kind] = _make(kind, config, take_budget, get)
        return made[kind]

    by_priority = {p: get(d.backends.get(p.label, d.backend)) for p in Priority}
    tasks = get("genesys") if config.tasks.backend == "genesys" else get("log")
    source = d.occupancy_source
    if source == "auto":
        source = {"genesys": "genesys", "genesys_campaign": "genesys", "cxone": "cxone"}.get(
            d.backends.get("critical", d.backend), "none"
        )
    observer: Observer | None = None
    if source in ("genesys", "cxone"):
        candidate = get(source)
        assert isinstance(candidate, GenesysBackend | CxoneBackend)  # noqa: S101
        observer = candidate
    return Backends(by_priority, tasks, observer, list(made.values()), dict(made))


def _make(
    kind: str, config: Config, take: Callable[[], Awaitable[None]], get: Callable[[str], Backend]
) -> Backend:
    d = config.dialer
    if kind == "genesys":
        return GenesysBackend(conf=config.genesys, dialer=d, extra_request=take)
    if kind == "genesys_campaign":
        genesys = get("genesys")
        assert isinstance(genesys, GenesysBackend)  # noqa: S101
        return GenesysCampaignBackend(
            genesys=genesys,
            batch_size=d.campaign_batch_size,
            batch_seconds=d.campaign_batch_seconds,
            take_budget=take,
        )
    if kind == "cxone":
        return CxoneBackend(conf=config.cxone, dialer=d, extra_request=take)
    if kind == "twilio":
        return TwilioBackend(
            conf=config.twilio,
            dialer=d,
            outcomes=config.outcomes,
            instance=config.mqtt.client_id,
            extra_request=take,
        )
    return LogBackend()
