# Sourced by scripts/*: creates .venv from pyproject.toml when missing or out of date, activates it.
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
# The console script too: a venv whose tripline was uninstalled (by hand, or by a pip run
# elsewhere) is set up again rather than failing later with "tripline: not found".
if [ ! -f "$stamp" ] || [ ! -x .venv/bin/tripline ]; then
  echo "setting up .venv (first run, pyproject.toml changed, or tripline not installed) ..." >&2
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
# shellcheck disable=SC1091
. .venv/bin/activate
