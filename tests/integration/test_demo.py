"""`tripline demo --exit` as CI and a pipe see it: plain progress lines, the summary, where to
look next, and the service's JSON logs in a file whose path is printed.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.conftest import REDIS_URL, free_port

pytestmark = pytest.mark.integration

ROW = re.compile(r"^(called|suppressed|deferred|rejected)\s+(\S+)\s+(\d+)$")


def _demo(
    tmp_path: Path, prefix: str, *args: str, port: int, emulator_port: int
) -> subprocess.CompletedProcess[str]:
    topic_root = f"tt/{prefix}"
    env = {
        **os.environ,
        "TMPDIR": str(tmp_path),  # where the demo's log directory goes
        "TRIPLINE__REDIS__URL": REDIS_URL,
        "TRIPLINE__REDIS__KEY_PREFIX": prefix,
        "TRIPLINE__MQTT__CLIENT_ID": f"tripline-{prefix}",
        "TRIPLINE__MQTT__TOPIC": f"{topic_root}/sensors/+/alerts",
        "TRIPLINE__MQTT__REJECTED_TOPIC": f"{topic_root}/rejected",
    }
    env.pop("TRIPLINE_LOG_FORMAT", None)
    command = [sys.executable, "-m", "tripline.edge.cli", "demo", "--exit", *args]
    command += ["--port", str(port), "--emulator-port", str(emulator_port)]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=110, check=False
    )


@pytest.mark.timeout(120)
def test_the_demo_shows_progress_the_summary_and_where_to_look_with_the_logs_in_a_file(
    tmp_path: Path, prefix: str
) -> None:
    port, emulator_port = free_port(), free_port()
    run = _demo(tmp_path, prefix, "--count", "40", port=port, emulator_port=emulator_port)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    lines = out.splitlines()
    # No log line on the terminal: not on stdout, not on stderr.
    assert not [line for line in lines if line.startswith("{")]
    assert not [line for line in run.stderr.splitlines() if line.startswith("{")], run.stderr
    assert "\x1b" not in out  # not a terminal: no escape codes, no redrawn display

    # Plain progress lines, the last with every message decided.
    progress = [line for line in lines if line.startswith("published ")]
    assert progress
    assert progress[-1].startswith("published 40/40 · ")
    assert " · decided 40/40 · " in progress[-1]

    # The summary: every published message has one row's worth of answer.
    rows = [m.groups() for line in lines if (m := ROW.match(line.strip()))]
    assert sum(int(n) for _, _, n in rows) == 40
    # (Which outcomes show is the simulator's random draw: 40 messages may hold no malformed one.)
    assert len({(outcome, reason) for outcome, reason, _ in rows}) == len(rows)

    # Where to look next: this run's ports, one record, the log file.
    service = f"http://127.0.0.1:{port}"
    assert re.search(rf"^\s+dashboard\s+{service}/$", out, re.MULTILINE)
    assert re.search(rf"^\s+status \(JSON\)\s+{service}/status$", out, re.MULTILINE)
    assert re.search(
        rf"^\s+what the contact center got\s+http://127.0.0.1:{emulator_port}/_emulator/requests$",
        out,
        re.MULTILINE,
    )
    record = re.search(rf"^\s+one record \((\S+)\)\s+{service}/v1/alerts/(\S+)$", out, re.MULTILINE)
    assert record

    # The log file: printed before the run and after it, under TMPDIR, JSON lines only.
    logs = r"^\s+(?:logs \(JSON\)|the service's logs \(JSON\))\s+(\S+)$"
    paths = re.findall(logs, out, re.MULTILINE)
    assert len(paths) == 2
    assert paths[0] == paths[1]
    log_file = Path(paths[0])
    assert log_file.parent.parent == tmp_path
    docs = [orjson.loads(line) for line in log_file.read_text("utf-8").splitlines()]
    assert all({"ts", "level", "logger", "msg"} <= doc.keys() for doc in docs)
    decisions = [doc["decision"] for doc in docs if doc["logger"] == "tripline.decision"]
    assert len(decisions) == 40  # one per published message, as the summary counts them
    assert record.group(2) in {d["idempotencyKey"] for d in decisions}
    assert any(doc["logger"] == "tripline.mqtt" for doc in docs)  # the service's own lines too


def test_a_taken_port_is_named_before_anything_starts(tmp_path: Path, prefix: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = _demo(tmp_path, prefix, port=port, emulator_port=free_port())
    assert run.returncode == 2
    assert f"127.0.0.1:{port}" in run.stderr
    assert "--port" in run.stderr
    assert "publish" not in run.stdout  # nothing started
    assert not list(tmp_path.iterdir())
