"""The `tripline` command: run, emulate, simulate, check-config, demo."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import shutil
import signal
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pykka.debug
from aiohttp import web

from tripline.conf import schema
from tripline.edge import ledger_cli
from tripline.service import logs, runtime

if TYPE_CHECKING:  # imported where used: `tripline --help` and `simulate` start fast
    from tripline.adapters.redis_clients import SyncRedis
    from tripline.adapters.store import Keys
    from tripline.edge.siblings import Fleet

log = logging.getLogger("tripline")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = argparse.ArgumentParser(prog="tripline", description=__doc__)
    parser.add_argument("--log-level", default=os.environ.get("TRIPLINE_LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--log-format",
        choices=("json", "text"),
        default=os.environ.get("TRIPLINE_LOG_FORMAT")
        or ("text" if sys.stderr.isatty() else "json"),
        help="json (one masked object per line; the default when not on a terminal) or text",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the service")
    run.add_argument("--config", type=Path, help="TOML file overriding conf/default.toml")
    run.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes, each a whole service (default: [service] workers; 0 or unset "
        "there: one per usable core; 1: one process, no parent)",
    )
    # How the parent starts worker I (tripline/service/workers.py); not for operators.
    run.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    run.add_argument("--runtime-dir", type=Path, help=argparse.SUPPRESS)
    run.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    emulate = sub.add_parser("emulate", help="a local Genesys Cloud + CRM")
    emulate.add_argument("--host", default="127.0.0.1")
    emulate.add_argument("--port", type=int, default=8090)
    sim = sub.add_parser("simulate", help="publish a simulated sensor fleet's alerts")
    _simulate_args(sim)
    check = sub.add_parser("check-config", help="validate a config file; print every problem")
    check.add_argument("file", type=Path)
    check.add_argument(
        "--probe",
        action="store_true",
        help="also sign in to each contact center the config uses and the CRM, make one "
        "read-only request per role, and report what works (exit 1 if anything fails)",
    )
    check.add_argument(
        "--customer",
        metavar="ID",
        help="with --probe: read this CRM customer (default: the first page of the customer list)",
    )
    check.add_argument(
        "--timeout",
        type=_probe_timeout,
        default=5.0,
        metavar="SECONDS",
        help="with --probe: how long each request may take (default 5)",
    )
    dnc_cmd = sub.add_parser("dnc", help="the internal do-not-call list")
    _dnc_args(dnc_cmd)
    windows = sub.add_parser(
        "maintenance", help="maintenance windows: a sensor or site being serviced is not called"
    )
    windows.add_argument("action", choices=("add", "list", "end"))
    windows.add_argument("id", nargs="?", help="the window to end")
    windows.add_argument("--sensor", help="sensorId")
    windows.add_argument("--customer", help="customerId")
    windows.add_argument("--alert-type", help="only this alertType")
    windows.add_argument("--hours", type=float, help="open for this many hours from now")
    windows.add_argument("--until", help="open until this time (ISO 8601 with an offset)")
    windows.add_argument("--comment", help="why (required to add)")
    windows.add_argument("--by", help="who (default: the login name)")
    windows.add_argument("--why", default="", help="why a window ends, for the ledger")
    windows.add_argument("--config", type=Path)
    sync = sub.add_parser("crm-sync", help="warm the customer cache from the CRM's list")
    sync.add_argument("--config", type=Path)
    ledger_cli.add_parser(sub)
    demo = sub.add_parser("demo", help="emulator + service + a short simulated fleet")
    demo.add_argument("--count", type=int, default=120, help="alerts to publish")
    demo.add_argument("--exit", action="store_true", help="exit after the summary")
    demo.add_argument(
        "--verbose",
        action="store_true",
        help="the logs on the terminal (default: a JSON file whose path is printed)",
    )
    demo.add_argument("--port", type=int, help="the service's HTTP port (default 8080)")
    demo.add_argument("--emulator-port", type=int, default=8090, help="the emulator's port")
    args = parser.parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    handlers = {
        "run": _run,
        "emulate": _emulate,
        "simulate": _simulate,
        "check-config": _check_config,
        "dnc": _dnc,
        "maintenance": _maintenance,
        "crm-sync": _crm_sync,
        "demo": _demo,
        "ledger": ledger_cli.run,
    }
    result: int = handlers[args.command](args)
    return result


def _dnc_args(dnc_cmd: argparse.ArgumentParser) -> None:
    dnc_cmd.add_argument("action", choices=("add", "remove", "list"))
    dnc_cmd.add_argument("number", nargs="?", help="phone number, +<country><number>")
    dnc_cmd.add_argument("--by", help="who, for the ledger (default: the login name)")
    dnc_cmd.add_argument("--why", default="", help="why, for the ledger")
    dnc_cmd.add_argument("--config", type=Path)


def _simulate_args(sim: argparse.ArgumentParser) -> None:
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=1883)
    sim.add_argument("--sensors", type=int, default=20)
    sim.add_argument("--customers", default="demo", help="'demo' or a number of customers")
    sim.add_argument("--rate", type=float, default=20.0, help="alerts per second")
    sim.add_argument("--count", type=int, default=100)
    sim.add_argument("--duplicates", type=float, default=0.1)
    sim.add_argument("--invalid", type=float, default=0.05)
    sim.add_argument(
        "--flapping", type=float, default=0.0, help="fraction of sensors toggling firing/resolved"
    )
    sim.add_argument("--seed", type=int)


def _load(path: Path | None) -> schema.Config | None:
    try:
        return schema.load(path)
    except schema.ConfigError as exc:
        for problem in exc.problems:
            print(f"config: {problem}", file=sys.stderr)
        return None


def _dnc(args: argparse.Namespace) -> int:
    from tripline.adapters import dnc  # noqa: PLC0415
    from tripline.adapters.ledger.actions import record_action  # noqa: PLC0415
    from tripline.adapters.redis_clients import sync_redis  # noqa: PLC0415
    from tripline.adapters.store import Keys  # noqa: PLC0415

    config = _load(args.config)
    if config is None:
        return 1
    if args.action != "list" and not args.number:
        print(f"dnc {args.action}: a phone number is required", file=sys.stderr)
        return 2
    client = sync_redis(config.redis)
    keys = Keys(config.redis.key_prefix, ledger=config.ledger.enabled)
    author = ledger_cli.cli_author(args.by, args.why)
    try:
        if args.action == "list":
            print("\n".join(dnc.numbers(client, keys)))
        elif args.action == "add":
            print(f"added {dnc.add(client, keys, args.number)}")
            record_action(
                client, keys, author, action="dnc_add", now=time.time(), phone=args.number
            )
        elif not dnc.remove(client, keys, args.number):
            print("not on the list", file=sys.stderr)
            return 1
        else:
            record_action(
                client, keys, author, action="dnc_remove", now=time.time(), phone=args.number
            )
    except dnc.InvalidNumberError as exc:
        print(exc, file=sys.stderr)
        return 2
    finally:
        client.close()
    return 0


def _maintenance(args: argparse.Namespace) -> int:
    import redis  # noqa: PLC0415

    from tripline.adapters.redis_clients import sync_redis  # noqa: PLC0415
    from tripline.adapters.store import Keys  # noqa: PLC0415

    config = _load(args.config)
    if config is None:
        return 1
    client = sync_redis(config.redis)
    try:
        keys = Keys(config.redis.key_prefix, ledger=config.ledger.enabled)
        return _maintenance_action(args, client, keys, time.time())
    except redis.RedisError as exc:
        print(f"maintenance {args.action}: Redis unavailable: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()


def _maintenance_action(args: argparse.Namespace, client: SyncRedis, keys: Keys, now: float) -> int:
    from tripline.adapters.ledger.actions import record_action  # noqa: PLC0415
    from tripline.service import controls as maintenance  # noqa: PLC0415

    if args.action == "add":
        return _maintenance_add(args, client, keys, now)
    if args.action == "list":
        for window in maintenance.read_all(client, keys):
            print(orjson.dumps(window.to_doc(now)).decode())
        return 0
    if not args.id:
        print("maintenance end: the window's id is required (maintenance list)", file=sys.stderr)
        return 2
    ended = maintenance.end(client, keys, args.id, now=now)
    if ended is None:
        print(f"no window {args.id!r}", file=sys.stderr)
        return 1
    author = ledger_cli.cli_author(args.by, args.why)
    record_action(
        client, keys, author, action="maintenance_ended", now=now, subject=ended.to_doc(now)
    )
    print(f"ended {ended.window_id}")
    return 0


def _login_name() -> str | None:
    try:
        return getpass.getuser()  # $LOGNAME, $USER, … or the password database
    except OSError:  # none of them: --by is then required
        return None


# The request's fields as the command's options, for its error messages.
_MAINTENANCE_OPTIONS = {
    "sensorId": "--sensor",
    "customerId": "--customer",
    "alertType": "--alert-type",
    "endsAt": "--until",
    "durationSeconds": "--hours",
    "comment": "--comment",
    "createdBy": "--by",
}


def _maintenance_add(args: argparse.Namespace, client: SyncRedis, keys: Keys, now: float) -> int:
    from tripline.adapters.ledger.actions import record_action  # noqa: PLC0415
    from tripline.pipeline.maintenance import Window  # noqa: PLC0415
    from tripline.service import controls as maintenance  # noqa: PLC0415

    request = {
        "sensorId": args.sensor,
        "customerId": args.customer,
        "alertType": args.alert_type,
        "endsAt": args.until,
        "durationSeconds": args.hours * 3600 if args.hours is not None else None,
        "comment": args.comment,
        "createdBy": args.by or _login_name(),
    }
    doc = {k: v for k, v in request.items() if v is not None}
    added = maintenance.add(client, keys, doc, now=now)
    if not isinstance(added, Window):
        for problem in added:
            option = _MAINTENANCE_OPTIONS.get(problem.field, problem.field)
            print(f"maintenance add: {option}: {problem.message}", file=sys.stderr)
        return 2
    author = ledger_cli.cli_author(args.by, args.comment or "")
    record_action(
        client, keys, author, action="maintenance_opened", now=now, subject=added.to_doc(now)
    )
    print(orjson.dumps(added.to_doc(now)).decode())
    return 0


def _crm_sync(args: argparse.Namespace) -> int:
    import aiohttp  # noqa: PLC0415

    from tripline.adapters.crm import CrmUnavailableError, sync_customers  # noqa: PLC0415
    from tripline.adapters.redis_clients import aclose, async_redis  # noqa: PLC0415
    from tripline.adapters.store import Keys  # noqa: PLC0415

    config = _load(args.config)
    if config is None:
        return 1

    async def go() -> int:
        headers = {"Authorization": f"Bearer {config.crm.token}"} if config.crm.token else {}
        timeout = aiohttp.ClientTimeout(total=config.crm.timeout_seconds * 10)
        client = async_redis(config.redis)
        try:
            async with aiohttp.ClientSession(timeout=timeout, headers=headers) as http:
                return await sync_customers(
                    http,
                    client,
                    Keys(config.redis.key_prefix),
                    base_url=config.crm.base_url,
                    ttl=config.crm.cache_ttl_seconds,
                )
        finally:
            await aclose(client)

    try:
        count = asyncio.run(go())
    except CrmUnavailableError as exc:
        print(f"crm-sync failed: {exc}", file=sys.stderr)
        return 1
    print(f"cached {count} customers")
    return 0


def _check_config(args: argparse.Namespace) -> int:
    config = _load(args.file)
    if config is None:
        return 1
    if not args.probe:
        shown = schema.masked(config)
        shown["redis"]["topology"] = config.redis.topology().describe()  # how the settings read
        print(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode())
        return 0
    from tripline.edge import probe_answers, probe_http  # noqa: PLC0415 - only for --probe

    findings = asyncio.run(
        probe_http.run(
            config, customer=args.customer, request_seconds=args.timeout, now=time.time()
        )
    )
    lines, code = probe_answers.summary(findings)
    print("\n".join(lines))
    return code


def _probe_timeout(text: str) -> float:
    """--timeout: seconds, more than 0 and at most 60."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 60:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 60 seconds")
    return value


