"""Where tripline's Redis is: one server, a primary watched by Sentinel, or a Redis Cluster.

Pure: reads the [redis] settings into a Topology and says what is wrong with them, every
problem at once (`tripline check-config` shows them). tripline/adapters/redis_clients.py builds
redis-py's own clients from a Topology: Redis, Sentinel's master_for, RedisCluster.

* one server: `url` (`redis://`, `rediss://` for TLS, `unix://`).
* Sentinel: `sentinels` (host:port of each) and `master_name` (the name they monitor); `url`
  then gives only how to talk to the primary they name: its scheme (`rediss` for TLS),
  username, password and database. Its host and port are not used.
* Cluster: `cluster = true` with `url` naming one node, or a cluster URL naming several
  (`redis+cluster://10.0.0.1:6379,10.0.0.2:6379`, `rediss+cluster://` for TLS): any node
  answering at start is enough, the client learns the others from it. Database 0 only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

SENTINEL_PORT = 26379
REDIS_PORT = 6379

_PLAIN = ("redis", "rediss", "unix")
_CLUSTER = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
# A host name, an IPv4 address or a bracketed IPv6 one, then an optional port.
_ADDRESS = re.compile(r"(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(:(?P<port>[0-9]{1,5}))?")
_DB = re.compile(r"/?([0-9]*)")


class Kind(StrEnum):
    """How the Redis is deployed."""

    SINGLE = "single"
    SENTINEL = "sentinel"
    CLUSTER = "cluster"


@dataclass(frozen=True, slots=True, kw_only=True)
class Topology:
    """The Redis to connect to, as redis-py's clients are built for it."""

    kind: Kind
    url: str
    """A plain URL (redis://, rediss://, unix://): the one server; the first node of a cluster;
    for Sentinel, the primary's scheme, credentials and database."""
    nodes: tuple[tuple[str, int], ...] = ()
    """A cluster's nodes beyond the url's (any one answering is enough); or the sentinels."""
    master_name: str = ""
    """The name the sentinels monitor (Sentinel only)."""

    def describe(self) -> dict[str, object]:
        """What /status shows: the kind and the addresses, no credentials."""
        doc: dict[str, object] = {"topology": self.kind.value}
        if self.kind == Kind.SENTINEL:
            doc["sentinels"] = [_name(h, p) for h, p in self.nodes]
            doc["masterName"] = self.master_name
        elif self.kind == Kind.CLUSTER:
            doc["seeds"] = [_server(self.url), *(_name(h, p) for h, p in self.nodes)]
        else:
            doc["server"] = _server(self.url)
        return doc


class TopologyError(ValueError):
    """The [redis] settings name no Redis tripline can reach; `problems` says why."""

    def __init__(self, problems: list[str]) -> None:
        """Keep every problem (each is `<key>: <what is wrong>`)."""
        super().__init__("; ".join(problems))
        self.problems = problems


def topology(
    url: str, *, cluster: bool = False, sentinels: Sequence[str] = (), master_name: str = ""
) -> Topology:
    """Read the [redis] settings; raises TopologyError listing every problem."""
    # Not urlsplit: since Python 3.12.4/3.13 it refuses a netloc with text before a '[' (a
    # cluster's "a:1,[fd00::2]:7001"), and any Python refuses an unclosed '[' with a bare
    # ValueError; the URL's parts are read by hand below, and named in a problem when wrong.
    head, sep, _ = url.partition("://")
    scheme = head.lower() if sep else ""
    if scheme not in _PLAIN and scheme not in _CLUSTER:
        problem = (
            f"url: {_masked(url)!r} is not a Redis URL: redis://host:port/db, rediss:// (TLS), "
            "unix:///path, or redis+cluster://host:port,host:port for a cluster"
        )
        raise TopologyError([problem])
    cluster = cluster or scheme in _CLUSTER
    problems: list[str] = []
    nodes = _nodes(url, scheme, problems) if scheme != "unix" else []
    watchers = _addresses("sentinels", sentinels, SENTINEL_PORT, problems)
    problems += _sentinel_problems(cluster=cluster, sentinels=sentinels, master_name=master_name)
    if (cluster or sentinels) and scheme == "unix":
        problems.append(
            "url: a unix:// socket reaches one local server, not a cluster or sentinels"
        )
    database = _database(url, scheme)
    if database is None:
        problems.append(f"url: {_masked(url)!r}: the database must be a number, as in /0")
    elif cluster and database != 0:
        problems.append(f"url: a Redis Cluster has database 0 only (got {database})")
    if problems:
        raise TopologyError(problems)
    if cluster:
        (host, port), *rest = nodes
        plain = _CLUSTER.get(scheme, scheme)
        first = f"{plain}://{_userinfo(url)}{_name(host, port)}{_tail(url)}"
        return Topology(kind=Kind.CLUSTER, url=first, nodes=tuple(rest))
    if sentinels:
        return Topology(
            kind=Kind.SENTINEL, url=url, nodes=tuple(watchers), master_name=master_name.strip()
        )
    return Topology(kind=Kind.SINGLE, url=url)


