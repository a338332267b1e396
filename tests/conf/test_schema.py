"""Config: defaults, file and environment overrides, and every problem reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tripline.conf import schema

DATA = Path(__file__).parent / "data"


def test_defaults_load_and_hold_every_section() -> None:
    config = schema.load(env={})
    assert config.mqtt.topic == "sensors/+/alerts"
    assert config.sensor.cooldown_seconds == 3600
    assert config.comply.number_caps == ["3/24h"]
    assert set(config.priorities.routing) == set(schema.PRIORITY_NAMES)


def test_file_then_environment_override_defaults() -> None:
    config = schema.load(
        DATA / "good.toml",
        env={"TRIPLINE__SENSOR__SHARDS": "6", "TRIPLINE__GENESYS__CLIENT_SECRET": "s3cret"},
    )
    assert config.mqtt.host == "broker.example"
    assert config.sensor.shards == 6
    assert config.sensor.cooldown_seconds == 1800
    assert config.dialer.backend == "log"
    assert config.comply.customer_caps == ["2/1h", "5/24h"]
    assert config.genesys.client_secret == "s3cret"
    assert schema.masked(config)["genesys"]["client_secret"] == "********"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(schema.ConfigError) as caught:
        schema.load(DATA / "bad-many.toml", env={"TRIPLINE__HTTP__PORT": "-1"})
    text = "\n".join(caught.value.problems)
    expected = [
        "mqtt.prot: unknown key (did you mean 'port'?)",
        "mqtt.qos: must be one of 1, 2",
        "sensor.shards: must be at least 1",
        "sensor.cooldown_seconds: must be an integer",
        "dialer.backend: must be one of genesys, genesys_campaign, cxone, twilio, log",
        "comply.number_caps: every cap must read like 3/24h",
        "comply.rules_file: /nonexistent/rules.toml is not a readable file",
        "genesys.client_secret is a secret: set TRIPLINE__GENESYS__CLIENT_SECRET instead",
        "unknown section [statuss] (did you mean 'status'?)",
        "http.port: must be at least 0",
    ]
    for line in expected:
        assert line in text
    assert len(caught.value.problems) == len(expected)


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text("[mqtt\n")
    with pytest.raises(schema.ConfigError):
        schema.load(bad, env={})


def test_environment_values_parse_as_toml_or_stay_strings() -> None:
    config = schema.load(
        env={
            "TRIPLINE__MQTT__TLS": "true",
            "TRIPLINE__MQTT__HOST": "10.0.0.5",
            "TRIPLINE__DIALER__BURST": "3",
        }
    )
    assert config.mqtt.tls is True
    assert config.mqtt.host == "10.0.0.5"
    assert config.dialer.burst == 3


def test_shipped_demo_config_is_valid() -> None:
    root = Path(__file__).parents[2]
    config = schema.load(root / "conf" / "demo.toml", env={})
    assert config.genesys.base_url == "http://127.0.0.1:8090"


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        pytest.param({"TRIPLINE__HTTP__READ_TOKEN": "r3ad-Token_~"}, None, id="a-read-token"),
        pytest.param(
            {
                "TRIPLINE__HTTP__ALLOWED_ORIGINS": '["https://desk.example.com", "http://10.0.0.5:8080"]'
            },
            None,
            id="origins",
        ),
        pytest.param(
            {"TRIPLINE__HTTP__FRAME_ANCESTORS": '["\'self\'", "https://*.mypurecloud.com"]'},
            None,
            id="frame-ancestors",
        ),
        pytest.param(
            {"TRIPLINE__HTTP__FRAME_ANCESTORS": "[\"'none'\"]"}, None, id="framed-by-none"
        ),
        pytest.param(
            {"TRIPLINE__HTTP__CONTEXT_TOKEN": "two words"},
            "http.context_token: must be printable ASCII without spaces",
            id="a-token-with-a-space",
        ),
        pytest.param(
            {"TRIPLINE__HTTP__ADMIN_TOKEN": "t\u00f6k"},
            "http.admin_token: must be printable ASCII without spaces",
            id="a-non-ascii-token",
        ),
        pytest.param(
            {"TRIPLINE__HTTP__ALLOWED_ORIGINS": '["https://desk.example.com/"]'},
            'http.allowed_origins: "https://desk.example.com/" not an origin',
            id="an-origin-with-a-path",
        ),
        pytest.param(
            {"TRIPLINE__HTTP__ALLOWED_ORIGINS": '["*"]'},
            'http.allowed_origins: "*" not an origin',
            id="no-wildcard-origin",
        ),
        pytest.param(
            {"TRIPLINE__HTTP__ALLOWED_ORIGINS": '"https://desk.example.com"'},
            "http.allowed_origins: must be a list of strings",
            id="origins-are-a-list",
        ),
        pytest.param(
            {"TRIPLINE__HTTP__FRAME_ANCESTORS": '["https://desk.example.com; script-src *"]'},
            "http.frame_ancestors: \"https://desk.example.com; script-src *\" not 'self'",
            id="no-directive-injection",
        ),
        pytest.param(
            {"TRIPLINE__HTTP__FRAME_ANCESTORS": '["none"]'},
            "http.frame_ancestors: \"none\" not 'self'",
            id="keywords-keep-their-quotes",
        ),
        pytest.param(
            {"TRIPLINE__HTTP__FRAME_ANCESTORS": "[\"'none'\", \"'self'\"]"},
            "http.frame_ancestors: 'none' stands alone",
            id="none-stands-alone",
        ),
    ],
)
def test_http_doors_are_checked(env: dict[str, str], problem: str | None) -> None:
    if problem is None:
        schema.load(env=env)
        return
    with pytest.raises(schema.ConfigError) as caught:
        schema.load(env=env)
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_the_read_token_is_a_secret_and_the_lists_come_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "http.toml"
    path.write_text('[http]\nallowed_origins = ["https://desk.example.com"]\n')
    config = schema.load(path, env={"TRIPLINE__HTTP__READ_TOKEN": "r"})
    assert config.http.allowed_origins == ["https://desk.example.com"]
    assert config.http.frame_ancestors == []
    assert schema.masked(config)["http"]["read_token"] == "********"
    path.write_text('[http]\nread_token = "in-a-file"\n')
    with pytest.raises(schema.ConfigError) as caught:
        schema.load(path, env={})
    assert caught.value.problems == [
        f"{path}: http.read_token is a secret: set TRIPLINE__HTTP__READ_TOKEN instead"
    ]


@pytest.mark.parametrize(
    ("critical", "topic", "problem"),
    [
        ("", "sensors/+/alerts", None),
        ("critical/+/alerts", "sensors/+/alerts", None),
        ("sensors/+/alerts/critical", "sensors/+/alerts", None),  # one level more: disjoint
        ("sensors/+/critical", "sensors/+/alerts", None),
        ("sensors/#", "sensors/+/alerts", "overlaps topic"),
        ("#", "sensors/+/alerts", "overlaps topic"),
        ("sensors/S-1/alerts", "sensors/+/alerts", "overlaps topic"),
        ("a/#", "a", "overlaps topic"),  # a/# matches a itself
        ("+/+/+", "sensors/+/alerts", "overlaps topic"),
        ("sensors/#/alerts", "x/y", "not an MQTT topic filter"),
        ("sensors/a+/alerts", "x/y", "not an MQTT topic filter"),
        ("$share/g/critical/+", "x/y", "not an MQTT topic filter"),
    ],
)
def test_the_critical_topic_is_a_filter_of_its_own(
    critical: str, topic: str, problem: str | None
) -> None:
    env = {"TRIPLINE__MQTT__CRITICAL_TOPIC": critical, "TRIPLINE__MQTT__TOPIC": topic}
    if problem is None:
        assert schema.load(env=env).mqtt.critical_topic == critical
        return
    with pytest.raises(schema.ConfigError) as caught:
        schema.load(env=env)
    assert problem in str(caught.value)
    assert "critical_topic" in str(caught.value)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({}, None),
        ({"TRIPLINE__DIALER__MAX_ALERT_AGE_SECONDS": "{ critical = 30 }"}, "max_alert_age"),
        ({"TRIPLINE__DIALER__MAX_ALERT_AGE_SECONDS": "{ urgent = 3600 }"}, "max_alert_age"),
        ({"TRIPLINE__DIALER__MAX_ALERT_AGE_SECONDS": "{ low = 1.5e9 }"}, "max_alert_age"),
        ({"TRIPLINE__DIALER__MAX_ALERT_AGE_SECONDS": "{ high = 600 }"}, None),  # others: none
        ({"TRIPLINE__CRM__MAX_PROFILE_AGE_SECONDS": "-1"}, "max_profile_age"),
        ({"TRIPLINE__CRM__MAX_PROFILE_AGE_SECONDS": "0"}, None),  # 0: read before every call
    ],
)
def test_the_freshness_limits_are_checked(env: dict[str, str], problem: str | None) -> None:
    """Defaults per priority (README "Nothing lost, nothing twice"), and what is refused."""
    if problem is None:
        config = schema.load(env=env)
        if not env:
            assert config.dialer.max_alert_age_seconds == {
                "critical": 14400,
                "high": 7200,
                "normal": 3600,
                "low": 1800,
            }
            assert config.crm.max_profile_age_seconds == 300
        return
    with pytest.raises(schema.ConfigError) as caught:
        schema.load(env=env)
    assert any(problem in p for p in caught.value.problems), caught.value.problems
