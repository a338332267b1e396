"""`tripline demo`: the emulator, the service and a short simulated fleet, as a product demo.

The contact center and CRM are `tripline emulate`'s, in this process; the service is the real
one with conf/demo.toml; the fleet publishes to the broker like `tripline simulate`. The
service's and the emulator's JSON logs go to a file (its path is printed) unless --verbose, so
the terminal shows the run: live progress, what became of the alerts, where to look next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from rich.console import Console

from tripline.conf import schema
from tripline.devtools import demo_view as view
from tripline.service import logs

log = logging.getLogger("tripline.demo")

SENSORS = 20
RATE = 40.0
"""Alerts per second: 120 take three seconds, long enough to watch."""
SETTLE_SECONDS = 30.0
LADDER_SECONDS = 30.0
EMULATOR_PORT = 8090
"""conf/demo.toml's CRM and Genesys URLs."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """The demo's command line."""

    count: int = 120
    exit: bool = False
    """Stop after the summary instead of serving until Ctrl-C."""
    verbose: bool = False
    """Logs on the terminal (and plain progress lines) instead of in a file."""
    port: int | None = None
    """The service's HTTP port (default: the config's, 8080)."""
    emulator_port: int = EMULATOR_PORT
    """Where `tripline emulate`'s contact center and CRM listen (conf/demo.toml's URLs)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Places:
    """Where the run can be looked at."""

    service: str
    emulator: str
    log_file: str | None
    """None with --verbose: the logs are on the terminal."""


class PortInUseError(Exception):
    """A port the demo serves on is taken."""


def run(options: Options, console: Console | None = None) -> int:
    """Run the demo; 0 when it ran, 1 on a config problem, 2 when a port is taken."""
    console = console or Console(highlight=False, markup=False)
    config = _config(options)
    if config is None:
        return 1
    service_url = f"http://{config.http.host}:{config.http.port}"
    emulator_url = f"http://127.0.0.1:{options.emulator_port}"
    try:
        _check_free(config.http.host, config.http.port, "--port", "the service's HTTP")
        _check_free("127.0.0.1", options.emulator_port, "--emulator-port", "the emulator")
    except PortInUseError as exc:
        sys.stderr.write(f"demo: {exc}\n")
        return 2
    log_file = None if options.verbose else _log_to_file()
    places = _Places(service=service_url, emulator=emulator_url, log_file=log_file)
    broker = f"{config.mqtt.host}:{config.mqtt.port}"
    fleet = f"{SENSORS} sensors, {options.count} alerts, on {config.mqtt.topic} at {broker}"
    console.print("tripline demo", style="bold")
    _table(
        console,
        [
            ("contact center + CRM", f"{emulator_url}  (emulated: tripline emulate)"),
            ("the service", service_url),
            ("the fleet (simulated)", fleet),
            *([("logs (JSON)", log_file)] if log_file else []),
        ],
    )
    console.print()
    return _run(options, config, console, places)


def _run(options: Options, config: schema.Config, console: Console, places: _Places) -> int:
    from tripline.devtools.emulator import Emulator  # noqa: PLC0415
    from tripline.devtools.emulator import build_app as emulator_app  # noqa: PLC0415
    from tripline.edge.cli import serve_http  # noqa: PLC0415
    from tripline.supervisor import Service  # noqa: PLC0415

    emulator = Emulator()
    # Some calls go unanswered, so the demo shows the ladder: a second attempt, the next contact.
    emulator.settings.call_results = ["no_answer", "answered", "busy", "answered", "no_answer"]
    emulator.settings.call_result_delay_seconds = 1.0
    threading.Thread(
        target=_serve_emulator, args=(emulator_app(emulator), options.emulator_port), daemon=True
    ).start()
    try:
        with console.status("starting the service ..."):  # a spinner on a terminal, else nothing
            service = Service(config)
            service.start()
    except Exception as exc:  # Redis not there, say: one line, not a traceback
        _failed("the service did not start", exc, places)
        return 1
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    server = threading.Thread(
        target=loop.run_until_complete, args=(serve_http(service, stop),), daemon=True
    )
    server.start()
    try:
        _watch(options, service, console)
        _report(options, service, console, places)
        if not options.exit:
            done = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: done.set())
            while not done.wait(0.5):
                pass
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # the broker refusing the fleet, say
        _failed("the demo stopped", exc, places)
        return 1
    finally:
        loop.call_soon_threadsafe(stop.set)
        server.join(timeout=5)
        service.stop()
    return 0


def _failed(what: str, exc: Exception, places: _Places) -> None:
    log.error(what, exc_info=exc)
    where = f" (the logs: {places.log_file})" if places.log_file else ""
    sys.stderr.write(f"demo: {what}: {exc}{where}\n")


def _config(options: Options) -> schema.Config | None:
    from tripline.devtools.emulator import CLIENT_SECRET  # noqa: PLC0415

    env = {
        "TRIPLINE__GENESYS__CLIENT_SECRET": CLIENT_SECRET,
        "TRIPLINE__HTTP__CONTEXT_TOKEN": "demo-token",
        **os.environ,
    }
    if options.emulator_port != EMULATOR_PORT:
        url = f"http://127.0.0.1:{options.emulator_port}"
        for key in ("CRM__BASE_URL", "GENESYS__BASE_URL", "GENESYS__LOGIN_URL"):
            env[f"TRIPLINE__{key}"] = url
    if options.port is not None:
        env["TRIPLINE__HTTP__PORT"] = str(options.port)
    try:
        return schema.load(Path(str(resources.files("tripline.conf").joinpath("demo.toml"))), env)
    except schema.ConfigError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"config: {problem}\n")
        return None


