"""The Docker image itself: built with no registry and no index, run against loopback services.

scripts/image builds it (scripts/_image.py: a Debian base made with mmdebstrap, a wheelhouse the
base's own pip checks, `docker build` of the repository's Dockerfile with PIP_NO_INDEX), cached by
content: the first run on a machine takes minutes, the next ones find the image in a second.
The container runs with `--network host` against the machine's Redis and Mosquitto and the
emulator on a free loopback port, as a user would run it on an edge gateway.

Docker is required. A machine whose daemon does not answer fails here, loudly — scripts/test
starts Debian's dockerd (scripts/_docker.sh) — unless TRIPLINE_SKIP_IMAGE=1 says to skip, for a
machine known to have no Docker.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import redis
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import (
    BROKER,
    EmulatorHandle,
    alert,
    free_port,
    publish,
    service_env,
    wait_for,
)
from tripline.adapters.mqtt_io import stop_network
from tripline.adapters.store import Keys

ROOT = Path(__file__).parent.parent.parent
SKIP = os.environ.get("TRIPLINE_SKIP_IMAGE") == "1"

pytestmark = [
    pytest.mark.long(80),
    pytest.mark.integration,
    # The first build on a machine: ~2 minutes idle, several on a loaded one (README).
    pytest.mark.timeout(900),
]


def load_script() -> ModuleType:
    """scripts/_image.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("_image", ROOT / "scripts" / "_image.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_build_key_covers_every_file_the_dockerfile_copies() -> None:
    script = load_script()
    files = {str(p.relative_to(ROOT)) for p in script.context_files()}
    assert {"Dockerfile", ".dockerignore", "pyproject.toml", "conf/default.toml"} <= files
    assert "tripline/edge/cli.py" in files
    assert "tripline/actors" in files  # a link: its target string is what is hashed
    assert not any("__pycache__" in f for f in files)
    assert not any(f.startswith(("tests/", "bench/", "docs/")) for f in files)


def test_what_the_bases_pip_misses_is_read_from_its_words() -> None:
    # pip 23.0.1's words (Debian bookworm's, the base's) for a wheelhouse without async-timeout.
    words = (
        "ERROR: Could not find a version that satisfies the requirement async-timeout>=4.0.3; "
        'python_full_version < "3.11.3" (from redis[hiredis]) (from versions: none)\n'
        "ERROR: No matching distribution found for async-timeout>=4.0.3"
    )
    assert load_script().MISSING.findall(words) == [
        'async-timeout>=4.0.3; python_full_version < "3.11.3" (from redis[hiredis])'
    ]


@dataclass(frozen=True)
class Built:
    """What scripts/image made."""

    image: str
    base: str
    wheelhouse: Path


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """One docker command, its output captured."""
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def built() -> Built:
    if SKIP:
        pytest.skip("TRIPLINE_SKIP_IMAGE=1: no image on this machine")
    if shutil.which("docker") is None or docker("info").returncode != 0:
        pytest.fail(
            "no Docker daemon answers: scripts/test starts Debian's dockerd when it runs as "
            "root (scripts/_docker.sh); TRIPLINE_SKIP_IMAGE=1 skips these tests"
        )
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "_image.py"), "--json"],
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-6000:]
    doc = json.loads(done.stdout.splitlines()[-1])
    return Built(image=doc["image"], base=doc["base"], wheelhouse=Path(doc["wheelhouse"]))


class Container:
    """One detached container of the image on the host's network, removed at the end."""

    def __init__(self, image: str, *options: str, env: dict[str, str]) -> None:
        self.name = f"tripline-test-{uuid.uuid4().hex[:10]}"
        flags = [f"--env={k}={v}" for k, v in env.items()]
        started = docker(
            "run", "-d", f"--name={self.name}", "--network=host", *options, *flags, image
        )
        assert started.returncode == 0, started.stderr

    def state(self) -> dict[str, Any]:
        found = docker("inspect", "--format={{json .State}}", self.name)
        assert found.returncode == 0, found.stderr
        state: dict[str, Any] = json.loads(found.stdout)
        return state

    def logs(self) -> str:
        return docker("logs", self.name).stderr

    def remove(self) -> None:
        docker("rm", "-f", self.name)


@pytest.fixture
def containers() -> Iterator[list[Container]]:
    made: list[Container] = []
    yield made
    for container in made:
        container.remove()


def discard_session(client_id: str) -> None:
    """The broker forgets the service's persistent session and what is queued in it."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.connect(*BROKER, clean_start=True)  # no session expiry: gone when we disconnect
    client.loop_start()
    client.disconnect()
    stop_network(client)


def image_env(prefix: str, emulator: EmulatorHandle, port: int) -> dict[str, str]:
    """The test's own Redis prefix, topics and client ids; two workers, as on a 2-core gateway."""
    return {
        **service_env(prefix, emulator),
        "TRIPLINE__HTTP__PORT": str(port),
        "TRIPLINE__SERVICE__WORKERS": "2",
    }


