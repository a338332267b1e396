"""The air-gapped image build: the Dockerfile on a base and a wheelhouse, no registry, no index.

Three steps, each cached by what it is made of, so a second run with nothing changed takes
about a second:

1. The base (unless --base names one): a Debian bookworm root file system from the mirror apt
   already uses (mmdebstrap, minbase plus python3, its venv module and the CA certificates),
   imported with `docker import` as tripline-base:bookworm-<key>. No registry.
2. The wheelhouse: every dependency as a wheel for the base's own interpreter. pip on this
   machine downloads them for the base's Python version and platform tags, then the base's pip
   (in a container without network) checks them with `--no-index --dry-run`; what it still
   misses is downloaded and checked again. The check is the point: markers are evaluated by
   the interpreter that reads them, and redis needs async-timeout on Debian's 3.11.2
   (`python_full_version < "3.11.3"`) but not on the 3.11.7 that resolved it here.
   --offline only checks: a wheelhouse brought to an edge site must already hold everything.
3. The image: `docker build` of the repository's Dockerfile with BASE, PIP_NO_INDEX=1 and
   PIP_FIND_LINKS, the wheelhouse served on loopback for the build alone (--network host),
   tagged tripline:<key> (the Dockerfile, the files it copies, the base, the wheels).

Prints the image's name last on stdout (--json: the image, its base and its wheelhouse).
Usage: scripts/image [--base IMAGE] [--wheelhouse DIR] [--offline] [--tag NAME] [--json]
(docs/deployment.md, "An air-gapped build").
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
MIRROR = "http://deb.debian.org/debian"
HOST_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
# Documentation and translations are ~15 % of the unpacking and nothing a service reads; the
# copyright files stay. force-unsafe-io: dpkg's fsync per file is most of a cold base's time.
DPKG_OPTIONS = (
    "force-unsafe-io",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
)
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CHECK_ROUNDS = 6
"""Download-and-check rounds: each finds one more requirement only the base's markers name."""
MISSING = re.compile(r"satisfies the requirement (.+?) \(from versions")


class ImageError(Exception):
    """A step that cannot go on, said with what to do about it."""


def main(argv: list[str] | None = None) -> int:
    """Build (or find) the image; print its name."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--base", help="build on this local image (default: a Debian base)")
    parser.add_argument("--mirror", help="apt sources for the Debian base (file or URL)")
    parser.add_argument("--wheelhouse", type=Path, help="the wheels (default: a cached one)")
    parser.add_argument("--offline", action="store_true", help="check the wheels, fetch none")
    parser.add_argument("--tag", action="append", default=[], help="also name the image so")
    parser.add_argument("--json", action="store_true", help="print image, base and wheelhouse")
    args = parser.parse_args(argv)
    if args.offline and args.wheelhouse is None:
        parser.error("--offline needs --wheelhouse DIR (the wheels brought to this machine)")
    try:
        require_docker()
        base = args.base or make_base(args.mirror or default_mirror())
        base_id = local_image(base)
        requirements = project_requirements()
        key = digest(base_id, *requirements)
        cached = args.wheelhouse is None
        wheelhouse = args.wheelhouse or Path(cache_dir(), f"wheelhouse-{key}")
        fill_wheelhouse(base, wheelhouse, requirements, offline=args.offline, cached=cached)
        image = build(base, base_id, wheelhouse, args.tag)
    except ImageError as exc:
        print(f"scripts/image: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"image": image, "base": base, "wheelhouse": str(wheelhouse)}))
    else:
        print(image)
    return 0


def require_docker() -> None:
    """Docker's client installed and its daemon answering, or a clear error."""
    if shutil.which("docker") is None:
        raise ImageError("no docker command: apt-get install docker.io (scripts/_debian.sh)")
    if run(["docker", "info"], check=False).returncode != 0:
        raise ImageError("the Docker daemon does not answer: start it (scripts/_docker.sh)")


