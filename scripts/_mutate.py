"""Mutation testing of pipeline/: would the tests notice if a line of policy changed?

mutmut 2.5 (pinned in pyproject's test extra) generates the mutants; this runner applies them
one at a time, per module, in a throw-away copy of the work tree (never in the tree itself,
which other engineers' test runs read), and runs the tests of tests/pipeline that import the
module, directly or through another project module. It differs from mutmut's own runner in
what it counts: any non-zero pytest exit is a kill (mutmut 2 counts only exit 1, so a mutant
that breaks the module's import, exit 2, passed as a survivor), and a run past its time limit
is a kill too (reported apart). A mutant that changes an annotation alone is left out: with
postponed annotations (PEP 563) it is no change.

Each mutant runs in a child forked from a parent that has already imported pytest, hypothesis
and the third-party libraries (not one project module): a run then costs its tests' time, not
the ~0.6-4 s of a pytest start. Hypothesis runs derandomized, without its example database and
without shrinking, so a run decides the same way every time and a kill is not slowed down by
shrinking its counterexample.

The survivors that are accepted (equivalent mutants, message strings, caches) are listed in
tests/pipeline/accepted_mutants.txt with a reason each. A survivor not listed there is new;
in a gated module (GATED) it fails the run, elsewhere it is reported.

Usage: scripts/mutate [--gated] [--verbose] [MODULE ...]   (README, "Development")
"""

from __future__ import annotations

import argparse
import ast
import compileall
import difflib
import gc
import json
import os
import py_compile
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ACCEPTED = ROOT / "tests" / "pipeline" / "accepted_mutants.txt"
TESTS = "tests/pipeline"
GATED = ("comply", "calling_window", "caps", "flap", "dial", "dial_queue", "reach")
"""Safety policy: a new survivor here fails the run (and CI)."""
PRELOAD = (
    "pytest",
    "hypothesis",
    "hypothesis.strategies",
    "pendulum",
    "holidays",
    "phonenumbers",
    "phonenumbers.timezone",
    "orjson",
    "aiohttp",
    "aiohttp.web",
    "redis",
    "paho.mqtt.client",
    "pykka",
    "prometheus_client",
)
"""Imported once in the parent, before any fork: no project module among them, and no pytest
plugin (pytest warns that it cannot rewrite an imported plugin's asserts; warnings are errors)."""
_PROJECT = ("pipeline", "conf", "messages", "actors", "tripline", "supervisor")
_POLL = 0.005


Key = tuple[str, tuple[str, ...], tuple[str, ...]]
"""A mutant's identity: path::function (#n when repeated), its lines before and after."""


@dataclass(frozen=True, slots=True)
class Mutant:
    """One mutation of one module, described as the line it changes."""

    key: Key
    """Where (path::function, #n when repeated), the lines before and the lines after."""
    source: str
    """The whole mutated module."""

    def block(self) -> str:
        """The mutant as an entry of the accepted list (without its reason)."""
        where, before, after = self.key
        return "\n".join([where, *(f"- {s}" for s in before), *(f"+ {s}" for s in after)])


@dataclass(slots=True)
class Result:
    """What the mutants of one module came to."""

    module: str
    tests: list[str]
    total: int = 0
    killed: int = 0
    timeouts: int = 0
    survivors: list[Mutant] = field(default_factory=list)
    skipped: list[Mutant] = field(default_factory=list)
    """Accepted survivors not run again (--gated): they count as survivors."""
    seconds: float = 0.0


