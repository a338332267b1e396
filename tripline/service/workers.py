"""`tripline run --workers N`: one process per core, each a whole tripline service.

CPython runs one thread at a time per process, so one tripline uses about one core. With N > 1
`tripline run` becomes a small parent that starts N worker processes — fresh interpreters
(`python -m tripline.edge.cli run --worker I …`), never forks of a process with threads — and
supervises them: a worker that dies is started again (after a backoff that grows while it keeps
dying), and SIGTERM or SIGINT is passed on to every worker, whose drain the parent waits for.

Each worker is what one instance was (docs/deployment.md, "Several instances"): its own
actors, Redis connections, MQTT client and persistent session, its own pending index, dial
queue and follow index, all keyed by its client id. Worker 0 keeps `[mqtt] client_id` as it
is, so a single instance that becomes N workers keeps its session and its unfinished work;
worker I > 0 is `<client_id>-w<I>`. All of them share one MQTT 5 shared subscription: the
configured `[mqtt] shared_group`, else an implicit group named after the client id. They serve
one HTTP port with SO_REUSEPORT, which the parent reserves first (see `reserve_port`).

With N == 1 there is no parent: `tripline run` is the one process it always was.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from tripline.conf.schema import Config

log = logging.getLogger("tripline.workers")

_WORKER_SUFFIX = "-w"
_RESTART = (0.5, 30.0)  # seconds: the first replacement's wait, doubling up to the second
_STEADY_SECONDS = 30.0  # a worker that ran this long before dying starts its backoff afresh
_STOP_SECONDS = 25.0  # how long the parent waits for the workers' drain (under systemd's 30)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


# --- how many, and who each one is --------------------------------------------------------


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, within its cgroup's CPU quota.

    A container given `--cpus 2` on a 64-core host still sees 64 cores in its affinity; one
    worker per core there would be 64 processes sharing two cores' worth of time.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota = cgroup_cpu_limit()
    return max(1, min(cores or 1, quota or cores or 1))


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup"), own: Path | None = None) -> int | None:
    """The whole CPUs this process's cgroup (v2) and its parents allow, or None: no limit read."""
    try:
        lines = (own or Path("/proc/self/cgroup")).read_text().splitlines()
    except OSError:
        return None
    path = next((line[3:] for line in lines if line.startswith("0::")), None)
    if path is None:
        return None
    limits = []
    here = (root / path.lstrip("/")).resolve()
    for directory in (here, *here.parents):
        if directory != root and root not in directory.parents:
            break
        limit = _cpu_max(directory / "cpu.max")
        if limit is not None:
            limits.append(limit)
    return min(limits) if limits else None


def _cpu_max(path: Path) -> int | None:
    try:
        quota, period = path.read_text().split()
        return max(1, math.ceil(int(quota) / int(period))) if int(period) > 0 else None
    except (OSError, ValueError):  # absent, or "max 100000": no quota
        return None


def worker_count(configured: int, flag: int | None) -> int:
    """`--workers` if given, else `[service] workers`; 0 means one per usable core."""
    count = configured if flag is None else flag
    return count if count > 0 else usable_cores()


def client_id(base: str, index: int) -> str:
    """Worker 0 keeps the configured client id (its session and keys carry over); I > 0: -wI."""
    return base if index == 0 else f"{base}{_WORKER_SUFFIX}{index}"


def implicit_group(base: str) -> str:
    """The shared-subscription group of workers when `[mqtt] shared_group` is empty.

    The client id, which is already unique to this deployment, with the characters a group
    name may not hold (/ + #) replaced.
    """
    return re.sub(r"[/+#]", "_", base)


def worker_config(config: Config, index: int, count: int) -> Config:
    """Worker `index`'s configuration: its client id, the shared group, its share of polling.

    What every worker would otherwise do N times over: the CRM cache warming (the whole
    customer list each time) is worker 0's alone, and each worker polls queue occupancy N
    times less often, so the polls' draw on the shared rate budget stays what one instance's
    was.
    """
    if count == 1:
        return config
    base = config.mqtt.client_id
    mqtt = dataclasses.replace(
        config.mqtt,
        client_id=client_id(base, index),
        shared_group=config.mqtt.shared_group or implicit_group(base),
    )
    crm = config.crm if index == 0 else dataclasses.replace(config.crm, sync_interval_seconds=0.0)
    dialer = dataclasses.replace(
        config.dialer, occupancy_poll_seconds=config.dialer.occupancy_poll_seconds * count
    )
    return dataclasses.replace(config, mqtt=mqtt, crm=crm, dialer=dialer)


def note_count(config: Config, count: int) -> int | None:
    """Record how many workers start now; warn when fewer than last time. The last count.

    A worker left out keeps its broker session, which a shared subscription goes on filling
    while it is offline (Mosquitto does), and its unfinished alerts stay in its pending index,
    until its lease lapses and a live worker adopts them (tripline/service/takeover.py).
    """
    import redis  # noqa: PLC0415 - `tripline --help` stays light

    from tripline.adapters.redis_clients import sync_redis  # noqa: PLC0415
    from tripline.adapters.store import Keys  # noqa: PLC0415

    base = config.mqtt.client_id
    key = Keys(config.redis.key_prefix).workers(base)
    ttl = max(config.mqtt.session_expiry_seconds, config.redis.record_ttl_seconds)
    client = sync_redis(config.redis, socket_timeout=2, socket_connect_timeout=2)
    try:
        previous = client.set(key, count, ex=max(1, ttl), get=True)
    except redis.RedisError:
        return None  # the service's own start reports Redis
    finally:
        client.close()
    last = int(previous) if isinstance(previous, bytes) and previous.isdigit() else None
    if last is not None and last > count:
        log.warning(
            "%d workers now, %d before: the broker sessions and unfinished alerts of %s are "
            "adopted by a live worker once their leases lapse ([status] "
            "takeover_after_seconds; docs/deployment.md, 'Workers per core')",
            count,
            last,
            ", ".join(client_id(base, i) for i in range(count, last)),
        )
    return last