def default_mirror() -> str:
    """The sources apt uses here when they are bookworm's (security updates included)."""
    try:
        sources = HOST_SOURCES.read_text()
    except OSError:
        return MIRROR
    return str(HOST_SOURCES) if re.search(rf"\b{SUITE}\b", sources) else MIRROR


def make_base(mirror: str) -> str:
    """The Debian base image, made with mmdebstrap and imported unless it exists already."""
    argv = ["mmdebstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}"]
    argv += [f"--dpkgopt={option}" for option in DPKG_OPTIONS]
    argv += [SUITE, "-", mirror]
    sources = Path(mirror).read_text() if Path(mirror).is_file() else mirror
    tag = f"tripline-base:{SUITE}-{digest(*argv, sources)}"
    if image_id(tag) is not None:
        return tag
    if shutil.which("mmdebstrap") is None:
        raise ImageError("no mmdebstrap: apt-get install mmdebstrap, or pass --base IMAGE")
    started = time.monotonic()
    env = dict(os.environ)
    shm = Path("/dev/shm")  # noqa: S108 - its unpacking in memory: ~2x faster on a busy disk
    if shm.is_dir() and shutil.disk_usage(shm).free > 2 << 30:
        env["TMPDIR"] = str(shm)
    with tempfile.TemporaryFile() as log:
        debootstrap = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=env
        )
        changes = [f"ENV PATH={PATH}", "ENV LANG=C.UTF-8", 'CMD ["bash"]']
        imported = run(
            ["docker", "import", *(f"--change={c}" for c in changes), "-"],
            stdin=debootstrap.stdout,
            check=False,
        )
        # Our end of the pipe closed: an import that stopped early leaves mmdebstrap a broken
        # pipe to die of, rather than a full one to wait on forever.
        if debootstrap.stdout is not None:
            debootstrap.stdout.close()
        # Imported only once both ended well: a half-written tar is an image too.
        if debootstrap.wait() != 0 or imported.returncode != 0:
            if imported.returncode == 0:
                run(["docker", "rmi", imported.stdout.strip()], check=False)
            log.seek(0)
            tail = log.read().decode(errors="replace")[-3000:]
            raise ImageError(f"the Debian base failed:\n{tail}{imported.stderr}")
    run(["docker", "tag", imported.stdout.strip(), tag])
    note(f"base {tag}: made in {time.monotonic() - started:.0f} s")
    return tag


@dataclass(frozen=True, slots=True)
class Interpreter:
    """What pip on this machine must know to download wheels for the base's Python."""

    version: str
    implementation: str
    abis: list[str]
    platforms: list[str]

    def download_options(self) -> list[str]:
        """`pip download` options selecting this interpreter's wheels."""
        options = ["--only-binary=:all:", "--python-version", self.version]
        options += ["--implementation", self.implementation]
        options += [f"--abi={abi}" for abi in self.abis]
        return options + [f"--platform={platform}" for platform in self.platforms]


# The base's own pip, run as ensurepip runs it: from its bundled wheel (upstream's
# ensurepip/_bundled, Debian's /usr/share/python-wheels), without a venv (~6 s of CPU less).
PIP = """
import ensurepip, glob, os, runpy, sys
bundled = os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "pip-*.whl")
found = sorted(glob.glob(bundled) + glob.glob("/usr/share/python-wheels/pip-*.whl"))
sys.path[:0] = found[-1:]
"""
PROBE = """
import json, platform
from pip._vendor.packaging import tags
seen = list(tags.sys_tags())
print(json.dumps({
    "version": platform.python_version(),
    "implementation": seen[0].interpreter[:2],
    "abis": list(dict.fromkeys(t.abi for t in seen)),
    "platforms": list(dict.fromkeys(t.platform for t in seen)),
}))
"""
RUN_PIP = """
sys.argv[0] = "pip"
runpy.run_module("pip", run_name="__main__", alter_sys=True)
"""


