"""The [redis] settings read as one server, Sentinel or a cluster; every problem named at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import tripline_cli
from tripline.conf import schema
from tripline.conf.redis_topology import Kind, Topology, TopologyError, topology


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {"url": "redis://127.0.0.1:6379/0"},
            Topology(kind=Kind.SINGLE, url="redis://127.0.0.1:6379/0"),
        ),
        (
            {"url": "unix:///run/redis.sock?db=2"},
            Topology(kind=Kind.SINGLE, url="unix:///run/redis.sock?db=2"),
        ),
        (
            {"url": "rediss://:pw@cache.example.com:6380/0", "cluster": True},
            Topology(kind=Kind.CLUSTER, url="rediss://:pw@cache.example.com:6380/0"),
        ),
        (
            {"url": "redis+cluster://u:p@10.0.0.1:7000,[fd00::2]:7001,node-3/0?x=1"},
            Topology(
                kind=Kind.CLUSTER,
                url="redis://u:p@10.0.0.1:7000/0?x=1",
                nodes=(("fd00::2", 7001), ("node-3", 6379)),
            ),
        ),
        (
            {"url": "rediss+cluster://10.0.0.1"},
            Topology(kind=Kind.CLUSTER, url="rediss://10.0.0.1:6379"),
        ),
        (
            {
                "url": "rediss://:secret@ignored:1/3",
                "sentinels": ["10.0.0.1:26379", " 10.0.0.2 ", "[fd00::3]:5000"],
                "master_name": "mymaster",
            },
            Topology(
                kind=Kind.SENTINEL,
                url="rediss://:secret@ignored:1/3",
                nodes=(("10.0.0.1", 26379), ("10.0.0.2", 26379), ("fd00::3", 5000)),
                master_name="mymaster",
            ),
        ),
    ],
)
def test_settings_read_as(settings: dict[str, Any], expected: Topology) -> None:
    assert topology(**settings) == expected


@pytest.mark.parametrize(
    ("settings", "problems"),
    [
        (
            {"url": "redis://r:6379/0", "sentinels": ["10.0.0.1:26379"]},
            ["master_name: required with sentinels"],
        ),
        ({"url": "redis://r:6379/0", "master_name": "m"}, ["master_name: needs sentinels"]),
        (
            {
                "url": "redis://r:6379/0",
                "sentinels": ["a:b", "h:99999", "", "two words:1", "[zz]:1"],
                "master_name": "m",
            },
            ["sentinels: 'a:b', 'h:99999', '', 'two words:1', '[zz]:1': not host:port"],
        ),
        (
            {"url": "redis://r:6379/0", "sentinels": ["s:1"], "master_name": "m", "cluster": True},
            ["sentinels: a Redis Cluster needs no sentinels"],
        ),
        (
            {"url": "redis://r:6379/0", "sentinels": ["s:1"], "master_name": "my master"},
            ["master_name: 'my master' must be printable ASCII without spaces"],
        ),
        (
            {"url": "redis://r:6379/2", "cluster": True},
            ["url: a Redis Cluster has database 0 only"],
        ),
        ({"url": "redis+cluster://a:1,b:2/1"}, ["url: a Redis Cluster has database 0 only"]),
        ({"url": "unix:///run/redis.sock", "cluster": True}, ["url: a unix:// socket"]),
        ({"url": "http://r:6379"}, ["url: 'http://r:6379' is not a Redis URL"]),
        ({"url": "r:6379"}, ["url: 'r:6379' is not a Redis URL"]),
        ({"url": "u:s3cret@r:6379"}, ["url: '***@r:6379' is not a Redis URL"]),
        ({"url": "redis://u:s3cret@r:6379/x"}, ["url: 'redis://***@r:6379/x': the database"]),
        ({"url": "redis://a:1,b:2/0"}, ["url: 'redis://a:1,b:2/0' names several hosts"]),
        ({"url": "redis://r:6379/zero"}, ["the database must be a number"]),
        ({"url": "redis+cluster://a:1,b:x"}, ["url: 'b:x': not host:port"]),
        ({"url": "redis+cluster:///0"}, ["url: no host to connect to"]),
        ({"url": "redis://[fd00::1:6379/0"}, ["url: '[fd00::1:6379': not host:port"]),
        # Every problem at once, credentials never echoed.
        (
            {"url": "redis://user:s3cret@a,b/0", "sentinels": ["x:y"]},
            ["names several hosts", "not host:port", "master_name: required"],
        ),
    ],
)
def test_bad_settings_are_refused_with_what_is_wrong(
    settings: dict[str, Any], problems: list[str]
) -> None:
    with pytest.raises(TopologyError) as caught:
        topology(**settings)
    found = caught.value.problems
    assert len(found) == len(problems), found
    for wanted, problem in zip(problems, found, strict=True):
        assert wanted in problem
    assert not any("s3cret" in p for p in found)


def test_status_shows_addresses_without_credentials() -> None:
    cluster = topology("redis+cluster://u:pw@10.0.0.1:7000,10.0.0.2:7001")
    assert cluster.describe() == {
        "topology": "cluster",
        "seeds": ["10.0.0.1:7000", "10.0.0.2:7001"],
    }
    sentinel = topology("rediss://:pw@x:1/0", sentinels=["[fd00::1]:26379"], master_name="m")
    assert sentinel.describe() == {
        "topology": "sentinel",
        "sentinels": ["[fd00::1]:26379"],
        "masterName": "m",
    }
    assert topology("redis://:pw@r:6379/0").describe() == {"topology": "single", "server": "r:6379"}
    assert topology("unix://:pw@/run/r.sock?db=1").describe() == {
        "topology": "single",
        "server": "unix:///run/r.sock",
    }


def test_the_schema_refuses_them_with_the_section_named() -> None:
    env = {"TRIPLINE__REDIS__SENTINELS": '["10.0.0.1:26379", "nope:port"]'}
    with pytest.raises(schema.ConfigError) as caught:
        schema.load(env=env)
    assert caught.value.problems == [
        "redis.sentinels: 'nope:port': not host:port (e.g. 10.0.0.5:26379)",
        (
            "redis.master_name: required with sentinels: the name the sentinels monitor "
            "(`sentinel monitor <name> ...` in their config, e.g. mymaster)"
        ),
    ]
    loaded = schema.load(
        env={"TRIPLINE__REDIS__URL": "redis+cluster://10.0.0.1:7000,10.0.0.2:7000"}
    )
    assert loaded.redis.topology().kind == Kind.CLUSTER


def test_a_sentinel_password_is_a_secret(tmp_path: Path) -> None:
    config = tmp_path / "t.toml"
    config.write_text('[redis]\nsentinel_password = "x"\n')
    with pytest.raises(schema.ConfigError) as caught:
        schema.load(config)
    variable = "TRIPLINE__REDIS__SENTINEL_PASSWORD"
    assert caught.value.problems == [
        f"{config}: redis.sentinel_password is a secret: set {variable} instead"
    ]


def test_check_config_names_every_redis_problem_and_shows_how_good_ones_read(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[redis]\nsentinels = ["10.0.0.1:26379", "10.0.0.2"]\ncluster = true\n')
    result = tripline_cli("check-config", str(bad))
    assert result.returncode == 1
    assert "redis.sentinels: a Redis Cluster needs no sentinels" in result.stderr
    assert "redis.master_name: required with sentinels" in result.stderr
    good = tmp_path / "good.toml"
    good.write_text('[redis]\nsentinels = ["10.0.0.1:26379", "10.0.0.2"]\nmaster_name = "m"\n')
    result = tripline_cli("check-config", str(good))
    assert result.returncode == 0, result.stderr
    assert '"topology": "sentinel"' in result.stdout
    assert '"10.0.0.2:26379"' in result.stdout