# --- the worker's side ------------------------------------------------------------------------


def die_with_parent(parent: int) -> None:
    """Have this worker stopped (SIGTERM: it drains) when the parent process goes away.

    Linux signals it at once (PR_SET_PDEATHSIG); elsewhere, and as a fallback, a thread looks
    at the parent pid every second. A parent that died before this ran is seen here.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        log.warning("parent process %d is gone: stopping", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


# --- the parent's side ------------------------------------------------------------------------


def runtime_dir() -> Path:
    """A directory only this user can enter, for the workers' private sockets."""
    base = os.environ.get("RUNTIME_DIRECTORY") or os.environ.get("XDG_RUNTIME_DIR") or None
    if base is not None and not os.access(base, os.W_OK):
        base = None
    return Path(tempfile.mkdtemp(prefix="tripline-", dir=base))  # mode 0700


def reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """Bind (not listen) the HTTP address with SO_REUSEPORT: the port every worker then binds.

    Held for the parent's life: a port already taken fails here, once, before any worker
    starts, and port 0 becomes one real port for all of them. Not listening, it receives no
    connection: the kernel spreads them over the workers' listening sockets.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock, int(sock.getsockname()[1])


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0
    start_at: float = 0.0


def restart_delay(failures: int) -> float:
    """Seconds before a worker that died `failures` times in a row is started again."""
    first, cap = _RESTART
    return float(min(cap, first * 2.0 ** (failures - 1)))


class Parent:
    """Starts `count` workers with `command(index)`, replaces the dead, stops them on a signal.

    Single-threaded on purpose: PR_SET_PDEATHSIG fires when the thread that started a worker
    ends, so every worker is started from the main thread.
    """

    def __init__(
        self,
        count: int,
        command: Callable[[int], Sequence[str]],
        env: dict[str, str],
        *,
        stop_seconds: float = _STOP_SECONDS,
    ) -> None:
        """Nothing starts until run()."""
        self._workers = [_Worker(i) for i in range(count)]
        self._command, self._env, self._stop_seconds = command, env, stop_seconds
        self._signals: list[int] = []

    def run(self) -> int:
        """Supervise until SIGTERM or SIGINT; 0 when every worker then stopped cleanly."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        while not self._signals:
            now = time.monotonic()
            for worker in self._workers:
                self._tend(worker, now)
            time.sleep(0.1)
        return self._stop(self._signals[0])

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals.append(signum)

    def _tend(self, worker: _Worker, now: float) -> None:
        if worker.proc is not None and (code := worker.proc.poll()) is not None:
            ran = now - worker.started
            worker.failures = 1 if ran >= _STEADY_SECONDS else worker.failures + 1
            delay = restart_delay(worker.failures)
            log.error(
                "worker %d (pid %d) %s after %.1f s; starting it again in %.1f s",
                worker.index,
                worker.proc.pid,
                f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited {code}",
                ran,
                delay,
            )
            worker.proc, worker.start_at = None, now + delay
        if worker.proc is None and now >= worker.start_at and not self._signals:
            worker.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                self._command(worker.index), env=self._env, process_group=0
            )
            worker.started = now
            log.info("worker %d started (pid %d)", worker.index, worker.proc.pid)

    def _stop(self, signum: int) -> int:
        """Pass the signal on once to every worker, wait for their drain, kill the late."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)  # a repeat (systemd's, a second Ctrl-C) waits too
        live = [w.proc for w in self._workers if w.proc is not None and w.proc.poll() is None]
        log.info("%s: stopping %d workers", signal.Signals(signum).name, len(live))
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)
        deadline = time.monotonic() + self._stop_seconds
        clean = True
        for proc in live:
            try:
                code = proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker pid %d did not stop in time: killed", proc.pid)  # noqa: TRY400
                proc.kill()
                code = proc.wait()
            clean = clean and code == 0
        return 0 if clean else 1


def run_parent(
    config: Config, count: int, worker_args: Callable[[int, Path, int], Sequence[str]]
) -> int:
    """Reserve the HTTP port, make the runtime directory, supervise `count` workers.

    `worker_args(index, runtime_dir, parent_pid)`: the command line of worker `index`.
    """
    try:
        held, port = reserve_port(config.http.host, config.http.port)
    except OSError as exc:
        log.error("HTTP on %s:%d: %s", config.http.host, config.http.port, exc)  # noqa: TRY400
        return 1
    try:
        directory = runtime_dir()
    except OSError as exc:  # a container run --read-only without a tmpfs: nowhere to write
        held.close()
        log.error(  # noqa: TRY400 - the reason is the message; a traceback adds nothing
            "no directory for the workers' sockets (%s): set RUNTIME_DIRECTORY or "
            "XDG_RUNTIME_DIR to a directory this user may write, or give the temporary "
            "directory one (docker run --read-only: add --tmpfs /tmp)",
            exc,
        )
        return 1
    env = {**os.environ, "TRIPLINE__HTTP__PORT": str(port)}
    log.info(
        "%d workers (client ids %s … %s, group %r), HTTP port %d",
        count,
        client_id(config.mqtt.client_id, 0),
        client_id(config.mqtt.client_id, count - 1),
        config.mqtt.shared_group or implicit_group(config.mqtt.client_id),
        port,
    )
    try:
        parent = Parent(count, lambda i: worker_args(i, directory, os.getpid()), env)
        return parent.run()
    finally:
        held.close()
        shutil.rmtree(directory, ignore_errors=True)