async def serve_http(service: Any, stop: asyncio.Event, fleet: Fleet | None = None) -> None:  # noqa: ANN401
    """Serve the service's HTTP API until `stop` is set.

    `fleet`: this process is one of `tripline run --workers N`; it shares the port with its
    siblings (SO_REUSEPORT) and serves the same application on its private socket, where
    the sibling that takes a /status or /metrics request asks it (tripline/edge/siblings.py).
    """
    from tripline.edge.http_api import build_app  # noqa: PLC0415 - keeps check-config light
    from tripline.edge.siblings import FLEET  # noqa: PLC0415

    app = build_app(service)
    if fleet is not None:
        app[FLEET] = fleet
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    conf = service.config.http
    site = web.TCPSite(runner, conf.host, conf.port, reuse_port=fleet is not None)
    await site.start()
    if fleet is not None:
        await web.UnixSite(runner, fleet.socket_path(fleet.index)).start()
    log.info("HTTP on http://%s:%d", conf.host, conf.port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 1
    from tripline.service import workers  # noqa: PLC0415

    count = workers.worker_count(config.service.workers, args.workers)
    fleet = None
    if args.worker is None:
        workers.note_count(config, count)
        if count > 1:
            return workers.run_parent(config, count, _worker_command(args, count))
    else:  # one of the parent's workers
        if args.runtime_dir is None or args.parent_pid is None:
            print("run --worker: started by `tripline run --workers N` only", file=sys.stderr)
            return 2
        config, fleet = _as_worker(args, config, count)
    from tripline.supervisor import Service  # noqa: PLC0415

    if os.environ.get("TRIPLINE_TRACEMALLOC"):
        tracemalloc.start()

    # Fenced (another instance adopted our work, our lease having lapsed): stop as on SIGTERM,
    # and exit non-zero so a service manager starts us again, with a new lease.
    service = Service(config, on_fenced=lambda: os.kill(os.getpid(), signal.SIGTERM))
    try:
        service.start()
    except Exception:
        log.exception("start failed")
        service.stop()
        return 1
    runtime.tune_after_start()
    try:
        asyncio.run(_serve_until_signal(service, fleet))
    finally:
        if fleet is not None:  # a worker drains whatever else it is told (see stop_once)
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_IGN)
        service.stop()
        if fleet is not None and os.getppid() != args.parent_pid:
            # The parent died (kill -9) without removing the directory it made for us all.
            shutil.rmtree(fleet.directory, ignore_errors=True)
    return _FENCED if service.fenced else 0


