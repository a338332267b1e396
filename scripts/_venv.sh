# Sourced by scripts/*: creates .venv from pyproject.toml when missing or out of date, activates it.
# With the test tools (the extra "test"), unless the script set venv_extras="" first
# (scripts/demo): a fresh machine's first demo then installs the service's packages only, half
# the time; scripts/test adds the rest when it runs.
PY=${PYTHON:-$(command -v python3.11 || command -v python3 || true)}
_extras=${venv_extras-test}
# constraints.txt pins each package's version (scripts/lock writes it): a changed pin sets up
# .venv again too.
_stamp=.venv/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
# A venv with the test tools serves the demo too.
_ready=""
if [ -f "$_stamp-test" ] || { [ -z "$_extras" ] && [ -f "$_stamp-" ]; }; then _ready=1; fi
# The console script too: a venv whose tripline was uninstalled (by hand, or by a pip run
# elsewhere) is set up again rather than failing later with "tripline: not found".
if [ -z "$_ready" ] || [ ! -x .venv/bin/tripline ]; then
  # pyproject.toml's requires-python: pip would refuse any other, in fewer words.
  if [ -z "$PY" ] || ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' \
     2>/dev/null; then
    echo "tripline needs Python 3.11 or later; found ${PY:-no python3}${PY:+ ($("$PY" -V \
      2>/dev/null || echo "does not run"))}." >&2
    echo "  Install it (Debian 12 and 13, Ubuntu 24.04: apt-get install python3; macOS:" \
         "brew install python@3.13), or name one: PYTHON=/path/to/python3 $0" >&2
    exit 1
  fi
  # Debian and Ubuntu ship venv's ensurepip apart from Python (python3.11-venv, python3.13-venv).
  if ! "$PY" -c 'import ensurepip' 2>/dev/null; then
    _pyv=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    . "$(dirname "${BASH_SOURCE[0]}")/_apt.sh"
    _apt_install "Python's venv, for .venv" "python$_pyv-venv" || {
      echo "tripline's .venv needs Python's venv module: install python$_pyv-venv" >&2
      exit 1
    }
    unset _pyv
  fi
  echo "setting up .venv (first run, pyproject.toml or constraints.txt changed, tripline or" \
       "the test tools not installed) ..." >&2
  "$PY" -m venv .venv
  # uv (from PyPI, into the venv) installs the same packages in a fraction of pip's time (the
  # test extra from an empty cache here: 14 s against 69 s). Compiled to bytecode up front, as
  # pip does, rather than by the first import in each of the suite's processes. pip when uv
  # cannot be had or fails (uv reads no pip.conf: a mirror configured only there is pip's to
  # use).
  if ! { .venv/bin/python -m pip install -q uv >/dev/null 2>&1 &&
         .venv/bin/uv pip install -q --compile-bytecode --python .venv/bin/python \
           -c constraints.txt -e ".${_extras:+[$_extras]}"; }; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -c constraints.txt -e ".${_extras:+[$_extras]}"
  fi
  rm -f .venv/.installed-*
  touch "$_stamp-$_extras"
fi
unset _extras _stamp _ready
# shellcheck disable=SC1091
. .venv/bin/activate
