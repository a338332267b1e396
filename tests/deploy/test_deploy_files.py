"""The shipped deployment files stay valid tripline configuration."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import yaml

from tripline.conf import schema

DEPLOY = Path(__file__).parent.parent.parent / "deploy"


def test_the_compose_environment_is_a_valid_configuration() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    env = {str(k): str(v) for k, v in compose["services"]["tripline"]["environment"].items()}
    config = schema.load(env=env)
    assert config.mqtt.host == "mosquitto"
    assert config.redis.url.startswith("redis://redis:")
    redis_cmd = compose["services"]["redis"]["command"]
    assert redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes"


def test_the_compose_broker_keeps_what_tripline_needs() -> None:
    conf = (DEPLOY / "mosquitto.conf").read_text()
    settings = dict(
        line.split(None, 1) for line in conf.splitlines() if line and not line.startswith("#")
    )
    assert settings["persistence"] == "true"
    assert int(settings["max_inflight_messages"]) >= 1000
    assert int(settings["max_queued_messages"]) >= 100_000


def test_the_env_example_names_only_secrets_and_every_common_one() -> None:
    example = (DEPLOY / "tripline.env.example").read_text()
    names = set(re.findall(r"^(TRIPLINE__\w+)=", example, re.MULTILINE))
    secrets = {
        f"TRIPLINE__{section.upper()}__{f.name.upper()}"
        for section, cls in schema._SECTIONS.items()
        for f in dataclasses.fields(cls)
        if f.metadata.get("secret")
    }
    assert names <= secrets
    missing = secrets - names
    assert missing <= {
        "TRIPLINE__CXONE__ACCESS_KEY_SECRET",
        "TRIPLINE__CXONE__CLIENT_SECRET",
        "TRIPLINE__TWILIO__AUTH_TOKEN",
        "TRIPLINE__HTTP__WEBHOOK_TOKEN",
        "TRIPLINE__REDIS__SENTINEL_PASSWORD",  # only for sentinels that require one
    }, missing


def test_the_systemd_unit_checks_the_config_before_it_starts() -> None:
    unit = (DEPLOY / "tripline.service").read_text()
    assert (
        "ExecStartPre=/opt/tripline/bin/tripline check-config /etc/tripline/tripline.toml" in unit
    )
    assert "Restart=on-failure" in unit
    assert "User=tripline" in unit


def test_an_instance_of_the_template_unit_gets_its_own_identity_in_a_shared_group() -> None:
    unit = (DEPLOY / "tripline@.service").read_text()
    assert "EnvironmentFile=/etc/tripline/instance-%i.env" in unit
    assert "ExecStartPre=/opt/tripline/bin/tripline check-config" in unit
    example = (DEPLOY / "tripline-instance.env.example").read_text()
    env = dict(re.findall(r"^(TRIPLINE__\w+)=(.*)$", example, re.MULTILINE))
    config = schema.load(env=env)
    assert config.mqtt.shared_group
    assert config.mqtt.client_id != schema.MqttConfig().client_id
    assert config.http.port != schema.HttpConfig().port