_FENCED = 3  # exit status of an instance whose lease another instance took


def _as_worker(
    args: argparse.Namespace, config: schema.Config, count: int
) -> tuple[schema.Config, Fleet]:
    """Worker `args.worker`'s configuration and place among its siblings; dies with the parent."""
    from tripline.edge.siblings import Fleet  # noqa: PLC0415
    from tripline.service import workers  # noqa: PLC0415

    workers.die_with_parent(args.parent_pid)
    fleet = Fleet(
        index=args.worker,
        count=count,
        directory=args.runtime_dir,
        base_client_id=config.mqtt.client_id,
        read_token=config.http.read_token,
    )
    return workers.worker_config(config, args.worker, count), fleet


def _worker_command(args: argparse.Namespace, count: int) -> Callable[[int, Path, int], list[str]]:
    """How the parent starts worker I: this interpreter, this module, the same options."""

    def command(index: int, directory: Path, parent: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "tripline.edge.cli",
            "--log-level",
            args.log_level,
            "--log-format",
            args.log_format,
            "run",
            *(["--config", str(args.config)] if args.config else []),
            "--workers",
            str(count),
            "--worker",
            str(index),
            "--runtime-dir",
            str(directory),
            "--parent-pid",
            str(parent),
        ]

    return command


async def _serve_until_signal(service: Any, fleet: Fleet | None = None) -> None:  # noqa: ANN401
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if fleet is None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    else:
        # A worker may be told twice (the parent passes its signal on, systemd signals the
        # whole unit): the first stops it, a repeat must not end the drain. Set here, not with
        # add_signal_handler, which asyncio.run undoes before service.stop() drains.
        def stop_once(_signum: int, _frame: object) -> None:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_IGN)
            loop.call_soon_threadsafe(stop.set)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, stop_once)
    # SIGUSR1 dumps every thread's stack: the deadlock hunt pykka documents.
    signal.signal(signal.SIGUSR1, pykka.debug.log_thread_tracebacks)
    if tracemalloc.is_tracing():  # TRIPLINE_TRACEMALLOC=1: SIGUSR2 logs where memory went
        signal.signal(signal.SIGUSR2, _log_memory)
    await serve_http(service, stop, fleet)