def _sentinel_problems(*, cluster: bool, sentinels: Sequence[str], master_name: str) -> list[str]:
    problems = []
    if sentinels and cluster:
        problems.append(
            "sentinels: a Redis Cluster needs no sentinels (it fails over by itself): "
            "set either sentinels and master_name, or a cluster"
        )
    if sentinels and not master_name.strip():
        problems.append(
            "master_name: required with sentinels: the name the sentinels monitor "
            "(`sentinel monitor <name> ...` in their config, e.g. mymaster)"
        )
    if master_name and not sentinels:
        problems.append("master_name: needs sentinels (host:port of each) to ask for the primary")
    if master_name and not re.fullmatch(r"[!-~]+", master_name):
        problems.append(f"master_name: {master_name!r} must be printable ASCII without spaces")
    return problems


def problems(
    url: str, *, cluster: bool = False, sentinels: Sequence[str] = (), master_name: str = ""
) -> list[str]:
    """Every problem of the [redis] settings (none: an empty list)."""
    try:
        topology(url, cluster=cluster, sentinels=sentinels, master_name=master_name)
    except TopologyError as exc:
        return exc.problems
    return []


def _nodes(url: str, scheme: str, problems: list[str]) -> list[tuple[str, int]]:
    """The host:port list of a redis:// or cluster URL (one for redis://)."""
    netloc = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
    hosts = netloc.rpartition("@")[2]
    if scheme not in _CLUSTER and "," in hosts:
        problems.append(
            f"url: {_masked(url)!r} names several hosts: a cluster's are given as "
            "redis+cluster://host:port,host:port"
        )
        return []
    return _addresses("url", hosts.split(",") if hosts else [], REDIS_PORT, problems)


def _addresses(
    key: str, items: Sequence[str], default_port: int, problems: list[str]
) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    bad = []
    for item in items:
        match = _ADDRESS.fullmatch(item.strip())
        port = int(match["port"]) if match and match["port"] else default_port
        if match is None or not 0 < port < 65536:
            bad.append(item)
            continue
        found.append((match["host"].strip("[]"), port))
    if bad:
        shown = ", ".join(repr(b) for b in bad)
        problems.append(f"{key}: {shown}: not host:port (e.g. 10.0.0.5:{default_port})")
    elif key == "url" and not found:
        problems.append("url: no host to connect to")
    return found


def _database(url: str, scheme: str) -> int | None:
    if scheme == "unix":
        return 0  # redis-py reads ?db= there; a unix socket is never a cluster's
    rest = url.split("://", 1)[1]
    path = rest.split("?", 1)[0].partition("/")[2]
    match = _DB.fullmatch(path)
    if match is None:
        return None
    return int(match[1]) if match[1] else 0


def _userinfo(url: str) -> str:
    netloc = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
    user, at, _ = netloc.rpartition("@")
    return f"{user}{at}"


def _tail(url: str) -> str:
    """The path and query of a URL (database, options), as given."""
    rest = url.split("://", 1)[1]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    return rest[cut:]


def _name(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _server(url: str) -> str:
    """The host:port (or socket path) of a plain URL, without its credentials."""
    scheme, rest = url.split("://", 1)
    if scheme == "unix":
        return f"unix://{rest.rpartition('@')[2].split('?', 1)[0]}"
    return rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]


def _masked(url: str) -> str:
    """The url as shown in a problem: credentials (anything before an '@') replaced."""
    return re.sub(r"(^|://)[^/@]*@", r"\1***@", url, count=1)