class Helper:
    """The base in a container without network, the wheelhouse mounted read-only."""

    def __init__(self, base: str, wheelhouse: Path) -> None:
        # --mount's value is a CSV row: a path with a comma or a quote must be quoted.
        row = io.StringIO()
        fields = ["type=bind", f"source={wheelhouse.resolve()}", "target=/wheels", "readonly"]
        csv.writer(row, lineterminator="").writerow(fields)
        mount = row.getvalue()
        self.base = base
        self.name = run(
            [
                *("docker", "run", "-d", "--rm", "--network=none", f"--mount={mount}"),
                *("--entrypoint=sleep", base, "infinity"),
            ]
        ).stdout.strip()

    def python(self, script: str, *args: str) -> subprocess.CompletedProcess[str]:
        """The base's python3 running `script` (with the base's pip importable) on `args`."""
        argv = ["docker", "exec", "-i", self.name, "python3", "-", *args]
        return run(argv, check=False, text_in=PIP + script)

    def interpreter(self) -> Interpreter:
        """The base's Python: version and the wheel tags it installs."""
        probed = self.python(PROBE)
        if probed.returncode != 0:
            raise ImageError(f"{self.base} has no python3 with pip bundled: {probed.stderr}")
        return Interpreter(**json.loads(probed.stdout))

    def missing(self, requirements: list[str]) -> tuple[list[str], str]:
        """What the base's pip cannot install from the wheelhouse alone, and its words."""
        # --target: a dry run outside the interpreter's own (externally managed) site-packages.
        checked = self.python(
            RUN_PIP,
            *("install", "--dry-run", "--target=/tmp/t", "--no-index", "--find-links=/wheels"),
            *("--disable-pip-version-check", "-q", *requirements),
        )
        if checked.returncode == 0:
            return [], ""
        return MISSING.findall(checked.stderr), checked.stderr.strip()

    def close(self) -> None:
        """Remove the container."""
        run(["docker", "rm", "-f", self.name], check=False)


def fill_wheelhouse(
    base: str, wheelhouse: Path, requirements: list[str], *, offline: bool, cached: bool
) -> None:
    """Make `wheelhouse` hold everything the base's pip needs, or say what it lacks.

    Args:
        base: the image whose pip checks the wheels.
        wheelhouse: the directory of wheels, filled in place unless `offline`.
        requirements: what must install from it alone.
        offline: only check, download nothing.
        cached: the wheelhouse is this script's own, keyed by base and requirements: once
            checked (its .ok file) it is not checked again.
    """
    if cached and (wheelhouse / ".ok").exists():
        return
    if offline and not wheelhouse.is_dir():
        raise ImageError(f"no wheelhouse at {wheelhouse}")
    wheelhouse.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    helper = Helper(base, wheelhouse)
    try:
        interpreter = helper.interpreter()
        wanted = [] if offline else requirements
        for _ in range(CHECK_ROUNDS):
            if wanted:
                download(interpreter, wheelhouse, wanted)
            missing, words = helper.missing(requirements)
            if not words:
                break
            if offline or not missing:
                raise ImageError(
                    f"the wheelhouse {wheelhouse} lacks what Python {interpreter.version} in "
                    f"{base} needs:\n{words}\nFill it where PyPI answers: scripts/image "
                    f"--base {shlex.quote(base)} --wheelhouse {shlex.quote(str(wheelhouse))}"
                )
            # The marker was the base's to evaluate; pip here would skip the requirement.
            wanted = [requirement.split(";")[0].strip() for requirement in missing]
        else:
            raise ImageError(f"the wheelhouse still lacks {missing} after {CHECK_ROUNDS} rounds")
    finally:
        helper.close()
    if cached:
        (wheelhouse / ".ok").touch()
    wheels = len(list(wheelhouse.glob("*.whl")))
    note(f"wheelhouse {wheelhouse}: {wheels} wheels, {time.monotonic() - started:.0f} s")