def _log_memory(_signum: int, _frame: object) -> None:
    top = tracemalloc.take_snapshot().statistics("lineno")[:25]
    log.warning("memory by allocation site:\n%s", "\n".join(str(s) for s in top))


def _emulate(args: argparse.Namespace) -> int:
    from tripline.devtools.emulator import build_app  # noqa: PLC0415

    web.run_app(
        build_app(),
        host=args.host,
        port=args.port,
        access_log=None,
        print=lambda _: log.info("emulator on http://%s:%d", args.host, args.port),
    )
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from tripline.devtools.simulate import FleetSpec, simulate  # noqa: PLC0415

    spec = FleetSpec(
        sensors=args.sensors,
        customers=args.customers,
        rate=args.rate,
        count=args.count,
        duplicates=args.duplicates,
        invalid=args.invalid,
        flapping=args.flapping,
    )
    sent = simulate(spec, host=args.host, port=args.port, seed=args.seed)
    print(orjson.dumps(dict(sent)).decode())
    return 0


def _demo(args: argparse.Namespace) -> int:
    from tripline.devtools import demo  # noqa: PLC0415

    return demo.run(
        demo.Options(
            count=args.count,
            exit=args.exit,
            verbose=args.verbose,
            port=args.port,
            emulator_port=args.emulator_port,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
