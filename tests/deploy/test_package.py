"""The Docker image's install, without Docker: what the Dockerfile copies, installed as it installs
it, runs the service away from the source tree.

The image itself is built and run by tests/deploy/test_image.py, which needs a Docker daemon
and minutes on a machine's first run. This is the quick check of the same promise, anywhere: it
builds what the build stage builds — the files its COPY lines name, a non-editable pip install
(into a prefix here, into a venv in the image) — and runs its ENTRYPOINT from there, in a
directory that is not the repository: a module, a TOML file or a page left out of the package
(or out of the COPY lines) fails here instead of in the first container a user starts.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import EmulatorHandle, alert, free_port, http, service_env, wait_for

ROOT = Path(__file__).parent.parent.parent

pytestmark = pytest.mark.integration


def build_stage_copies(dockerfile: str) -> list[tuple[list[str], str]]:
    """The (sources, destination) of each COPY in the first stage, --from copies excluded."""
    copies: list[tuple[list[str], str]] = []
    stage = 0
    for line in dockerfile.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0].upper() == "FROM":
            stage += 1
        elif words[0].upper() == "COPY" and stage == 1 and not words[1].startswith("--"):
            copies.append((words[1:-1], words[-1]))
    return copies


def test_the_build_stage_copies_are_read_from_the_dockerfile() -> None:
    copies = build_stage_copies(
        "FROM a AS build\nCOPY x.toml y.py ./\nCOPY pkg pkg  # the package\n"
        "RUN pip install \\\n  .\nFROM a\nCOPY --from=build /install /usr/local\nCOPY z z\n"
    )
    assert copies == [(["x.toml", "y.py"], "./"), (["pkg"], "pkg")]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prefix holding tripline as the image's build stage installs it."""
    work = tmp_path_factory.mktemp("image")
    src, prefix = work / "src", work / "install"
    src.mkdir()
    for sources, dest in build_stage_copies((ROOT / "Dockerfile").read_text()):
        for name in sources:
            origin = ROOT / name
            target = src / dest / origin.name if dest.endswith("/") else src / dest
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(origin, target)
    # The dependencies are the test environment's own; the build backend too (the image
    # fetches both from PyPI, a test should not).
    # --ignore-installed: without it pip uninstalls the test environment's own (editable)
    # tripline before installing into the prefix, and `tripline` is gone from the venv.
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    pip.append("--ignore-installed")
    before = installed_here()
    built = subprocess.run(
        [*pip, "--prefix", str(prefix), str(src)],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    # A deprecated packaging field is a build that stops working on a later setuptools.
    assert "BuildBackendWarning" not in built.stderr, built.stderr
    assert installed_here() == before, "the build touched the test environment's own install"
    return prefix


def installed_here() -> bool:
    """Whether this environment has tripline installed (its console script, as scripts/ use)."""
    return (Path(sysconfig.get_path("scripts")) / "tripline").exists()


def image_env(prefix: Path, **extra: str) -> dict[str, str]:
    """The environment of a process that sees the installed copy, not the repository."""
    purelib = sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)})
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIPLINE")}
    return {**env, "PYTHONPATH": purelib, "PYTHONSAFEPATH": "1", **extra}


def test_the_installed_copy_is_what_runs_all_under_one_name(installed: Path) -> None:
    modules = [
        "tripline",
        "tripline.conf",
        "tripline.actors",
        "tripline.pipeline",
        "tripline.supervisor",
        "tripline.messages",
    ]
    code = f"import {', '.join(modules)}; print({', '.join(m + '.__file__' for m in modules)})"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=image_env(installed),
        cwd=installed,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(out) == len(modules)
    assert all(Path(path).is_relative_to(installed) for path in out), out
    # Nothing but tripline in site-packages: no global supervisor, messages, actors, ...
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(installed)}))
    names = {p.name for p in purelib.iterdir() if p.name != "__pycache__"}
    assert {n for n in names if not n.endswith(".dist-info")} == {"tripline"}, names


def test_the_image_copies_what_the_package_links_to() -> None:
    # tripline/actors, ... are links to the top-level actors/, ...: the build stage must copy
    # their targets beside tripline/ or the links dangle in the image.
    copied = {
        Path(name).name
        for sources, _ in build_stage_copies((ROOT / "Dockerfile").read_text())
        for name in sources
    }
    links = [p for p in (ROOT / "tripline").iterdir() if p.is_symlink()]
    assert {p.name for p in links} == {
        "actors",
        "pipeline",
        "conf",
        "supervisor.py",
        "messages.py",
    }
    for link in links:
        target = (link.parent / link.readlink()).resolve()
        assert target.parent == ROOT.resolve()
        assert target.name in copied, f"the Dockerfile does not copy {target.name}"


def test_the_image_entrypoint_serves_alerts_its_dashboard_and_stops_on_sigterm(
    installed: Path, prefix: str, emulator: EmulatorHandle, tmp_path: Path
) -> None:
    emulator.add_customer("CUST-IMAGE")
    port = free_port()
    env = image_env(
        installed,
        **service_env(prefix, emulator),
        TRIPLINE_LOG_FORMAT="json",
        TRIPLINE__HTTP__PORT=str(port),
    )
    log = tmp_path / "tripline.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [str(installed / "bin" / "tripline"), "run"],  # the image's ENTRYPOINT and CMD
            env=env,
            cwd=installed,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"tripline exited: {log.read_text()}")
            try:
                return http("GET", f"{url}/readyz")[0] == 200
            except OSError:
                return False

        wait_for(ready, timeout=20, interval=0.1)
        assert http("GET", f"{url}/healthz")[0] == 200  # the image's HEALTHCHECK
        doc = alert(customer="CUST-IMAGE")
        assert http("POST", f"{url}/v1/alerts", doc)[0] == 202
        wait_for(lambda: http("GET", f"{url}/v1/alerts/{doc['idempotencyKey']}")[1].get("outcome"))
        assert http("GET", f"{url}/v1/alerts/{doc['idempotencyKey']}")[1]["outcome"] == "called"
        status, page = http("GET", f"{url}/")  # the dashboard, a page shipped as package data
        assert status == 200
        assert "<html" in page.lower()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