def test_the_image_runs_as_non_root_is_healthy_calls_for_an_alert_and_drains_on_sigterm(
    built: Built,
    prefix: str,
    emulator: EmulatorHandle,
    redis_client: redis.Redis,
    containers: list[Container],
) -> None:
    for customer in ("CUST-IMG-1", "CUST-IMG-2"):
        emulator.add_customer(customer)
    # Read-only but for a tmpfs at /tmp (the workers' sockets): the hardening docs/deployment.md
    # recommends. The image's own HEALTHCHECK command, checked every second rather than 15.
    container = Container(
        built.image,
        "--read-only",
        "--tmpfs=/tmp",
        "--health-interval=1s",
        env=image_env(prefix, emulator, free_port()),
    )
    containers.append(container)
    client_id = f"tripline-{prefix}"
    try:

        def healthy() -> bool:
            state = container.state()
            if not state["Running"]:
                pytest.fail(f"the container stopped: {state}\n{container.logs()[-4000:]}")
            return bool(state.get("Health", {}).get("Status") == "healthy")

        wait_for(healthy, timeout=120, interval=0.5)
        # ... and healthy because of this container: on the host's network another service may
        # answer on 8080 (one did on the development machine), so the check must follow the
        # port the container was given, and fail where nothing answers.
        check = docker("inspect", "--format={{json .Config.Healthcheck.Test}}", built.image)
        kind, command = json.loads(check.stdout)
        assert kind == "CMD-SHELL", check.stdout
        elsewhere = f"--env=TRIPLINE__HTTP__PORT={free_port()}"
        assert docker("exec", elsewhere, container.name, "sh", "-c", command).returncode != 0

        # The parent and its two workers: every process of the container, none of them root.
        top = docker("top", container.name, "-eo", "pid,uid,args")
        assert top.returncode == 0, top.stderr
        rows = [line.split(None, 2) for line in top.stdout.splitlines()[1:]]
        assert len(rows) >= 3, top.stdout
        assert {uid for _, uid, _ in rows} == {"10001"}, top.stdout

        first = alert(customer="CUST-IMG-1", sensor="IMG-S1")
        publish(f"tt/{prefix}/sensors/IMG-S1/alerts", first)
        wait_for(lambda: len(emulator.callbacks()) == 1, timeout=60)

        # A call still in flight when SIGTERM comes: the drain waits for its answer.
        emulator.state.settings.latency_ms = 3000
        second = alert(customer="CUST-IMG-2", sensor="IMG-S2")
        publish(f"tt/{prefix}/sensors/IMG-S2/alerts", second)
        calls = "/api/v2/conversations/callbacks"
        wait_for(lambda: len(emulator.requests(calls)) == 2, timeout=60)
        assert emulator.requests(calls)[1]["status"] == 0  # not answered yet
        stopped = docker("stop", "--time=60", container.name)  # SIGTERM, SIGKILL after 60 s
        assert stopped.returncode == 0, stopped.stderr

        state, logs = container.state(), container.logs()
        assert state["ExitCode"] == 0, logs[-4000:]
        assert not state["OOMKilled"]
        for trouble in ("drain timed out", "did not stop cleanly", "actors survived", "Traceback"):
            assert trouble not in logs, logs[-4000:]
        assert len(emulator.callbacks()) == 2
        for doc in (first, second):
            record = Keys(prefix).record(doc["idempotencyKey"])
            assert redis_client.hget(record, "outcome") == b"called", doc
    finally:
        container.remove()
        for worker_client in (client_id, f"{client_id}-w1"):
            discard_session(worker_client)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        pytest.param(None, "No such file or directory", id="no-file-mounted"),
        pytest.param(0o600, "Permission denied", id="a-root-only-file"),
    ],
)
def test_a_config_the_service_cannot_read_is_named_and_nothing_starts(
    built: Built, tmp_path: Path, mode: int | None, expected: str
) -> None:
    config = tmp_path / "tripline.toml"
    mount = []
    if mode is not None:
        config.write_text('[mqtt]\nclient_id = "never-used"\n')
        config.chmod(mode)  # the test's own user owns it; the image's user 10001 cannot read it
        mount = [f"--mount=type=bind,source={config},target=/etc/tripline/tripline.toml,readonly"]
    done = docker(
        "run", "--rm", "--network=none", *mount, built.image,
        "run", "--config", "/etc/tripline/tripline.toml",
    )  # fmt: skip
    assert done.returncode == 1, done
    assert f"config: /etc/tripline/tripline.toml: [Errno {2 if mode is None else 13}]" in (
        done.stderr
    ), done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr


def test_a_read_only_root_without_a_writable_tmp_is_one_clear_error(
    built: Built, prefix: str, emulator: EmulatorHandle
) -> None:
    env = [f"--env={k}={v}" for k, v in image_env(prefix, emulator, free_port()).items()]
    done = docker("run", "--rm", "--network=host", "--read-only", *env, built.image)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "no directory for the workers' sockets" in done.stderr
    assert "--tmpfs /tmp" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_wheelhouse_missing_a_package_is_named_before_any_build(
    built: Built, tmp_path: Path
) -> None:
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    for wheel in built.wheelhouse.glob("*.whl"):
        if not wheel.name.startswith("async_timeout-"):  # what Debian's 3.11.2 alone needs
            shutil.copy(wheel, wheelhouse)
    done = subprocess.run(
        [
            *(sys.executable, str(ROOT / "scripts" / "_image.py"), "--base", built.base),
            *("--wheelhouse", str(wheelhouse), "--offline"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert f"the wheelhouse {wheelhouse} lacks what Python 3.11.2" in done.stderr
    assert "async-timeout" in done.stderr
    assert "docker build" not in done.stderr.lower()
    assert done.stdout == ""
