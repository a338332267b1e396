"""Workers per core: how many, who each one is, and what each one does alone."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tripline.conf import schema
from tripline.service import workers


def test_worker_zero_keeps_the_client_id_and_the_others_get_a_suffix() -> None:
    assert workers.client_id("tripline-1", 0) == "tripline-1"
    assert workers.client_id("tripline-1", 1) == "tripline-1-w1"
    assert workers.client_id("tripline-1", 11) == "tripline-1-w11"


def test_the_implicit_group_is_the_client_id_without_topic_characters() -> None:
    assert workers.implicit_group("tripline-1") == "tripline-1"
    assert workers.implicit_group("site/a+b#") == "site_a_b_"


def test_one_worker_is_the_configuration_unchanged() -> None:
    config = schema.load(env={})
    assert workers.worker_config(config, 0, 1) is config


def test_each_worker_has_its_identity_in_one_group_and_its_share_of_polling() -> None:
    config = schema.load(env={"TRIPLINE__MQTT__CLIENT_ID": "gw-7"})
    zero, one = (workers.worker_config(config, i, 2) for i in range(2))
    assert (zero.mqtt.client_id, one.mqtt.client_id) == ("gw-7", "gw-7-w1")
    assert zero.mqtt.shared_group == one.mqtt.shared_group == "gw-7"
    # The CRM's whole customer list is fetched once, by worker 0.
    assert zero.crm.sync_interval_seconds == config.crm.sync_interval_seconds
    assert one.crm.sync_interval_seconds == 0
    # Occupancy polls draw on the shared rate budget: together as often as one instance.
    poll = config.dialer.occupancy_poll_seconds
    assert zero.dialer.occupancy_poll_seconds == one.dialer.occupancy_poll_seconds == poll * 2
    assert zero.redis == config.redis
    assert zero.http == config.http


def test_a_configured_group_is_kept() -> None:
    config = schema.load(env={"TRIPLINE__MQTT__SHARED_GROUP": "fleet"})
    assert workers.worker_config(config, 1, 3).mqtt.shared_group == "fleet"


def test_the_flag_beats_the_config_and_zero_means_one_per_usable_core() -> None:
    assert workers.worker_count(3, None) == 3
    assert workers.worker_count(3, 1) == 1
    assert workers.worker_count(0, None) == workers.usable_cores()
    assert workers.worker_count(4, 0) == workers.usable_cores()
    assert 1 <= workers.usable_cores() <= len(os.sched_getaffinity(0))


def test_workers_is_a_config_key_with_bounds() -> None:
    assert schema.load(env={}).service.workers == 0
    assert schema.load(env={"TRIPLINE__SERVICE__WORKERS": "4"}).service.workers == 4
    with pytest.raises(schema.ConfigError, match=r"service.workers: must be at least 0"):
        schema.load(env={"TRIPLINE__SERVICE__WORKERS": "-1"})


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ({"": "max 100000", "a": "150000 100000"}, 2),  # 1.5 CPUs: two processes' worth
        ({"": "200000 100000", "a": "max 100000"}, 2),  # the parent's limit holds
        ({"": "max 100000", "a": "max 100000"}, None),
        ({}, None),
    ],
)
def test_the_cgroup_cpu_quota_bounds_the_cores(
    tmp_path: Path, cpu_max: dict[str, str], expected: int | None
) -> None:
    root = tmp_path / "cgroup"
    (root / "slice" / "a").mkdir(parents=True)
    for where, text in cpu_max.items():
        (root / "slice" / where / "cpu.max").write_text(text + "\n")
    own = tmp_path / "self"
    own.write_text("0::/slice/a\n")
    assert workers.cgroup_cpu_limit(root, own) == expected


def test_restarts_back_off_up_to_a_cap() -> None:
    delays = [workers.restart_delay(n) for n in range(1, 10)]
    assert delays[:3] == [0.5, 1.0, 2.0]
    assert max(delays) == 30.0
    assert delays == sorted(delays)


def test_the_reserved_port_is_shared_with_reuseport_listeners() -> None:
    held, port = workers.reserve_port("127.0.0.1", 0)
    try:
        assert port > 0
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            accepted, _ = listener.accept()  # the listener, not the held socket, takes it
            accepted.close()
        listener.close()
        plain = socket.socket()
        with pytest.raises(OSError, match="in use"):  # anyone else is refused the port
            plain.bind(("127.0.0.1", port))
        plain.close()
    finally:
        held.close()


def test_nowhere_to_write_the_sockets_is_one_clear_error_and_frees_the_port(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # What tempfile says on a read-only root without a writable /tmp (`docker run --read-only`).
    def unwritable() -> Path:
        raise FileNotFoundError("No usable temporary directory found in ['/tmp', '/var/tmp']")

    monkeypatch.setattr(workers, "runtime_dir", unwritable)
    port = free_port()
    config = schema.load(env={"TRIPLINE__HTTP__PORT": str(port)})
    started: list[int] = []

    def command(index: int, _directory: Path, _parent: int) -> list[str]:
        started.append(index)
        return [sys.executable, "-c", "pass"]

    assert workers.run_parent(config, 2, command) == 1
    assert started == []  # no worker was started
    with socket.socket() as again:  # the reserved port was let go
        again.bind(("127.0.0.1", port))
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "No usable temporary directory" in record.getMessage()
    assert "--tmpfs /tmp" in record.getMessage()
    assert record.exc_info is None


def test_the_parent_replaces_a_dead_worker_and_passes_sigterm_on(tmp_path: Path) -> None:
    started = tmp_path / "started"
    script = (
        "import signal, sys, time, pathlib\n"
        f"pathlib.Path({str(started)!r}).open('a').write(sys.argv[1] + '\\n')\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        "time.sleep(60)\n"
    )
    parent = workers.Parent(
        2, lambda i: [sys.executable, "-c", script, str(i)], dict(os.environ), stop_seconds=10
    )

    def lines() -> list[str]:
        return started.read_text().split() if started.exists() else []

    def drive() -> None:
        deadline = time.monotonic() + 20
        while len(lines()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        victim = parent._workers[1].proc
        assert victim is not None
        victim.kill()
        while len(lines()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    driver = threading.Thread(target=drive)
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    driver.start()
    try:
        assert parent.run() == 0
    finally:
        driver.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert sorted(lines()) == ["0", "1", "1"]
    assert all(w.proc is not None and w.proc.poll() == 0 for w in parent._workers)


def test_a_worker_stops_when_its_parent_dies(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    child = (
        "import os, pathlib, signal, sys, time\n"
        "from tripline.service.workers import die_with_parent\n"
        "die_with_parent(os.getppid())\n"
        f"pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])",
        ]
    )
    try:
        deadline = time.monotonic() + 20
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        worker = int(pid_file.read_text())
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while _running(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(worker)
    finally:
        if parent.poll() is None:
            parent.kill()


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_fewer_workers_than_last_time_is_a_warning(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = schema.load(
        env={"TRIPLINE__REDIS__KEY_PREFIX": prefix, "TRIPLINE__MQTT__CLIENT_ID": "gw"}
    )
    assert workers.note_count(config, 3) is None
    assert workers.note_count(config, 3) == 3
    assert not caplog.records
    assert workers.note_count(config, 1) == 3
    (warning,) = [r.getMessage() for r in caplog.records]
    assert (
        "1 workers now, 3 before: the broker sessions and unfinished alerts of gw-w1, gw-w2"
        in warning
    )
    assert "adopted by a live worker" in warning