def _check_free(host: str, port: int, option: str, what: str) -> None:
    """Bind and release the port as aiohttp will (SO_REUSEADDR): in use, say so before starting.

    Without this, a taken port kills its server thread with a traceback on stderr and the demo
    goes on printing URLs that lead to whatever holds the port.
    """
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortInUseError(
                f"{what} cannot listen on {host}:{port} ({exc.strerror}): stop what uses it, "
                f"or pick another port with {option} N"
            ) from exc


def _log_to_file() -> str:
    """Send every log line to a JSON file in a new temporary directory; its path."""
    path = Path(tempfile.mkdtemp(prefix="tripline-demo-")) / "tripline.log"
    logs.to_file(path)
    return str(path)


def _serve_emulator(app: web.Application, port: int) -> None:
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, handle_signals=False)


class _Fleet(threading.Thread):
    """Publishes the simulated fleet's alerts (`tripline simulate`), counting them as it goes."""

    def __init__(self, count: int, config: schema.Config) -> None:
        super().__init__(daemon=True, name="demo-fleet")
        self.count = count
        self.published = 0
        self.error: BaseException | None = None
        self._config = config

    def run(self) -> None:
        from tripline.devtools.simulate import FleetSpec, simulate  # noqa: PLC0415

        mqtt = self._config.mqtt
        try:
            simulate(
                FleetSpec(sensors=SENSORS, count=self.count, rate=RATE),
                host=mqtt.host,
                port=mqtt.port,
                topic_prefix=mqtt.topic.split("/+/", 1)[0],
                on_publish=self._published,
            )
        except BaseException as exc:  # raised again in the main thread
            self.error = exc

    def _published(self, n: int) -> None:
        self.published = n


def _watch(options: Options, service: Any, console: Console) -> None:  # noqa: ANN401
    """Publish the fleet and show the progress until every ladder ended (or the time is up)."""
    fleet = _Fleet(options.count, service.config)
    fleet.start()
    live = console.is_terminal and not options.verbose
    shown: view.View = view.LiveView(console, options.count) if live else view.LinesView(console)
    try:
        _until(lambda: not fleet.is_alive(), shown, service, fleet)
        if fleet.error is not None:
            raise fleet.error
        _until(lambda: _settled(service), shown, service, fleet, SETTLE_SECONDS)
        _until(lambda: _ladders(service) == 0, shown, service, fleet, LADDER_SECONDS)
    finally:
        # As things stand now, Ctrl-C included (not the figures of the loop it interrupted).
        last: view.Figures | None = None  # Redis gone: the display stops as it was
        with contextlib.suppress(Exception):
            last = _figures_of(service, fleet)
        shown.close(last)


def _until(
    done: Callable[[], bool],
    shown: view.View,
    service: Any,  # noqa: ANN401
    fleet: _Fleet,
    timeout: float | None = None,
) -> None:
    """Show the figures every 0.25 s until `done()` or `timeout` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        shown.update(_figures_of(service, fleet))
        if done() or (deadline is not None and time.monotonic() > deadline):
            return
        time.sleep(0.25)


def _figures_of(service: Any, fleet: _Fleet) -> view.Figures:  # noqa: ANN401
    return view.figures(
        service.stats.snapshot(),
        service.stats.reach()["results"],
        total=fleet.count,
        published=fleet.published,
        following=_ladders(service),
    )


def _settled(service: Any) -> bool:  # noqa: ANN401
    """Every accepted alert has an outcome and the dialer is idle."""
    stats = service.stats
    decided = sum(stats.total(o) for o in ("called", "suppressed", "deferred"))
    accepted = stats.total("accepted") + stats.snapshot().get("suppressed", {}).get("duplicate", 0)
    status = service.status()
    return (
        decided >= accepted
        and status.get("inFlight", 0) == 0
        and not any(status.get("queueDepth", {}).values())
    )


def _ladders(service: Any) -> int:  # noqa: ANN401
    """Called alerts whose re-attempt ladder has not ended (the follow index's size)."""
    from tripline.adapters.attempts import follow_key  # noqa: PLC0415

    return int(service.redis.zcard(follow_key(service.keys, service.config.mqtt.client_id)))


def _report(options: Options, service: Any, console: Console, places: _Places) -> None:  # noqa: ANN401
    counters = service.stats.snapshot()
    console.print()
    console.print(view.summary(counters))
    console.print()
    if line := view.results_line(service.stats.reach()):
        console.print(line, highlight=False)
    console.print(f"accepted {service.stats.total('accepted')} of {options.count} published")
    console.print()
    heading = (
        "Where to look next (--exit stopped it; without --exit it keeps running):"
        if options.exit
        else "Where to look next (it keeps running; Ctrl-C stops it):"
    )
    console.print(heading, style="bold", soft_wrap=True)
    steps = view.next_steps(
        service=places.service,
        emulator=places.emulator,
        record=view.pick_record(service.stats.recent(200)),
        log_file=places.log_file,
    )
    _table(console, steps)


def _table(console: Console, rows: list[tuple[str, str]]) -> None:
    """Two columns of plain lines: a URL or a path is never wrapped (it is copied whole)."""
    width = max(len(what) for what, _ in rows)
    for what, where in rows:
        console.print(f"  {what:<{width}}  {where}", soft_wrap=True, markup=False)