def download(interpreter: Interpreter, wheelhouse: Path, requirements: list[str]) -> None:
    """`pip download` (this machine's pip and its index) of wheels for the base's Python."""
    pip = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q"]
    got = run(
        [*pip, f"--dest={wheelhouse}", *interpreter.download_options(), *requirements],
        check=False,
    )
    if got.returncode != 0:
        raise ImageError(f"pip download {' '.join(requirements)} failed:\n{got.stderr[-3000:]}")


def build(base: str, base_id: str, wheelhouse: Path, tags: list[str]) -> str:
    """`docker build` of the Dockerfile with no index, unless an identical build exists."""
    wheels = sorted(p.name for p in wheelhouse.glob("*.whl"))
    image = f"tripline:{digest(base_id, *wheels, context_digest())}"
    if image_id(image) is None:
        started = time.monotonic()
        with serve(wheelhouse) as url:
            argv = ["docker", "build", "--network=host", f"--build-arg=BASE={base}"]
            argv += ["--build-arg=PIP_NO_INDEX=1", f"--build-arg=PIP_FIND_LINKS={url}"]
            argv += [f"--label=tripline.base={base}", f"--tag={image}", str(ROOT)]
            built = subprocess.run(argv, stdout=sys.stderr, check=False)
        if built.returncode != 0:
            raise ImageError("docker build failed (its output above)")
        note(f"image {image}: built in {time.monotonic() - started:.0f} s")
    for tag in tags:
        run(["docker", "tag", image, tag])
    return image


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """The directory's listing on a free loopback port, for pip's --find-links."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def context_digest() -> str:
    """What the build reads from the repository: the Dockerfile and the files it copies."""
    hashed = hashlib.sha256()
    for path in context_files():
        hashed.update(str(path.relative_to(ROOT)).encode() + b"\0")
        hashed.update(str(path.readlink()).encode() if path.is_symlink() else path.read_bytes())
    return hashed.hexdigest()


def context_files() -> list[Path]:
    """The Dockerfile, .dockerignore and every file its COPY lines name (not --from ones)."""
    names = {"Dockerfile", ".dockerignore"}
    for line in (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if len(words) > 2 and words[0].upper() == "COPY" and not words[1].startswith("--"):
            names.update(words[1:-1])
    files: list[Path] = []
    for name in names:
        path = ROOT / name
        if path.is_dir() and not path.is_symlink():
            for parent, dirs, found in os.walk(path):
                dirs[:] = [d for d in dirs if d != "__pycache__"]
                files += [Path(parent, f) for f in found]
                files += [Path(parent, d) for d in dirs if Path(parent, d).is_symlink()]
        else:
            files.append(path)
    return sorted(files)


def project_requirements() -> list[str]:
    """pyproject.toml's dependencies and what builds the project (its build-system)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [*project["project"]["dependencies"], *project["build-system"]["requires"]]


def local_image(name: str) -> str:
    """The id of an image that must be here already: nothing is pulled."""
    found = image_id(name)
    if found is None:
        raise ImageError(f"no local image {name}: `docker load` it (nothing is pulled)")
    return found


def image_id(name: str) -> str | None:
    """The local image's id, or None: never pulled."""
    found = run(["docker", "image", "inspect", "--format={{.Id}}", name], check=False)
    return found.stdout.strip() if found.returncode == 0 else None


def cache_dir() -> Path:
    """Where wheelhouses made here are kept (they are keyed, so any number may live there)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "tripline-image")


def digest(*parts: str) -> str:
    """A short key for what `parts` are."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def run(
    argv: list[str],
    *,
    check: bool = True,
    stdin: IO[bytes] | None = None,
    text_in: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, its output captured; with `check`, a failure is an ImageError."""
    done = subprocess.run(
        argv,
        stdin=stdin if text_in is None else None,
        input=text_in,
        capture_output=True,
        text=True,
        check=False,
    )
    if check and done.returncode != 0:
        raise ImageError(f"{shlex.join(argv)}: {done.stderr.strip()}")
    return done


def note(line: str) -> None:
    """Progress, on stderr (stdout is the image's name)."""
    print(f"scripts/image: {line}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
