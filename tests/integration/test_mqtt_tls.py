"""MQTT over TLS against a real Mosquitto: username/password, and client certificates."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import EmulatorHandle, ServiceHandle, alert, free_port, wait_for
from tripline.adapters.mqtt_io import stop_network
from tripline.supervisor import Service

pytestmark = pytest.mark.integration


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki() -> Iterator[Path]:
    """A CA, a broker certificate for 127.0.0.1 and a client certificate, all made here."""
    # World-readable on purpose: Mosquitto started as root drops to its own user.
    root = Path(tempfile.mkdtemp(prefix="tripline-tls-", dir="/tmp"))
    root.chmod(0o755)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        cwd=root,
    )
    (root / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, cn in (("broker", "127.0.0.1"), ("client", "tripline-test")):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={cn}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            cwd=root,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            f"{name}.pem",
            *(["-extfile", "san.ext"] if name == "broker" else []),
            cwd=root,
        )
    for path in root.iterdir():
        path.chmod(0o644)
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(root / "passwd"), "tl", "tl-pass"],
        check=True,
        capture_output=True,
    )
    (root / "passwd").chmod(0o644)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def tls_broker(pki: Path, request: pytest.FixtureRequest) -> Iterator[int]:
    """A TLS-only Mosquitto: password auth, or (param 'certificate') client certificates."""
    port = free_port()
    by_certificate = getattr(request, "param", "password") == "certificate"
    conf = pki / f"mosquitto-{port}.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        f"cafile {pki}/ca.pem\ncertfile {pki}/broker.pem\nkeyfile {pki}/broker.key\n"
        + (
            "require_certificate true\nuse_identity_as_username true\nallow_anonymous false\n"
            if by_certificate
            else f"allow_anonymous false\npassword_file {pki}/passwd\n"
        )
        + "persistence false\nmax_inflight_messages 1000\n"
    )
    conf.chmod(0o644)
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
    yield port
    proc.terminate()
    proc.wait(5)
    if proc.stderr is not None:
        proc.stderr.close()


def publish_tls(port: int, pki: Path, topic: str, doc: dict[str, object], **auth: str) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.tls_set(
        ca_certs=str(pki / "ca.pem"),
        certfile=auth.get("certfile"),
        keyfile=auth.get("keyfile"),
        tls_version=ssl.PROTOCOL_TLS_CLIENT,
    )
    if "username" in auth:
        client.username_pw_set(auth["username"], auth["password"])
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(topic, orjson.dumps(doc), qos=1).wait_for_publish(10)
    client.disconnect()
    stop_network(client)


@pytest.mark.parametrize("tls_broker", ["password", "certificate"], indirect=True)
def test_alerts_arrive_over_tls(
    tls_broker: int,
    pki: Path,
    make_service: Callable[..., ServiceHandle],
    emulator: EmulatorHandle,
    request: pytest.FixtureRequest,
) -> None:
    """Username and password, or a client certificate: both end in a call."""
    by_certificate = request.node.callspec.params["tls_broker"] == "certificate"
    client_auth = (
        {"certfile": str(pki / "client.pem"), "keyfile": str(pki / "client.key")}
        if by_certificate
        else {"username": "tl", "password": "tl-pass"}
    )
    service_auth = (
        {
            "TRIPLINE__MQTT__CERT_FILE": client_auth["certfile"],
            "TRIPLINE__MQTT__KEY_FILE": client_auth["keyfile"],
        }
        if by_certificate
        else {"TRIPLINE__MQTT__USERNAME": "tl", "TRIPLINE__MQTT__PASSWORD": "tl-pass"}
    )
    service = make_service(
        TRIPLINE__MQTT__PORT=str(tls_broker),
        TRIPLINE__MQTT__TLS="true",
        TRIPLINE__MQTT__CA_FILE=str(pki / "ca.pem"),
        **service_auth,
    ).start()
    emulator.add_customer("C-TLS")
    doc = alert(customer="C-TLS", sensor="TLS-1")
    topic = f"{service.topic_root}/sensors/TLS-1/alerts"
    publish_tls(tls_broker, pki, topic, doc, **client_auth)
    wait_for(lambda: service.outcome(doc["idempotencyKey"]) == "called")


def test_a_wrong_password_never_connects(
    tls_broker: int, pki: Path, make_service: Callable[..., ServiceHandle]
) -> None:
    handle = make_service(
        TRIPLINE__MQTT__PORT=str(tls_broker),
        TRIPLINE__MQTT__TLS="true",
        TRIPLINE__MQTT__CA_FILE=str(pki / "ca.pem"),
        TRIPLINE__MQTT__USERNAME="tl",
        TRIPLINE__MQTT__PASSWORD="wrong",
    )
    handle.service = Service(handle.config)
    handle.service.start()  # starts; the subscriber keeps retrying, never connected
    time.sleep(2.0)
    assert not handle.service.broker_connected()