def main() -> int:
    """Run the mutants of the named modules (all of pipeline/ by default); 1 on a new survivor."""
    parser = argparse.ArgumentParser(prog="scripts/mutate", description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="*", help="pipeline modules, e.g. comply caps")
    parser.add_argument(
        "--gated",
        action="store_true",
        help=f"the check CI runs: only {', '.join(GATED)}, and accepted survivors not run again",
    )
    parser.add_argument("--verbose", action="store_true", help="one line per mutant")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="share the mutants out over this many processes at once (one core each)",
    )
    parser.add_argument("--shard", type=_shard, default=(0, 1), help=argparse.SUPPRESS)
    parser.add_argument("--results", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gated:  # named modules with --gated: those of the gated ones (a job's share)
        names = [n for n in GATED if not args.modules or n in args.modules]
    else:
        names = args.modules or _all_modules()
    unknown = [n for n in names if not (ROOT / "pipeline" / f"{n}.py").is_file()]
    if unknown:
        parser.error(f"no such module in pipeline/: {', '.join(unknown)}")
    if args.results is None:  # once, not again by every job
        # The libraries' bytecode, where the venv was made without it (uv's default): the
        # runs write none, and a library imported late would be compiled once per mutant.
        for site in sysconfig.get_path("purelib"), sysconfig.get_path("platlib"):
            compileall.compile_dir(site, quiet=2)
    if args.jobs > 1:
        return _in_jobs(names, args.jobs, gated=args.gated, verbose=args.verbose)
    accepted = _read_accepted(ACCEPTED)
    # A mutant of the same size and second must not reuse a .pyc written from another source:
    # nothing is written, and the copy's bytecode is compiled up front checked by hash (a mutated
    # module's no longer matches and is compiled from its source; every other file is read as
    # bytecode instead of compiled again by every mutant's run: ~15 % of a run).
    sys.dont_write_bytecode = True
    work = Path(tempfile.mkdtemp(prefix="tripline-mutate-"))
    try:
        _copy_tree(work)
        compileall.compile_dir(
            work, quiet=2, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH
        )
        _preload()
        skip = set(accepted) if args.gated else set()
        if args.results is not None:  # one job of --jobs: its share, for the parent to report
            share = [
                _run_module(work, name, skip=skip, verbose=args.verbose, shard=args.shard)
                for name in names
            ]
            args.results.write_text(json.dumps([_dump(r) for r in share]), "utf-8")
            return 0
        _header()
        failed = False
        for name in names:
            result = _run_module(work, name, skip=skip, verbose=args.verbose)
            failed |= _report(result, accepted)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("FAILED: a new survivor in a gated module" if failed else "ok")
    return 1 if failed else 0


def _shard(text: str) -> tuple[int, int]:
    index, count = (int(part) for part in text.split("/"))
    if not 0 <= index < count:
        msg = f"shard {text}: want k/n with 0 <= k < n"
        raise argparse.ArgumentTypeError(msg)
    return index, count


def _in_jobs(names: list[str], jobs: int, *, gated: bool, verbose: bool) -> int:
    """The modules' mutants dealt out over `jobs` processes; one report of them all.

    1 on a new survivor in a gated module (or when a job failed).

    Dealt out mutant by mutant, not module by module: the modules' costs differ up to 7-fold,
    and a share of whole modules left one of two cores idle for a third of the run. Each job is
    this script in a tree copy of its own and runs each module's tests unmutated first (its
    time limit comes from that run).
    """
    accepted = _read_accepted(ACCEPTED)
    flags = [*(["--gated"] if gated else []), *(["--verbose"] if verbose else [])]
    out = Path(tempfile.mkdtemp(prefix="tripline-mutate-jobs-"))
    try:
        running = [
            subprocess.Popen(
                [
                    *(sys.executable, __file__, *flags),
                    *("--shard", f"{k}/{jobs}", "--results", str(out / f"{k}.json"), *names),
                ]
            )
            for k in range(jobs)
        ]
        codes = [proc.wait() for proc in running]
        if any(codes):
            print(f"FAILED: a job stopped (exit codes {codes})")
            return 1
        shares = [json.loads((out / f"{k}.json").read_text("utf-8")) for k in range(jobs)]
    finally:
        shutil.rmtree(out, ignore_errors=True)
    _header()
    failed = False
    for parts in zip(*shares, strict=True):
        failed |= _report(_merge([_load(p) for p in parts]), accepted)
    print("FAILED: a new survivor in a gated module" if failed else "ok")
    return 1 if failed else 0


def _dump(r: Result) -> dict[str, object]:
    return {
        "module": r.module,
        "tests": r.tests,
        "total": r.total,
        "killed": r.killed,
        "timeouts": r.timeouts,
        "survivors": [m.key for m in r.survivors],
        "skipped": [m.key for m in r.skipped],
        "seconds": r.seconds,
    }


def _load(d: dict[str, Any]) -> Result:
    def key(k: list[Any]) -> Key:
        return (k[0], tuple(k[1]), tuple(k[2]))

    return Result(
        d["module"],
        d["tests"],
        d["total"],
        d["killed"],
        d["timeouts"],
        [Mutant(key(k), "") for k in d["survivors"]],
        [Mutant(key(k), "") for k in d["skipped"]],
        d["seconds"],
    )


def _merge(parts: list[Result]) -> Result:
    """One module's shares as one result; its time is the longest share's (they ran at once)."""
    return Result(
        parts[0].module,
        parts[0].tests,
        sum(p.total for p in parts),
        sum(p.killed for p in parts),
        sum(p.timeouts for p in parts),
        [m for p in parts for m in p.survivors],
        [m for p in parts for m in p.skipped],
        max(p.seconds for p in parts),
    )


def _all_modules() -> list[str]:
    return sorted(p.stem for p in (ROOT / "pipeline").glob("*.py") if p.stem != "__init__")


def _copy_tree(work: Path) -> None:
    """Tracked and untracked-but-not-ignored files: what a commit of the tree would hold."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_symlink():  # tripline/pipeline -> ../pipeline: the mutants must show there
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).symlink_to(source.readlink())
        elif source.is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, work / name)


def _preload() -> None:
    import importlib  # noqa: PLC0415

    for name in PRELOAD:
        importlib.import_module(name)
    from hypothesis import HealthCheck, Phase, settings  # noqa: PLC0415

    settings.register_profile(
        "mutate",
        derandomize=True,
        database=None,
        deadline=None,
        phases=(Phase.explicit, Phase.reuse, Phase.generate),
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


def _run_module(
    work: Path, name: str, *, skip: set[Key], verbose: bool, shard: tuple[int, int] = (0, 1)
) -> Result:
    """The module's mutants (its share of them: every n-th from the k-th, for `shard` k/n).

    Accepted survivors skipped (--gated) are counted in share 0 alone.
    """
    path = work / "pipeline" / f"{name}.py"
    original = path.read_text("utf-8")
    tests = _importing_tests(work, f"tripline.pipeline.{name}")
    result = Result(f"pipeline/{name}.py", [t for stage in tests for t in stage])
    if not result.tests:
        print(f"{result.module}: no test in {TESTS} imports it", file=sys.stderr)
        return result
    start = time.monotonic()
    code = _run_stages(work, tests, timeout=600.0)
    baseline = time.monotonic() - start
    if code != 0:
        msg = f"{result.module}: its tests fail unmutated (exit {code}): fix them first"
        raise SystemExit(msg)
    limit = max(10.0, 5 * baseline)
    index, count = shard
    mutants = _mutants(result.module, original)
    result.skipped = [m for m in mutants if m.key in skip] if index == 0 else []
    mutants = [m for m in mutants if m.key not in skip][index::count]
    result.total = len(mutants) + len(result.skipped)
    print(
        f"{result.module}: {len(mutants)} mutants against {len(result.tests)} test files "
        f"(unmutated {baseline:.1f} s) ...",
        file=sys.stderr,
        flush=True,
    )
    try:
        for mutant in mutants:
            path.write_text(mutant.source, "utf-8")
            code = _run_stages(work, tests, timeout=limit)
            if code is None:
                result.killed += 1
                result.timeouts += 1
            elif code != 0:
                result.killed += 1
            else:
                result.survivors.append(mutant)
            if verbose:
                status = {None: "timeout", 0: "SURVIVED"}.get(code, f"killed ({code})")
                print(f"{status:12} {mutant.block()}", file=sys.stderr)
    finally:
        path.write_text(original, "utf-8")
    result.seconds = time.monotonic() - start
    return result


def _mutants(module: str, source: str) -> list[Mutant]:
    from mutmut import Context, list_mutations, mutate  # noqa: PLC0415 - test extra only

    ids = list_mutations(Context(source=source, filename=module))
    functions = _functions(source)
    meaning = _without_annotations(source)
    before = source.splitlines()
    seen: Counter[Key] = Counter()
    out = []
    for mutation_id in ids:
        mutated, _ = mutate(Context(source=source, mutation_id=mutation_id, filename=module))
        if _without_annotations(mutated) == meaning:
            continue  # e.g. `str | int` → `str & int`: never evaluated (postponed annotations)
        after = mutated.splitlines()
        old: list[str] = []
        new: list[str] = []
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, before, after).get_opcodes():
            if tag != "equal":  # blank lines dropped: an editor may strip "- " to "-"
                old += [s.strip() for s in before[i1:i2] if s.strip()]
                new += [s.strip() for s in after[j1:j2] if s.strip()]
        where = f"{module}::{functions.get(mutation_id.line_number + 1, '<module>')}"
        key = (where, tuple(old), tuple(new))
        seen[key] += 1
        if seen[key] > 1:
            key = (f"{where} #{seen[key]}", key[1], key[2])
        out.append(Mutant(key, mutated))
    return out


def _without_annotations(source: str) -> str:
    """The module's AST without its annotations, when they are postponed (PEP 563).

    A change to an annotation alone is then no change of behaviour (dataclasses read only
    ClassVar and InitVar from them, and this code has neither).
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:  # e.g. `{**facts, ...}` → `{*facts, ...}`: killed at import
        return ""
    if not any(
        isinstance(n, ast.ImportFrom)
        and n.module == "__future__"
        and any(a.name == "annotations" for a in n.names)
        for n in tree.body
    ):
        return ast.dump(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.arg):
            node.annotation = None
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            node.returns = None
        elif isinstance(node, ast.AnnAssign):
            node.annotation = ast.Constant(value=None)
    return ast.dump(tree)


def _functions(source: str) -> dict[int, str]:
    """Line number → qualified name of the innermost def or class holding it."""
    names: dict[int, str] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                for line in range(first, (child.end_lineno or child.lineno) + 1):
                    names[line] = name
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return names


def _importing_tests(work: Path, module: str) -> list[list[str]]:
    """Test files importing `module`, in stages (empty ones left out).

    Its own file first, then the others importing it, then those importing it through other
    project modules. Imports are followed through the project's modules but not through
    tests/ (a test that imports tests.conftest for a helper does not test the whole service).
    """
    direct, indirect = [], []
    for test in sorted((work / TESTS).glob("test_*.py")):
        imported = _imports(work, test)
        if module in imported:
            direct.append(str(test.relative_to(work)))
            continue
        if module in _closure(work, imported):
            indirect.append(str(test.relative_to(work)))
    own = f"{TESTS}/test_{module.rsplit('.', 1)[-1]}.py"
    stages = [[own] if own in direct else [], [t for t in direct if t != own], indirect]
    return [stage for stage in stages if stage]


def _closure(work: Path, start: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = [m for m in start if m.split(".")[0] in _PROJECT]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        file = _module_file(work, name)
        if file is not None:
            todo += [m for m in _imports(work, file) if m.split(".")[0] in _PROJECT]
    return seen


def _module_file(work: Path, name: str) -> Path | None:
    base = work.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(work: Path, file: Path) -> set[str]:
    """Modules a file imports; `from pkg import name` counts as pkg.name when that is a module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            for alias in node.names:
                if _module_file(work, f"{node.module}.{alias.name}") is not None:
                    found.add(f"{node.module}.{alias.name}")
    return found


def _run_stages(work: Path, stages: list[list[str]], *, timeout: float) -> int | None:
    """Run each stage of test files only if the ones before passed; the first code not 0.

    Most kills come from the module's own test file, and collecting the others costs more than
    running it: a kill of comply takes 0.4 s with test_comply.py alone, 0.55 s with the three
    files that import it.
    """
    deadline = time.monotonic() + timeout
    code: int | None = 0
    for tests in stages:
        code = _run_tests(work, tests, timeout=deadline - time.monotonic())
        if code != 0:
            break
    return code


def _run_tests(work: Path, tests: list[str], *, timeout: float) -> int | None:
    """The exit code of pytest over `tests` in a forked child, or None past `timeout` seconds."""
    gc.freeze()  # pytest collects garbage hard at exit: not the parent's ~100 MB of imports
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 3
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.chdir(work)
            sys.path.insert(0, str(work))
            code = _child(work, tests)
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)  # a signal's is negative: a kill too
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(_POLL)


def _child(work: Path, tests: list[str]) -> int:
    import importlib.util  # noqa: PLC0415

    import pytest  # noqa: PLC0415

    spec = importlib.util.find_spec("tripline")
    if spec is None or not str(spec.origin).startswith(str(work)):
        return 4  # would test the real tree, not the mutant: the baseline run stops on it
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # schemathesis' plugin costs 3 s a run
    args = [
        *("-p", "pytest_timeout", "-p", "_hypothesis_pytestplugin", "-p", "no:cacheprovider"),
        *("--noconftest", "--hypothesis-profile=mutate", "-x", "-q", *tests),
        # Plain asserts: a failed one fails the run all the same, and the test modules are not
        # rewritten (nor their rewriting's bytecode thrown away) once per mutant.
        "--assert=plain",
    ]
    return int(pytest.main(args, plugins=[_TablesFirst()]))


class _TablesFirst:
    """Runs the table tests before the hypothesis properties.

    With -x most kills come from a table in milliseconds; a property first would spend its
    hundreds of examples on every mutant.
    """

    def pytest_collection_modifyitems(self, items: list[object]) -> None:
        items.sort(key=lambda item: hasattr(getattr(item, "obj", None), "hypothesis"))


def _read_accepted(path: Path) -> dict[Key, str]:
    """The accepted survivors: blocks of `where`, `- before`, `+ after` and `why:` lines."""
    accepted = {}
    blocks = path.read_text("utf-8").split("\n\n") if path.is_file() else []
    for block in blocks:
        lines = [s for s in block.splitlines() if s and not s.startswith("#")]
        if not lines:
            continue
        where, why = lines[0], ""
        before, after = [], []
        for line in lines[1:]:
            if line.startswith("- "):
                before.append(line[2:])
            elif line.startswith("+ "):
                after.append(line[2:])
            elif line.startswith("why: "):
                why = line[5:]
        if not why:
            msg = f"{path.name}: no 'why:' line in the entry of {where}"
            raise SystemExit(msg)
        accepted[(where, tuple(before), tuple(after))] = why
    return accepted


def _header() -> None:
    print(
        f"{'module':28} {'mutants':>7} {'killed':>7} {'timeout':>7} {'left':>5} {'new':>4} "
        f"{'score':>6} {'time':>6}",
        flush=True,
    )


def _report(r: Result, accepted: dict[Key, str]) -> bool:
    """Print one module's line and its new survivors; True when one is new in a gated module."""
    new = [m for m in r.survivors if m.key not in accepted]
    score = 100.0 * r.killed / r.total if r.total else 100.0
    left = len(r.survivors) + len(r.skipped)
    print(
        f"{r.module:28} {r.total:7} {r.killed:7} {r.timeouts:7} {left:5} "
        f"{len(new):4} {score:5.1f}% {r.seconds:5.0f}s",
        flush=True,
    )
    gated = Path(r.module).stem in GATED
    for mutant in new:
        label = "NEW SURVIVOR (gated: fails the run)" if gated else "new survivor"
        print(f"\n# {label}\n{mutant.block()}\nwhy: ?", file=sys.stderr)
    ran = {m.key for m in r.survivors + r.skipped}
    for key in accepted:
        if key[0].split("::")[0] == r.module and key not in ran:
            print(f"\n# accepted, no longer a survivor: remove it\n{key[0]}", file=sys.stderr)
    return gated and bool(new)


if __name__ == "__main__":
    sys.exit(main())
