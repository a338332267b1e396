"""A Redis Cluster and a Sentinel-watched primary on loopback, for the tests and the fault suite.

Both are Debian's redis-server (a sentinel is `redis-server <conf> --sentinel`, what the
redis-sentinel package's binary is), started in a directory of their own on spare ports and
stopped again: nothing is left running or on disk.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

_UP = 20.0
"""How long a server or the cluster may take to come up (seconds)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not _holds(predicate):
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def _holds(predicate: Callable[[], object]) -> bool:
    try:
        return bool(predicate())
    except (redis.RedisError, OSError):
        return False


class Server:
    """One redis-server process (a data node or a sentinel) on a port of its own."""

    def __init__(self, root: Path, name: str, args: list[str], *, sentinel: bool = False) -> None:
        self.port = free_port()
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self._argv = ["redis-server"]
        if sentinel:  # sentinels rewrite their config file: it must be theirs, and writable
            conf = self.dir / "sentinel.conf"
            conf.write_text("\n".join([f"port {self.port}", "bind 127.0.0.1", *args]) + "\n")
            self._argv += [str(conf), "--sentinel"]
        else:
            self._argv += ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
            self._argv += ["--save", "", *args]
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        with (self.dir / "server.log").open("ab") as log:
            self.proc = subprocess.Popen(
                self._argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir
            )
        try:
            wait(self.client().ping, _UP, f"redis on {self.port}")
        except TimeoutError as exc:
            said = (self.dir / "server.log").read_text(errors="replace")[-600:]
            raise TimeoutError(f"redis on {self.port} did not answer; it said: {said}") from exc

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=1)

    def kill(self) -> None:
        """Kill -9: no goodbye to clients or replicas."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class ClusterRig:
    """A Redis Cluster of `masters` primaries (and `replicas` replicas each) on loopback."""

    def __init__(
        self, root: Path, *, masters: int = 3, replicas: int = 0, args: tuple[str, ...] = ()
    ) -> None:
        self.root = root
        self.nodes: list[Server] = []
        try:
            for n in range(masters * (1 + replicas)):
                node_args = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(root / f"node-{n}" / "nodes.conf"),
                    "--cluster-node-timeout",
                    "2000",
                    # Its own bus port: the default (port + 10,000) fails past 55535.
                    "--cluster-port",
                    str(free_port()),
                    # A replica's first sync at once (Redis 7 waits 5 s for more replicas).
                    "--repl-diskless-sync-delay",
                    "0",
                    *args,
                ]
                self.nodes.append(Server(root, f"node-{n}", node_args))
            subprocess.run(
                [
                    "redis-cli",
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{node.port}" for node in self.nodes),
                    "--cluster-replicas",
                    str(replicas),
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )
            wait(self._settled, _UP, "cluster state ok on every node")
        except BaseException:
            self.close()
            raise

    def _settled(self) -> bool:
        """Every node sees every slot served, and every replica follows its primary."""
        for node in self.nodes:
            client = node.client()
            info = client.cluster("INFO")
            if info.get("cluster_state") != "ok" or int(info.get("cluster_slots_ok", 0)) != 16384:
                return False
            replication = client.info("replication")
            if replication.get("role") == "slave" and replication["master_link_status"] != "up":
                return False
        return True

    @property
    def url(self) -> str:
        """The cluster URL tripline is configured with: every node a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class SentinelRig:
    """A primary, its replicas and `sentinels` sentinels watching it as `name`, on loopback.

    The sentinels call the primary down after `down_after_ms` without an answer and promote a
    replica once a quorum (a majority) of them agree.
    """

    def __init__(
        self,
        root: Path,
        *,
        name: str = "tripline",
        replicas: int = 1,
        sentinels: int = 3,
        down_after_ms: int = 1000,
        args: tuple[str, ...] = (),
    ) -> None:
        self.root, self.name = root, name
        self.data: list[Server] = []
        self.sentinels: list[Server] = []
        try:
            # A replica's first full sync starts at once (Redis 7 waits 5 s for more replicas
            # to share a diskless transfer): a failover before it would lose everything.
            args = ("--repl-diskless-sync-delay", "0", *args)
            self.data.append(Server(root, "data-0", list(args)))
            primary = self.data[0].port
            for n in range(1, replicas + 1):
                replica_args = ["--replicaof", "127.0.0.1", str(primary), *args]
                self.data.append(Server(root, f"data-{n}", replica_args))
            wait(self._replicas_in_sync, _UP, "replicas in sync")
            quorum = sentinels // 2 + 1
            for n in range(sentinels):
                conf = [
                    f"sentinel monitor {name} 127.0.0.1 {primary} {quorum}",
                    f"sentinel down-after-milliseconds {name} {down_after_ms}",
                    f"sentinel failover-timeout {name} 10000",
                    f"sentinel parallel-syncs {name} 1",
                    f"dir {root / f'sentinel-{n}'}",
                ]
                self.sentinels.append(Server(root, f"sentinel-{n}", conf, sentinel=True))
            wait(self._watching, _UP, "sentinels know the replicas and each other")
        except BaseException:
            self.close()
            raise

    def _replicas_in_sync(self) -> bool:
        """Every replica has its primary's data set and follows its stream."""
        return all(
            replica.client().info("replication").get("master_link_status") == "up"
            for replica in self.data[1:]
        )

    def _watching(self) -> bool:
        for sentinel in self.sentinels:
            client = sentinel.client()
            replicas = client.sentinel_slaves(self.name)
            others = client.sentinel_sentinels(self.name)
            assert isinstance(replicas, list)
            assert isinstance(others, list)
            if len(replicas) != len(self.data) - 1 or len(others) != len(self.sentinels) - 1:
                return False
        return True

    @property
    def addresses(self) -> list[str]:
        """The sentinels as `[redis] sentinels` lists them."""
        return [f"127.0.0.1:{s.port}" for s in self.sentinels]

    def env(self) -> dict[str, str]:
        """Tripline's environment for this Redis."""
        listed = ", ".join(f'"{a}"' for a in self.addresses)
        return {
            "TRIPLINE__REDIS__SENTINELS": f"[{listed}]",
            "TRIPLINE__REDIS__MASTER_NAME": self.name,
        }

    def primary(self) -> Server:
        """The data node the sentinels name as primary now."""
        host, port = self._named()
        return next(s for s in self.data if s.port == port and host == "127.0.0.1")

    def _named(self) -> tuple[str, int]:
        for sentinel in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                found = sentinel.client().sentinel_get_master_addr_by_name(self.name)
                if isinstance(found, tuple):
                    host = found[0].decode() if isinstance(found[0], bytes) else str(found[0])
                    return host, int(found[1])
        raise redis.ConnectionError("no sentinel names a primary")

    def fail_primary(self, timeout: float = 30.0) -> tuple[int, int, float]:
        """Kill -9 the primary; wait until a replica took over and takes writes.

        Returns (old port, new port, seconds from the kill until the new primary took a write).
        """
        started = time.monotonic()
        old = self.kill_primary()
        new = self.wait_promoted(old, timeout)
        return old.port, new.port, time.monotonic() - started

    def kill_primary(self) -> Server:
        """Kill -9 the primary now (the sentinels notice after down_after_ms); returns it."""
        old = self.primary()
        old.kill()
        return old

    def wait_promoted(self, old: Server, timeout: float = 30.0) -> Server:
        """Wait until the sentinels name another primary and it takes a write; returns it."""

        def promoted() -> bool:
            _, port = self._named()
            if port == old.port:
                return False
            new = next(s for s in self.data if s.port == port)
            return bool(new.client().set(f"{self.name}:failover-probe", 1, ex=60))

        wait(promoted, timeout, "a replica promoted")
        return self.primary()

    def rejoin(self, server: Server) -> None:
        """Start a failed node again: the sentinels make it a replica of the new primary."""
        server.start()

    def close(self) -> None:
        for server in [*self.sentinels, *self.data]:
            server.stop()
        shutil.rmtree(self.root, ignore_errors=True)
